package ipam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

// historyFixture is an IPAM of pool plain4 on node-a keeping maxHistory
// entries, on a real bbolt file whose workload "default/w" has n released
// history entries in the record format of builds before per-entry history
// keys (one Endpoint value holding them all), as an upgraded node finds
// them. With meter, the IPAM commits through it (meter.Store is the file).
func historyFixture(tb testing.TB, n, maxHistory int, meter *meterStore) (*IPAM, *boltstore.Store) {
	tb.Helper()
	s := openBolt(tb)
	var st Store = s
	if meter != nil {
		meter.Store = s
		st = meter
	}
	p := mustPool(tb, plain4)
	writeLegacyEndpoint(tb, s, "default/w", n, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := mustNew(tb, Options{Store: st, Pools: []*Pool{p}, Node: "node-a", Links: noLinks{}, MaxHistory: maxHistory})
	return m, s
}

// historyReq is container c<i> of workload default/w asking plain4.
func historyReq(i int) AllocateRequest {
	return AllocateRequest{ContainerID: fmt.Sprint("c", i), Interface: "eth0", Workload: "default/w", Pools: []string{"plain4"}}
}

// writeLegacyEndpoint writes workload w's endpoint with n released entries
// embedded, newest first, the newest allocated at t.
func writeLegacyEndpoint(tb testing.TB, s Store, w string, n int, t time.Time) {
	tb.Helper()
	ep := Endpoint{Workload: w}
	for i := n - 1; i >= 0; i-- {
		at := t.Add(-time.Duration(n-1-i) * time.Minute)
		ep.History = append(ep.History, HistoryEntry{
			Address: netip.AddrFrom4([4]byte{10, 40, 0, byte(10 + i%200)}), Pool: "plain4",
			ContainerID: fmt.Sprintf("old-%05d", i), Interface: "eth0", Node: "node-a",
			AllocatedAt: at, ReleasedAt: at.Add(30 * time.Second),
		})
	}
	val, err := json.Marshal(ep)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), nil, []Op{{Key: WorkloadKeyForTest(w), Value: val}}); err != nil {
		tb.Fatal(err)
	}
}

// meterStore counts what commits write: the most operations in one
// commit (etcd refuses more than --max-txn-ops, 128 by default) and the
// bytes of the values put.
type meterStore struct {
	Store
	maxOps atomic.Int64
	bytes  atomic.Int64
}

func (s *meterStore) Commit(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	if n := int64(len(ops)); n > s.maxOps.Load() {
		s.maxOps.Store(n)
	}
	for _, op := range ops {
		s.bytes.Add(int64(len(op.Value)))
	}
	return s.Store.Commit(ctx, conds, ops)
}

