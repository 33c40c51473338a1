package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// burst is a set of writers allocating "addresses" (keys addr/<n>) from a
// shared space the way IPAM does: one commit creates the address key and
// the writer's attachment key together, both create-if-absent. A writer
// retries an error that is not a lost race on the same address; a lost
// race after an error whose outcome was unknown is resolved by reading the
// address back. acked is what every writer believes it holds.
type burst struct {
	stores []*etcdstore.Store
	each   int

	mu       sync.Mutex
	acked    map[string]string // attachment -> address
	errs     map[string]int    // error class -> count
	maxGap   time.Duration     // longest a writer went without a success
	progress atomic.Int64
}

func (b *burst) run(t *testing.T, deadline time.Duration) {
	b.acked, b.errs = map[string]string{}, map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for w, s := range b.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := w * 50 // overlapping walks: the writers race
			lastOK := time.Now()
			for seq := range b.each {
				att := fmt.Sprintf("att/%d-%d", w, seq)
				for {
					if ctx.Err() != nil {
						t.Errorf("writer %d: burst not done within %v", w, deadline)
						return
					}
					addr := fmt.Sprintf("addr/%05d", next)
					_, err := s.Commit(ctx, []ipam.Cond{{Key: addr}, {Key: att}}, []ipam.Op{{Key: addr, Value: []byte(att)}, {Key: att, Value: []byte(addr)}})
					if err == nil {
						b.ack(att, addr, &lastOK)
						break
					}
					if errors.Is(err, ipam.ErrCompareFailed) {
						// Ours from an earlier attempt whose answer was lost?
						e, gerr := s.Get(ctx, addr)
						if gerr == nil && string(e.Value) == att {
							b.ack(att, addr, &lastOK)
							b.count("unknown outcome that had been applied")
							break
						}
						next++
						continue
					}
					switch {
					case errors.Is(err, etcdstore.ErrUnavailable):
						b.count("unavailable (not sent)")
					case errors.Is(err, etcdstore.ErrOutcomeUnknown):
						b.count("outcome unknown")
					default:
						t.Errorf("writer %d: an error that is neither unavailable nor outcome-unknown: %v", w, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

func (b *burst) ack(att, addr string, lastOK *time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, dup := b.acked[att]; dup {
		panic(fmt.Sprintf("%s acked twice (%s, %s)", att, prev, addr))
	}
	b.acked[att] = addr
	if g := time.Since(*lastOK); g > b.maxGap {
		b.maxGap = g
	}
	*lastOK = time.Now()
	b.progress.Add(1)
}

func (b *burst) count(class string) {
	b.mu.Lock()
	b.errs[class]++
	b.mu.Unlock()
}

// verify reads the store back: every acked allocation is there, no address
// has two holders, and address and attachment keys agree.
func (b *burst) verify(t *testing.T, s *etcdstore.Store) {
	t.Helper()
	ctx := context.Background()
	addrs, err := s.List(ctx, "addr/")
	if err != nil {
		t.Fatal(err)
	}
	atts, err := s.List(ctx, "att/")
	if err != nil {
		t.Fatal(err)
	}
	holder := map[string]string{}
	for _, e := range addrs {
		holder[e.Key] = string(e.Value)
	}
	seen := map[string]string{}
	for _, e := range atts {
		addr := string(e.Value)
		if holder[addr] != e.Key {
			t.Errorf("%s says %s, but %s is held by %q", e.Key, addr, addr, holder[addr])
		}
		if other, dup := seen[addr]; dup {
			t.Errorf("%s given to %s and %s", addr, other, e.Key)
		}
		seen[addr] = e.Key
	}
	if len(addrs) != len(atts) {
		t.Errorf("%d address keys but %d attachments: a half-written allocation", len(addrs), len(atts))
	}
	for att, addr := range b.acked {
		if holder[addr] != att {
			t.Errorf("lost: %s was acknowledged with %s, which now holds %q", att, addr, holder[addr])
		}
	}
	if want := len(b.stores) * b.each; len(b.acked) != want || len(atts) != want {
		t.Errorf("%d acknowledged, %d attachments read back, want %d", len(b.acked), len(atts), want)
	}
}

// TestLeaderKilledMidBurst: three clients allocate 3 x 200 from one space
// on a 3-member cluster; the leader is killed with -9 a third of the way
// in. The commits resume after the election; read back, nothing
// acknowledged is lost and no address has two holders.
func TestLeaderKilledMidBurst(t *testing.T) {
	c := etcdlab.Start(t, 3)
	p := uniquePrefix()
	b := &burst{each: 200}
	for range 3 {
		b.stores = append(b.stores, newStore(t, c.Endpoints(), p))
	}
	done := make(chan struct{})
	var killed *etcdlab.Member
	var killedAt time.Time
	go func() {
		defer close(done)
		for b.progress.Load() < 200 {
			time.Sleep(5 * time.Millisecond)
		}
		killed = c.KillLeader()
		killedAt = time.Now()
	}()
	start := time.Now()
	b.run(t, 90*time.Second)
	<-done
	if killed == nil {
		t.Fatal("the leader was never killed")
	}
	el := time.Since(start)
	b.verify(t, b.stores[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil || leader == killed {
		t.Fatalf("leader after the kill: %v %v", leader, err)
	}
	t.Logf("leader %s killed at %v; 600 allocations in %v; longest a writer waited for a success: %v; errors: %v; new leader %s",
		killed.Name, killedAt.Sub(start).Round(time.Millisecond), el.Round(time.Millisecond), b.maxGap.Round(time.Millisecond), b.errs, leader.Name)
}

// TestStoppedAndStarted: with etcd stopped the store fails fast with an
// error naming the endpoint and saying etcd is unreachable; once etcd is
// started again the same store works, with the data kept.
func TestStoppedAndStarted(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	ctx := context.Background()
	mustCommit(t, s, nil, []ipam.Op{{Key: "before", Value: []byte("1")}})
	c.Members[0].Stop()

	// The first calls may each wait for the connection to notice; after
	// that every call fails at once.
	var fast time.Duration
	waitFor(t, 15*time.Second, "calls fail fast while etcd is down", func() bool {
		t0 := time.Now()
		_, err := s.Commit(ctx, nil, []ipam.Op{{Key: "during", Value: []byte("x")}})
		fast = time.Since(t0)
		return errors.Is(err, etcdstore.ErrUnavailable)
	})
	var slowest time.Duration
	for range 20 {
		t0 := time.Now()
		_, err := s.Commit(ctx, nil, []ipam.Op{{Key: "during", Value: []byte("x")}})
		slowest = max(slowest, time.Since(t0))
		if !errors.Is(err, etcdstore.ErrUnavailable) {
			t.Fatalf("commit while down: %v", err)
		}
		for _, want := range []string{"etcd unreachable", c.Members[0].ClientURL} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if _, err := s.Get(ctx, "before"); !errors.Is(err, etcdstore.ErrUnavailable) {
			t.Fatalf("get while down: %v", err)
		}
	}
	// Fast means well below the request timeout (3s here).
	if slowest > time.Second {
		t.Errorf("a commit while down took %v; fail fast means well under the request timeout", slowest)
	}
	c.Members[0].Restart()
	restarted := time.Now()
	took := waitFor(t, 20*time.Second, "the same store works again", func() bool {
		_, err := s.Commit(ctx, nil, []ipam.Op{{Key: "after", Value: []byte("2")}})
		return err == nil
	})
	if e, err := s.Get(ctx, "before"); err != nil || string(e.Value) != "1" {
		t.Fatalf("data after restart: %+v %v", e, err)
	}
	if e, _ := s.Get(ctx, "during"); e.Revision != 0 {
		t.Fatal("a commit that failed as unavailable was applied")
	}
	t.Logf("while down: commits failed in %v (slowest of 20: %v); back %v after the restart (member start included, %v since)",
		fast.Round(time.Microsecond), slowest.Round(time.Microsecond), took.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// TestPartitionedClient: a client cut off from all members by a silent
// partition gets bounded failures (never longer than the request timeout
// plus slack), and works again after the partition heals. Commits that
// failed as unavailable were never applied; those whose outcome was
// unknown may have been. Cutting one member of three does not stop it.
func TestPartitionedClient(t *testing.T) {
	c := etcdlab.Start(t, 3)
	proxies, urls := c.Proxies(t)
	p := uniquePrefix()
	const reqTimeout = 2 * time.Second
	// Dial timeout 2s: gRPC's keepalive (10s + 3s) notices the silence, a
	// reconnection attempt then waits out the dial timeout, and from then
	// on calls fail fast.
	s := newStore(t, urls, p, func(cfg *etcdstore.Config) { cfg.RequestTimeout, cfg.DialTimeout = reqTimeout, 2*time.Second })
	direct := newStore(t, c.Endpoints(), p)
	ctx := context.Background()
	mustCommit(t, s, nil, []ipam.Op{{Key: "warm", Value: []byte("1")}})

	// One member cut: the client goes on through the others.
	proxies[0].Partition()
	for i := range 10 {
		k := fmt.Sprintf("one-cut/%d", i)
		var err error
		for try := 0; try < 3; try++ {
			if _, err = s.Commit(ctx, []ipam.Cond{{Key: k}}, []ipam.Op{{Key: k, Value: []byte("v")}}); err == nil || errors.Is(err, ipam.ErrCompareFailed) {
				err = nil
				break
			}
		}
		if err != nil {
			t.Fatalf("with one member of three cut off: %v", err)
		}
	}

	// All cut.
	for _, px := range proxies {
		px.Partition()
	}
	cutAt := time.Now()
	var slowest time.Duration
	var unavailable, unknown []string
	var firstFast time.Duration
	for i := 0; time.Since(cutAt) < 22*time.Second; i++ {
		k := fmt.Sprintf("cut/%d", i)
		t0 := time.Now()
		_, err := s.Commit(ctx, nil, []ipam.Op{{Key: k, Value: []byte("v")}})
		d := time.Since(t0)
		slowest = max(slowest, d)
		switch {
		case err == nil:
			t.Fatalf("commit %d succeeded through a partition", i)
		case errors.Is(err, etcdstore.ErrUnavailable):
			if len(unavailable) == 0 {
				firstFast = time.Since(cutAt)
			}
			unavailable = append(unavailable, k)
		case errors.Is(err, etcdstore.ErrOutcomeUnknown):
			unknown = append(unknown, k)
		default:
			t.Fatalf("commit through a partition: %v", err)
		}
		if d > reqTimeout+time.Second {
			t.Fatalf("a commit through a partition took %v; bound is the request timeout %v", d, reqTimeout)
		}
		time.Sleep(100 * time.Millisecond) // pace: an allocation rate, not a spin
	}
	if len(unavailable) == 0 {
		t.Errorf("no call failed fast in 22s of partition: the store never noticed the members were gone")
	}
	// The cluster itself is fine: a client on the other side writes.
	mustCommit(t, direct, nil, []ipam.Op{{Key: "other-side", Value: []byte("v")}})

	for _, px := range proxies {
		px.Heal()
	}
	healed := time.Now()
	took := waitFor(t, 20*time.Second, "the client works again after the partition heals", func() bool {
		_, err := s.Commit(ctx, nil, []ipam.Op{{Key: "healed", Value: []byte("v")}})
		return err == nil
	})
	_ = healed
	for _, k := range unavailable {
		if e, err := direct.Get(ctx, k); err != nil || e.Revision != 0 {
			t.Errorf("%s failed as unavailable (not sent) but is in the store: %+v %v", k, e, err)
		}
	}
	t.Logf("partitioned 22s: %d commits with outcome unknown (each waited the request timeout %v; slowest %v), then from %v on %d failed fast as unavailable (none applied); working again %v after healing",
		len(unknown), reqTimeout, slowest.Round(time.Millisecond), firstFast.Round(time.Millisecond), len(unavailable), took.Round(time.Millisecond))
}
