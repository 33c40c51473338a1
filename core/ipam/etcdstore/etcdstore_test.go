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
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// prefixes keeps the stores of one etcd apart: every store of a test gets
// its own prefix, so the conformance cases start from empty.
var prefixes atomic.Int64

func newStore(t *testing.T, endpoints []string, prefix string, mod ...func(*etcdstore.Config)) *etcdstore.Store {
	t.Helper()
	cfg := etcdstore.Config{Endpoints: endpoints, Prefix: prefix, RequestTimeout: 3 * time.Second}
	for _, f := range mod {
		f(&cfg)
	}
	s, err := etcdstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func uniquePrefix() string { return fmt.Sprintf("/test-%d/", prefixes.Add(1)) }

// TestConformance runs the ipam.Store suite against a real etcd.
func TestConformance(t *testing.T) {
	c := etcdlab.Start(t, 1)
	storetest.Run(t, func(t *testing.T) (ipam.Store, func(ipam.Store) ipam.Store) {
		p := uniquePrefix()
		s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		return s, func(old ipam.Store) ipam.Store {
			old.Close()
			s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), Prefix: p})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

func mustCommit(t *testing.T, s ipam.Store, conds []ipam.Cond, ops []ipam.Op) int64 {
	t.Helper()
	r, err := s.Commit(context.Background(), conds, ops)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPrefixIsolates: two prefixes on one etcd never see each other's keys,
// and keys are stored under the prefix (what an operator reads with
// etcdctl).
func TestPrefixIsolates(t *testing.T) {
	c := etcdlab.Start(t, 1)
	a := newStore(t, c.Endpoints(), "/a")
	b := newStore(t, c.Endpoints(), "/ab/")
	mustCommit(t, a, nil, []ipam.Op{{Key: "pools/p/addrs/10.0.0.1", Value: []byte("x")}})
	if es, err := b.List(context.Background(), ""); err != nil || len(es) != 0 {
		t.Fatalf("store /ab/ sees %v (%v)", es, err)
	}
	resp, err := a.Client().Get(context.Background(), "/a/pools/p/addrs/10.0.0.1")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "x" {
		t.Fatalf("raw key /a/pools/p/addrs/10.0.0.1: %v %v", resp, err)
	}
	es, err := a.List(context.Background(), "pools/")
	if err != nil || len(es) != 1 || es[0].Key != "pools/p/addrs/10.0.0.1" {
		t.Fatalf("List gives keys without the prefix: %+v %v", es, err)
	}
}

// TestRepeatedKeyInOneCommit: etcd refuses a txn that writes a key twice;
// the store applies the ops in order instead (the Store contract).
func TestRepeatedKeyInOneCommit(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	mustCommit(t, s, nil, []ipam.Op{{Key: "k", Value: []byte("1")}, {Key: "k", Value: []byte("2")}, {Key: "j", Value: []byte("j")}, {Key: "j", Delete: true}})
	if e, _ := s.Get(context.Background(), "k"); string(e.Value) != "2" {
		t.Fatalf("k = %q, want the last put", e.Value)
	}
	if e, _ := s.Get(context.Background(), "j"); e.Revision != 0 {
		t.Fatalf("j = %+v, want deleted by the last op", e)
	}
}

// TestRefusedCommitIsNotAmbiguous: a commit etcd refuses outright (here
// more operations than its --max-txn-ops, 128) was certainly not applied
// and must not be reported as "outcome unknown", which would send the
// caller re-reading for nothing.
func TestRefusedCommitIsNotAmbiguous(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	var ops []ipam.Op
	for i := range 200 {
		ops = append(ops, ipam.Op{Key: fmt.Sprintf("k/%d", i), Value: []byte("v")})
	}
	_, err := s.Commit(context.Background(), nil, ops)
	if err == nil {
		t.Fatal("a commit of 200 ops was accepted; etcd's default limit is 128")
	}
	if errors.Is(err, etcdstore.ErrOutcomeUnknown) || errors.Is(err, ipam.ErrCompareFailed) {
		t.Fatalf("a refused commit reported as %v", err)
	}
	if !strings.Contains(err.Error(), "too many operations") {
		t.Errorf("error %q does not say why", err)
	}
}

// TestTTLSharesLeasesAndExpires: a burst of keys with one TTL costs one
// lease, and the keys disappear once it runs out - never before the TTL.
func TestTTLSharesLeasesAndExpires(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	ctx := context.Background()
	const ttl = 3 * time.Second
	start := time.Now()
	for i := range 20 {
		mustCommit(t, s, nil, []ipam.Op{{Key: fmt.Sprintf("q/%d", i), Value: []byte("q"), TTL: ttl}})
	}
	mustCommit(t, s, nil, []ipam.Op{{Key: "forever", Value: []byte("f")}})
	leases, err := s.Client().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(leases.Leases); n != 1 {
		t.Fatalf("%d leases for 20 keys of one TTL, want 1", n)
	}
	// Still there just before the TTL: the lease may never cut it short.
	for {
		es, err := s.List(ctx, "q/")
		if err != nil {
			t.Fatal(err)
		}
		if len(es) < 20 {
			if el := time.Since(start); el < ttl {
				t.Fatalf("TTL keys gone after %v, before their TTL %v", el, ttl)
			}
			if len(es) != 0 {
				t.Fatalf("%d of 20 keys of one lease left: expiry was not all at once", len(es))
			}
			break
		}
		if time.Since(start) > ttl+ttl/10+time.Second+15*time.Second {
			t.Fatalf("TTL keys still there after %v", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("20 keys with TTL %v gone after %v", ttl, time.Since(start).Round(10*time.Millisecond))
	if e, _ := s.Get(ctx, "forever"); e.Revision == 0 {
		t.Fatal("a key without TTL expired")
	}
}

// TestConcurrentClients: three clients (three nodes) x 300 create-if-absent
// commits over one shared key space of 900 keys, each client walking it
// from a start point only 100 keys after the previous one's, so that they
// run into each other: every key is created exactly once, and nothing
// fails but lost races.
func TestConcurrentClients(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	const clients, each, space = 3, 300, 900
	var stores []*etcdstore.Store
	for range clients {
		stores = append(stores, newStore(t, c.Endpoints(), p))
	}
	var mu sync.Mutex
	owner := map[int]int{}
	var retries atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for ci, s := range stores {
		wg.Go(func() {
			next := ci * 100
			for range each {
				for {
					k := next % space
					next++
					key := fmt.Sprintf("pools/p/addrs/%d", k)
					_, err := s.Commit(context.Background(), []ipam.Cond{{Key: key}}, []ipam.Op{
						{Key: key, Value: []byte(fmt.Sprint(ci))},
						{Key: fmt.Sprintf("attachments/c%d-%d", ci, k), Value: []byte(key)},
					})
					if errors.Is(err, ipam.ErrCompareFailed) {
						retries.Add(1)
						continue
					}
					if err != nil {
						t.Errorf("client %d key %d: %v", ci, k, err)
						return
					}
					mu.Lock()
					if prev, dup := owner[k]; dup {
						t.Errorf("key %d created by client %d and again by client %d", k, prev, ci)
					}
					owner[k] = ci
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if len(owner) != clients*each {
		t.Fatalf("%d keys created, want %d", len(owner), clients*each)
	}
	es, err := stores[0].List(context.Background(), "pools/p/addrs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != space {
		t.Fatalf("read back %d address keys, want %d", len(es), space)
	}
	for _, e := range es {
		var k int
		fmt.Sscanf(strings.TrimPrefix(e.Key, "pools/p/addrs/"), "%d", &k)
		if string(e.Value) != fmt.Sprint(owner[k]) {
			t.Fatalf("%s = %q, but client %d won it", e.Key, e.Value, owner[k])
		}
	}
	at, _ := stores[1].List(context.Background(), "attachments/")
	if len(at) != space {
		t.Fatalf("%d attachment keys, want %d: a commit was half applied", len(at), space)
	}
	t.Logf("%d commits by %d clients in %v (%.0f/s), %d lost races", clients*each, clients, el.Round(time.Millisecond), float64(clients*each)/el.Seconds(), retries.Load())
}

// TestLastFreeKeyRace: three clients race for the last free key many
// times; each time exactly one wins and the others see ErrCompareFailed.
func TestLastFreeKeyRace(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	var stores []*etcdstore.Store
	for range 3 {
		stores = append(stores, newStore(t, c.Endpoints(), p))
	}
	for round := range 50 {
		key := fmt.Sprintf("last/%d", round)
		var wins, lost atomic.Int64
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for i, s := range stores {
			wg.Go(func() {
				<-ready
				_, err := s.Commit(context.Background(), []ipam.Cond{{Key: key}}, []ipam.Op{{Key: key, Value: []byte(fmt.Sprint(i))}})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ipam.ErrCompareFailed):
					lost.Add(1)
				default:
					t.Errorf("round %d client %d: %v", round, i, err)
				}
			})
		}
		close(ready)
		wg.Wait()
		if wins.Load() != 1 || lost.Load() != 2 {
			t.Fatalf("round %d: %d winners, %d losers; want 1 and 2", round, wins.Load(), lost.Load())
		}
	}
}
