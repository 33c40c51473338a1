package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

// Tests of what a shared store (etcd) adds: commits that fail while the
// store is unreachable, commits whose outcome is unknown, and other nodes'
// allocations. The real etcd runs in core/ipam/etcdstore and test/ipametcd;
// here a wrapper around the real bbolt store makes the failures exact.

var errDown = errors.New("simulated: store unreachable")

// flakyStore fails commits after the first okFirst ones while down is
// set; lieApplied/lieDropped make the next commit answer ErrOutcomeUnknown
// after applying it, or without applying it.
type flakyStore struct {
	Store
	commits    atomic.Int64 // every Commit call
	down       atomic.Bool
	okFirst    atomic.Int64
	lieApplied atomic.Int64
	lieDropped atomic.Int64
}

func (s *flakyStore) Commit(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	s.commits.Add(1)
	if s.down.Load() && s.okFirst.Add(-1) < 0 {
		return 0, errDown
	}
	if s.lieDropped.Add(-1) >= 0 {
		return 0, ErrOutcomeUnknown
	}
	rev, err := s.Store.Commit(ctx, conds, ops)
	if err == nil && s.lieApplied.Add(-1) >= 0 {
		return 0, ErrOutcomeUnknown
	}
	return rev, err
}

type sharedFixture struct {
	bolt  *boltstore.Store
	store *flakyStore
	now   atomic.Pointer[time.Time]
	// detect turns conflict detection on for the pool of the next ipam():
	// an allocation is then a reserve, a check and a final commit; without
	// it, one commit.
	detect bool
}

func newShared(t *testing.T) *sharedFixture {
	t.Helper()
	s := openBolt(t)
	f := &sharedFixture{bolt: s, store: &flakyStore{Store: s}}
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	f.now.Store(&now)
	return f
}

