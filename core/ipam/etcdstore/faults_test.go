package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// TestLeaderKilledMidBurst: three clients allocate 3 x 200 from one space
// on a 3-member cluster; the leader is killed with -9 a third of the way
// in. The commits resume after the election; read back, nothing
// acknowledged is lost and no address has two holders.
func TestLeaderKilledMidBurst(t *testing.T) {
	c := etcdlab.Start(t, 3)
	p := uniquePrefix()
	b := &etcdlab.Burst{Each: 200}
	for range 3 {
		b.Stores = append(b.Stores, newStore(t, c.Endpoints(), p))
	}
	done := make(chan struct{})
	var killed *etcdlab.Member
	var killedAt time.Time
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for b.Done() < 200 {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		// Not KillLeader: t.Fatal must not run off the test's goroutine.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if m, err := c.Leader(ctx); err == nil {
			m.Kill()
			killed, killedAt = m, time.Now()
		}
	}()
	start := time.Now()
	err := b.Run(90 * time.Second)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if killed == nil {
		t.Fatal("the leader was never killed")
	}
	el := time.Since(start)
	for _, bad := range b.Verify(b.Stores[0]) {
		t.Error(bad)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil || leader == killed {
		t.Fatalf("leader after the kill: %v %v", leader, err)
	}
	t.Logf("leader %s killed at %v; 600 allocations in %v; longest a writer waited for a success: %v; errors: %v; new leader %s",
		killed.Name, killedAt.Sub(start).Round(time.Millisecond), el.Round(time.Millisecond), b.MaxGap.Round(time.Millisecond), b.Errs, leader.Name)
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
	if err := s.Ping(ctx); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("Ping while down (what readiness asks): %v", err)
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
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the restart: %v", err)
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