func keysUnder(t testing.TB, s Store, prefix string) int {
	t.Helper()
	es, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestMaxHistoryCapRefused(t *testing.T) {
	s := openBolt(t)
	if _, err := New(Options{Store: s, MaxHistory: 1001}); err == nil || !strings.Contains(err.Error(), "cap 1000") {
		t.Fatalf("New with 1001 history records: %v, want the cap named", err)
	}
	if _, err := New(Options{Store: s, MaxHistory: 1000}); err != nil {
		t.Fatalf("New with the cap: %v", err)
	}
}

// A history embedded in the endpoint by an older build is read as it is,
// moved to entry keys (in commits etcd accepts) by the workload's next
// allocation, and nothing of it within the cap is lost; its newest address
// stays the sticky candidate.
func TestHistoryOldFormatMovedWithoutLoss(t *testing.T) {
	for _, tc := range []struct {
		name       string
		old, max   int
		wantBefore int
	}{
		{"250 entries, cap 1000", 250, 1000, 250},
		{"1500 entries, cap 1000", 1500, 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &meterStore{}
			m, bolt := historyFixture(t, tc.old, tc.max, st)
			ctx := context.Background()
			before, err := m.History(ctx, "default/w")
			if err != nil {
				t.Fatal(err)
			}
			if len(before.History) != tc.wantBefore || before.History[0].ContainerID != fmt.Sprintf("old-%05d", tc.old-1) {
				t.Fatalf("read before the move: %d entries, newest %+v", len(before.History), before.History[0])
			}
			att := mustAllocate(t, m, AllocateRequest{ContainerID: "new", Interface: "eth0", Workload: "default/w", Pools: []string{"plain4"}})
			if got, want := att.Addresses[0].Address.Addr(), before.History[0].Address; got != want {
				t.Errorf("allocated %s, want the workload's last address %s (sticky)", got, want)
			}
			if n := st.maxOps.Load(); n > 128 {
				t.Errorf("a commit of %d operations: etcd refuses more than 128", n)
			}
			after, err := m.History(ctx, "default/w")
			if err != nil {
				t.Fatal(err)
			}
			want := min(tc.wantBefore+1, tc.max)
			if len(after.History) != want || after.History[0].ContainerID != "new" {
				t.Fatalf("after the move: %d entries (want %d), newest %+v", len(after.History), want, after.History[0])
			}
			for i := 1; i < want; i++ {
				if !historyEqual(after.History[i], before.History[i-1]) {
					t.Fatalf("entry %d changed in the move: %+v, was %+v", i, after.History[i], before.History[i-1])
				}
			}
			if n := keysUnder(t, bolt, "history/"); n != want {
				t.Errorf("%d history keys, want %d", n, want)
			}
			e, err := bolt.Get(ctx, WorkloadKeyForTest("default/w"))
			if err != nil || strings.Contains(string(e.Value), `"history"`) {
				t.Errorf("the endpoint still embeds a history (%d bytes): %v", len(e.Value), err)
			}
			if _, _, err := m.Release(ctx, att.AttachmentKey); err != nil {
				t.Fatal(err)
			}
			final, err := m.History(ctx, "default/w")
			if err != nil || final.History[0].ReleasedAt.IsZero() || !final.History[1].ReleasedAt.Equal(before.History[0].ReleasedAt) {
				t.Fatalf("after the release: %+v %v", final.History[:2], err)
			}
			who, err := m.WhoHad(ctx, before.History[5].Address)
			if err != nil || len(who) == 0 || who[0].Workload != "default/w" {
				t.Fatalf("who had %s: %+v %v", before.History[5].Address, who, err)
			}
		})
	}
}

func historyEqual(a, b HistoryEntry) bool {
	return a.Address == b.Address && a.Pool == b.Pool && a.ContainerID == b.ContainerID && a.Interface == b.Interface &&
		a.AllocatedAt.Equal(b.AllocatedAt) && a.ReleasedAt.Equal(b.ReleasedAt)
}

// The cost of a workload's allocate+release cycle does not grow with its
// history: the bytes it writes (exact) and its time (the best of several
// rounds, with a generous ratio for a loaded machine) at the cap are those
// of a short history. Every allocation once rewrote the whole history:
// ~250 KB and about four times the time at 1,000 entries.
func TestHistoryCostFlat(t *testing.T) {
	type cost struct {
		bytes int64
		best  time.Duration
	}
	measure := func(n int) cost {
		st := &meterStore{}
		m, _ := historyFixture(t, n, 1000, st)
		mustCycle(t, m, historyReq(-1)) // moves an old-format history, once
		st.bytes.Store(0)
		c := cost{best: time.Hour}
		const rounds, per = 5, 10
		for r := 0; r < rounds; r++ {
			start := time.Now()
			for i := 0; i < per; i++ {
				mustCycle(t, m, historyReq(r*per+i))
			}
			c.best = min(c.best, time.Since(start)/per)
		}
		c.bytes = st.bytes.Load() / (rounds * per)
		return c
	}
	short, capped := measure(10), measure(1000)
	t.Logf("allocate+release: history 10: %d bytes, %v; history 1000: %d bytes, %v", short.bytes, short.best, capped.bytes, capped.best)
	if float64(capped.bytes) > 1.2*float64(short.bytes) {
		t.Errorf("a cycle writes %d bytes with 1000 history entries, %d with 10: the cost grows with the history", capped.bytes, short.bytes)
	}
	if capped.best > 3*short.best+5*time.Millisecond {
		t.Errorf("a cycle takes %v with 1000 history entries, %v with 10: the cost grows with the history", capped.best, short.best)
	}
}