func (f *sharedFixture) ipam(t *testing.T, node string, alive func(context.Context, string) (bool, time.Time, error)) *IPAM {
	t.Helper()
	p := mustPool(t, PoolSpec{Name: "p", Subnet: "10.7.0.0/24", PoolOptions: PoolOptions{ConflictDetection: f.detect}})
	m, err := New(Options{Store: f.store, Pools: []*Pool{p}, Checker: &tableChecker{}, Links: noLinks{}, Node: node,
		NodeAlive: alive, MaxRetries: 3, GCGrace: 10 * time.Second, Now: func() time.Time { return *f.now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *sharedFixture) advance(d time.Duration) {
	n := f.now.Load().Add(d)
	f.now.Store(&n)
}

func usage(t *testing.T, m *IPAM) (allocated, reserved int) {
	t.Helper()
	u, err := m.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u[0].Allocated, u[0].Reserved
}

// A reservation whose rollback could not reach the store must not block
// the key: the client's retry (same container and interface) succeeds.
// Before the fix it got "in progress; try again" until the agent restarted.
// (Only a vetted allocation reserves: the pool detects conflicts.)
func TestRetryAfterUnreachableRollback(t *testing.T) {
	f := newShared(t)
	f.detect = true
	m := f.ipam(t, "n1", nil)
	ctx := context.Background()
	f.store.okFirst.Store(1) // the reservation lands; the commit and the rollback do not
	f.store.down.Store(true)
	if _, err := m.Allocate(ctx, req("c1", "p")); !errors.Is(err, errDown) {
		t.Fatalf("allocation while the store fails: %v", err)
	}
	if _, r := usage(t, m); r != 1 {
		t.Fatalf("%d reserved, want the 1 the rollback could not drop", r)
	}
	f.store.down.Store(false)
	att, err := m.Allocate(ctx, req("c1", "p"))
	if err != nil {
		t.Fatalf("retry once the store is back: %v", err)
	}
	if a, r := usage(t, m); a != 1 || r != 0 || len(att.Addresses) != 1 {
		t.Fatalf("after the retry: %d allocated, %d reserved, %+v", a, r, att)
	}
}

// GC drops such a reservation when nobody retries, after the grace period.
func TestGCDropsDanglingReservation(t *testing.T) {
	f := newShared(t)
	f.detect = true
	m := f.ipam(t, "n1", nil)
	ctx := context.Background()
	f.store.okFirst.Store(1)
	f.store.down.Store(true)
	m.Allocate(ctx, req("c1", "p"))
	f.store.down.Store(false)
	if res, err := m.GC(ctx); err != nil || len(res.Reclaimed) != 0 {
		t.Fatalf("GC within the grace period: %+v %v", res, err)
	}
	f.advance(11 * time.Second)
	if res, err := m.GC(ctx); err != nil || len(res.Reclaimed) != 1 {
		t.Fatalf("GC after the grace period: %+v %v", res, err)
	}
	if a, r := usage(t, m); a != 0 || r != 0 {
		t.Fatalf("%d allocated, %d reserved after GC", a, r)
	}
}

// A commit applied whose answer was lost: the allocation must succeed with
// exactly one address, neither duplicated nor left reserved, and without
// another commit when the lie was the last one (the re-read settles it).
func TestOutcomeUnknownButApplied(t *testing.T) {
	for _, tc := range []struct {
		name    string
		detect  bool
		lie     int64 // which commit lies
		commits int64
	}{
		{"detection off, the one commit", false, 1, 1},
		{"detection on, the reservation", true, 1, 2},
		{"detection on, the final commit", true, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newShared(t)
			f.detect = tc.detect
			m := f.ipam(t, "n1", nil)
			f.store.lieApplied.Store(tc.lie)
			att, err := m.Allocate(context.Background(), req("c1", "p"))
			if err != nil {
				t.Fatal(err)
			}
			if a, r := usage(t, m); a != 1 || r != 0 || len(att.Addresses) != 1 || att.State != StateAllocated {
				t.Fatalf("%d allocated, %d reserved, %+v", a, r, att)
			}
			if n := f.store.commits.Load(); n != tc.commits {
				t.Errorf("%d commits, want %d", n, tc.commits)
			}
			assertSharedConsistent(t, f, m, "c1")
		})
	}
}

// A commit not applied whose answer was lost: retried, not lost.
func TestOutcomeUnknownNotApplied(t *testing.T) {
	for _, detect := range []bool{false, true} {
		t.Run(fmt.Sprint("detection=", detect), func(t *testing.T) {
			f := newShared(t)
			f.detect = detect
			m := f.ipam(t, "n1", nil)
			f.store.lieDropped.Store(1)
			if _, err := m.Allocate(context.Background(), req("c1", "p")); err != nil {
				t.Fatal(err)
			}
			if a, r := usage(t, m); a != 1 || r != 0 {
				t.Fatalf("%d allocated, %d reserved", a, r)
			}
			assertSharedConsistent(t, f, m, "c1")
		})
	}
}

// With nothing to check, a failed commit leaves nothing at all: no
// reservation for Recover or GC, no rollback commit; the retry succeeds.
func TestOneCommitStoreDownLeavesNothing(t *testing.T) {
	f := newShared(t)
	m := f.ipam(t, "n1", nil)
	ctx := context.Background()
	f.store.down.Store(true)
	if _, err := m.Allocate(ctx, req("c1", "p")); !errors.Is(err, errDown) || !strings.Contains(err.Error(), `container c1 interface eth0 from pool(s) p`) {
		t.Fatalf("allocation while the store fails: %v", err)
	}
	if n := f.store.commits.Load(); n != 1 {
		t.Errorf("%d commits for a failed allocation with nothing to check, want 1 (no rollback needed)", n)
	}
	if a, r := usage(t, m); a != 0 || r != 0 {
		t.Fatalf("%d allocated, %d reserved after a failed one-commit allocation", a, r)
	}
	if es, err := f.bolt.List(ctx, ""); err != nil || len(es) != 0 {
		t.Fatalf("left in the store: %+v %v", es, err)
	}
	f.store.down.Store(false)
	if n, err := m.Recover(ctx); n != 0 || err != nil {
		t.Fatalf("Recover: %d %v", n, err)
	}
	if _, err := m.Allocate(ctx, req("c1", "p")); err != nil {
		t.Fatalf("retry once the store is back: %v", err)
	}
	assertSharedConsistent(t, f, m, "c1")
}

// assertSharedConsistent: the records agree, and the workload's history
// holds exactly one open entry for cid.
func assertSharedConsistent(t *testing.T, f *sharedFixture, m *IPAM, cid string) {
	t.Helper()
	ctx := context.Background()
	if err := Consistent(ctx, f.bolt); err != nil {
		t.Fatal(err)
	}
	ep, err := m.History(ctx, "default/"+cid)
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.History) != 1 || ep.History[0].ContainerID != cid {
		t.Fatalf("history of default/%s: %+v", cid, ep.History)
	}
}

// Another node's allocations are reclaimed only when its heartbeat expired
// more than the grace period ago.
func TestGCReclaimsDeadNodeAfterGrace(t *testing.T) {
	f := newShared(t)
	var alive atomic.Bool
	alive.Store(true)
	var expired atomic.Pointer[time.Time]
	nodeAlive := func(_ context.Context, node string) (bool, time.Time, error) {
		if node != "n2" {
			return true, time.Time{}, nil
		}
		if alive.Load() {
			return true, time.Time{}, nil
		}
		return false, *expired.Load(), nil
	}
	m1 := f.ipam(t, "n1", nodeAlive)
	m2 := f.ipam(t, "n2", nil)
	ctx := context.Background()
	for _, c := range []string{"a", "b"} {
		mustAllocate(t, m2, req(c, "p"))
	}
	mine := mustAllocate(t, m1, req("mine", "p"))
	_ = mine
	gc := func() int {
		res, err := m1.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Reclaimed)
	}
	f.advance(time.Hour)
	if n := gc(); n != 0 {
		t.Fatalf("reclaimed %d of a live node", n)
	}
	alive.Store(false)
	just := f.now.Load().Add(-5 * time.Second) // expired 5s ago, grace 10s
	expired.Store(&just)
	if n := gc(); n != 0 {
		t.Fatalf("reclaimed %d within the grace period", n)
	}
	never := time.Time{}
	expired.Store(&never) // never seen: unknown, keep
	if n := gc(); n != 0 {
		t.Fatalf("reclaimed %d of a node never seen", n)
	}
	long := f.now.Load().Add(-11 * time.Second)
	expired.Store(&long)
	if n := gc(); n != 2 {
		t.Fatalf("reclaimed %d of a node dead past the grace period, want 2", n)
	}
	if a, r := usage(t, m1); a != 1 || r != 0 {
		t.Fatalf("%d allocated, %d reserved; want this node's 1", a, r)
	}
}