// A workload no allocation names is pruned, endpoint and history (a long
// one in several commits), once its last release is older than the
// retention; a live one is kept whatever its age; and the counts say so.
func TestPruneWorkloadsAfterRetention(t *testing.T) {
	f := newFixtureOpts(t, Options{Retention: time.Hour, MaxHistory: 1000}, plain4)
	ctx := context.Background()
	cycle := func(cid, workload string) {
		t.Helper()
		mustCycle(t, f.m, AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: workload, Pools: []string{"plain4"}})
	}
	cycle("gone", "default/gone")
	f.allocate(t, req("live", "plain4"))
	writeLegacyEndpoint(t, f.store, "default/long", 250, *f.now.Load())
	cycle("long-1", "default/long") // 251 entries, as keys
	if n := keysUnder(t, f.store, "history/"); n != 253 {
		t.Fatalf("%d history keys, want 253", n)
	}
	f.advance(30 * time.Minute)
	res, err := f.m.GC(ctx)
	if err != nil || res.WorkloadsPruned != 0 {
		t.Fatalf("GC within the retention: %+v %v", res, err)
	}
	if w := f.m.Workloads(); w.Live != 1 || w.Retained != 2 || w.Retention != time.Hour || w.Pruned != 0 {
		t.Fatalf("workloads %+v, want 1 live, 2 retained", w)
	}
	f.advance(31 * time.Minute)
	res, err = f.m.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.WorkloadsPruned != 2 || res.RecordsPruned != 2+252 {
		t.Errorf("GC past the retention pruned %d workloads, %d records; want 2 and 254", res.WorkloadsPruned, res.RecordsPruned)
	}
	if w := f.m.Workloads(); w.Live != 1 || w.Retained != 0 || w.Pruned != 2 || w.RecordsPruned != 254 {
		t.Errorf("workloads %+v, want 1 live, 0 retained, 2 pruned (254 records)", w)
	}
	if n, h := keysUnder(t, f.store, "workloads/"), keysUnder(t, f.store, "history/"); n != 1 || h != 1 {
		t.Errorf("%d endpoints and %d history keys left, want the live workload's 1 and 1", n, h)
	}
	if ep, err := f.m.History(ctx, "default/live"); err != nil || len(ep.History) != 1 {
		t.Errorf("the live workload's history: %+v %v", ep, err)
	}
	if ep, err := f.m.History(ctx, "default/gone"); err != nil || len(ep.History) != 0 {
		t.Errorf("the pruned workload's history: %+v %v", ep, err)
	}
	assertConsistent(t, f)
}

// GC's deletion compares the endpoint's revision: a workload that gets an
// allocation between GC's look and its deletion is kept, history and all.
func TestPruneKeepsAWorkloadAllocatedMeanwhile(t *testing.T) {
	bolt, clock, opts := clockedOptions(t, time.Hour)
	t0 := *clock.Load()
	m := mustNew(t, opts)
	ctx := context.Background()
	r := historyReq(1)
	mustCycle(t, m, r)
	later := t0.Add(2 * time.Hour)
	clock.Store(&later)
	st := &interposeStore{Store: bolt}
	st.before = func(conds []Cond) {
		if len(conds) != 1 || conds[0].Key != WorkloadKeyForTest("default/w") {
			t.Errorf("GC's first commit compares %+v, want the endpoint alone", conds)
		}
		r.ContainerID = "c2"
		if _, err := m.Allocate(ctx, r); err != nil {
			t.Errorf("the allocation meanwhile: %v", err)
		}
	}
	opts.Store = st
	gc := mustNew(t, opts)
	res, err := gc.GC(ctx)
	if err != nil || res.WorkloadsPruned != 0 {
		t.Fatalf("GC: %+v %v; want the workload kept", res, err)
	}
	ep, err := m.History(ctx, "default/w")
	if err != nil || len(ep.History) != 2 || ep.History[0].ContainerID != "c2" || ep.History[1].ContainerID != "c1" {
		t.Fatalf("history %+v %v, want c2 and c1", ep.History, err)
	}
	if w := gc.Workloads(); w.Retained != 1 || w.Pruned != 0 {
		t.Errorf("workloads %+v: the kept workload is not counted", w)
	}
	if err := Consistent(ctx, bolt); err != nil {
		t.Fatal(err)
	}
}

// Podman gives every --rm container a workload of its own. 10,000 of them,
// each allocated and released, twenty at a time, a fake second per
// container, GC every fake minute, retention one hour: after every GC pass
// the store holds exactly one endpoint and one history entry for each
// workload released within the hour, and nothing else; the bbolt file's
// key count never grows past that.
func TestPodmanChurnBoundedByRetention(t *testing.T) {
	const (
		containers = 10000
		parallel   = 20
		round      = 20 * time.Second // one fake second per container
		retention  = time.Hour
		gcEvery    = 3 // rounds: a fake minute
	)
	bolt, clock, opts := clockedOptions(t, retention)
	opts.MaxRetries = 10
	m := mustNew(t, opts)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(22, 5))
	released := map[string]time.Time{} // workload -> its release
	maxKeys, pruned := 0, 0
	for r := 0; r*parallel < containers; r++ {
		now := *clock.Load()
		var wg sync.WaitGroup
		errs := make(chan error, parallel)
		for i := 0; i < parallel; i++ {
			name := fmt.Sprintf("%08x_%08x", rng.Uint32(), rng.Uint32())
			if _, dup := released[name]; dup {
				t.Fatalf("workload name %s drawn twice", name)
			}
			released[name] = now
			cid := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
			wg.Go(func() {
				errs <- cycle(ctx, m, AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: name, Pools: []string{"plain4"}})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		next := now.Add(round)
		clock.Store(&next)
		if (r+1)%gcEvery != 0 && (r+1)*parallel < containers {
			continue
		}
		res, err := m.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pruned += res.WorkloadsPruned
		want := 0
		for _, at := range released {
			if next.Sub(at) <= retention {
				want++
			}
		}
		all := keysUnder(t, bolt, "")
		if w := m.Workloads(); w.Retained != want || w.Live != 0 || all != 2*want {
			t.Fatalf("after %d containers: %d keys, workloads %+v; want %d retained workloads and %d keys", (r+1)*parallel, all, w, want, 2*want)
		}
		maxKeys = max(maxKeys, all)
	}
	// The last pass ran a round after the last release (10,000 fake
	// seconds from the start): the releases of the last hour are the last
	// 180 rounds of 20.
	const kept = 3600
	w := m.Workloads()
	if w.Retained != kept || pruned != containers-kept || w.Pruned != pruned || w.RecordsPruned != 2*pruned {
		t.Errorf("at the end: workloads %+v, pruned %d; want %d retained, %d pruned", w, pruned, kept, containers-kept)
	}
	// At a pass the hour holds 181 rounds (both ends included).
	if limit := 2 * (kept + parallel); maxKeys > limit {
		t.Errorf("the store held %d keys at a GC pass, more than retention allows (%d)", maxKeys, limit)
	}
	if err := Consistent(ctx, bolt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bolt.Path())
	if err == nil {
		t.Logf("%d containers: %d keys at most, %d at the end; bbolt file %d KiB", containers, maxKeys, keysUnder(t, bolt, ""), fi.Size()/1024)
	}
}

// clockedOptions opens a real bbolt store for an IPAM of pool plain4 on
// node-a whose clock is the returned pointer (starting 2026-03-01), with
// the given workload retention.
func clockedOptions(t *testing.T, retention time.Duration) (*boltstore.Store, *atomic.Pointer[time.Time], Options) {
	t.Helper()
	bolt := openBolt(t)
	p := mustPool(t, plain4)
	clock := new(atomic.Pointer[time.Time])
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock.Store(&t0)
	return bolt, clock, Options{Store: bolt, Pools: []*Pool{p}, Node: "node-a", Links: noLinks{}, Retention: retention,
		Now: func() time.Time { return *clock.Load() }}
}
