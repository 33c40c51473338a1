package ipam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// An allocation with nothing to check is one commit (attachment, address
// records and history together); with a detector it is still a reservation
// per pool, the check, and the final commit.

var (
	plain4 = PoolSpec{Name: "plain4", Subnet: "10.40.0.0/24", Gateway: "10.40.0.1"}
	plain6 = PoolSpec{Name: "plain6", Subnet: "fd00:40::/120"}
)

func TestCommitsPerAllocation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pools   []string
		commits int64
		checks  int
	}{
		{"no detection, one pool", []string{"plain4"}, 1, 0},
		{"no detection, dual stack", []string{"plain4", "plain6"}, 1, 0},
		{"detection, one pool", []string{"lan4"}, 2, 1},
		{"detection, dual stack", []string{"lan4", "lan6"}, 3, 1},
		// One pool checked: the reservations keep both addresses off
		// other allocators while it is probed.
		{"detection on one of two pools", []string{"lan4", "plain6"}, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, v4, v6, plain4, plain6)
			ctx := context.Background()
			att := f.allocate(t, req("c1", tc.pools...))
			if n := f.racy.commits.Load(); n != tc.commits {
				t.Errorf("%d commits, want %d", n, tc.commits)
			}
			if f.chk.calls != tc.checks {
				t.Errorf("%d checks, want %d", f.chk.calls, tc.checks)
			}
			if att.State != StateAllocated || len(att.Addresses) != len(tc.pools) {
				t.Fatalf("attachment %+v", att)
			}
			for i, ip := range att.Addresses {
				if ip.Pool != tc.pools[i] {
					t.Errorf("address %d from pool %q, want %q (the order asked for)", i, ip.Pool, tc.pools[i])
				}
			}
			if ip := att.Addresses[0]; ip.Pool == "plain4" && (ip.Address.Bits() != 24 || ip.Gateway.String() != "10.40.0.1") {
				t.Errorf("plain4 address %+v: want the pool's prefix length and gateway", ip)
			}
			// What the store holds is what the answer said.
			got, ok, err := f.m.Get(ctx, att.AttachmentKey)
			if err != nil || !ok || got.State != StateAllocated || len(got.Addresses) != len(tc.pools) {
				t.Fatalf("stored %+v %v %v", got, ok, err)
			}
			ep, err := f.m.History(ctx, "default/c1")
			if err != nil || len(ep.History) != len(tc.pools) {
				t.Fatalf("history %+v %v", ep, err)
			}
			for i, h := range ep.History {
				if h.Address != att.Addresses[i].Address.Addr() || h.Pool != tc.pools[i] || h.ContainerID != "c1" || h.Node != "node-a" {
					t.Errorf("history entry %d: %+v", i, h)
				}
			}
			us, err := f.m.Usage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range us {
				if u.Reserved != 0 {
					t.Errorf("pool %s: %d reserved after the allocation", u.Name, u.Reserved)
				}
			}
			assertConsistent(t, f)
			// Release and allocate again: sticky, and still one commit.
			if _, ok, err := f.m.Release(ctx, att.AttachmentKey); !ok || err != nil {
				t.Fatalf("release: %v %v", ok, err)
			}
			before := f.racy.commits.Load()
			again := f.allocate(t, req("c1", tc.pools...))
			if n := f.racy.commits.Load() - before; n != tc.commits {
				t.Errorf("re-allocation: %d commits, want %d", n, tc.commits)
			}
			for i := range again.Addresses {
				if again.Addresses[i].Address != att.Addresses[i].Address {
					t.Errorf("re-allocation gave %s, want the workload's last %s", again.Addresses[i].Address, att.Addresses[i].Address)
				}
			}
			assertConsistent(t, f)
		})
	}
}

// interposeStore runs before once, just ahead of the first commit it is
// asked for, with that commit's compares: another writer getting there
// first, at the worst moment.
type interposeStore struct {
	Store
	before  func(conds []Cond)
	once    sync.Once
	commits atomic.Int64
}

func (s *interposeStore) Commit(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	s.commits.Add(1)
	s.once.Do(func() { s.before(conds) })
	return s.Store.Commit(ctx, conds, ops)
}

type retryMetrics struct {
	retries atomic.Int64
}

func (m *retryMetrics) Allocation(string, string, float64)   {}
func (m *retryMetrics) Release(string, string)               {}
func (m *retryMetrics) ConflictSkipped(string)               {}
func (m *retryMetrics) Quarantined(string)                   {}
func (m *retryMetrics) RetrySpent(string)                    { m.retries.Add(1) }
func (m *retryMetrics) GCReclaimed(string)                   {}
func (m *retryMetrics) PoolUsage(string, int, int, int, int) {}
func (m *retryMetrics) Workloads(int, int)                   {}
func (m *retryMetrics) WorkloadsPruned(int, int)             {}

// A one-commit allocation that loses its compare - its address taken by
// another node, or the workload's endpoint written by another allocation -
// re-reads and retries: one retry spent, a complete allocation, and the
// other writer's records untouched.
func TestOneCommitLostRace(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steal writes, through st, what another writer commits first; it
		// returns the address that writer took, if any.
		steal func(t *testing.T, st Store, conds []Cond) netip.Addr
	}{
		{"address taken by another node", func(t *testing.T, st Store, conds []Cond) netip.Addr {
			for _, c := range conds {
				if !strings.HasPrefix(c.Key, PrefixDomains) {
					continue
				}
				addr := netip.MustParseAddr(c.Key[strings.LastIndexByte(c.Key, '/')+1:])
				other := AttachmentKey{ContainerID: "other", Interface: "eth0"}
				att, _ := json.Marshal(Attachment{AttachmentKey: other, Node: "node-b", State: StateAllocated,
					Addresses: []AllocatedIP{{Pool: "plain4", Address: netip.PrefixFrom(addr, 24)}}})
				rec, _ := json.Marshal(AddressRecord{Pool: "plain4", Address: addr, State: StateAllocated, Owner: other, Node: "node-b"})
				if _, err := st.Commit(context.Background(), []Cond{{Key: c.Key}}, []Op{{Key: PrefixAttachments + "other/eth0", Value: att}, {Key: c.Key, Value: rec}}); err != nil {
					t.Errorf("the other node's commit: %v", err)
				}
				return addr
			}
			t.Error("the first commit compares no address key")
			return netip.Addr{}
		}},
		{"workload endpoint written meanwhile", func(t *testing.T, st Store, conds []Cond) netip.Addr {
			for _, c := range conds {
				if !strings.HasPrefix(c.Key, "workloads/") {
					continue
				}
				// A sibling allocation of the same workload by another node
				// (whose in-process claims this one does not see).
				p := mustPool(t, plain4)
				other := mustNew(t, Options{Store: st, Pools: []*Pool{p}, Node: "node-b", Links: noLinks{}})
				if _, err := other.Allocate(context.Background(), AllocateRequest{ContainerID: "sibling", Interface: "eth0", Workload: "default/c1", Pools: []string{"plain4"}}); err != nil {
					t.Errorf("the sibling's allocation: %v", err)
				}
				return netip.Addr{}
			}
			t.Error("the first commit compares no workload key")
			return netip.Addr{}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bolt := openBolt(t)
			var stolen netip.Addr
			st := &interposeStore{Store: bolt}
			st.before = func(conds []Cond) { stolen = tc.steal(t, bolt, conds) }
			p := mustPool(t, plain4)
			met := &retryMetrics{}
			m := mustNew(t, Options{Store: st, Pools: []*Pool{p}, Node: "node-a", MaxRetries: 3, Metrics: met, Links: noLinks{}})
			ctx := context.Background()
			att, err := m.Allocate(ctx, req("c1", "plain4"))
			if err != nil {
				t.Fatalf("allocation after a lost race: %v", err)
			}
			if n := met.retries.Load(); n != 1 {
				t.Errorf("%d retries spent, want 1", n)
			}
			if n := st.commits.Load(); n != 2 {
				t.Errorf("%d commits, want 2 (the lost one and the retry)", n)
			}
			got := att.Addresses[0].Address.Addr()
			if stolen.IsValid() && got == stolen {
				t.Fatalf("allocated %s, which the other node took", got)
			}
			if err := Consistent(ctx, bolt); err != nil {
				t.Fatal(err)
			}
			ep, err := m.History(ctx, "default/c1")
			if err != nil {
				t.Fatal(err)
			}
			if stolen.IsValid() {
				if len(ep.History) != 1 || ep.History[0].Address != got {
					t.Fatalf("history %+v", ep.History)
				}
				other, ok, err := m.Get(ctx, AttachmentKey{ContainerID: "other", Interface: "eth0"})
				if err != nil || !ok || other.Addresses[0].Address.Addr() != stolen {
					t.Fatalf("the other node's allocation: %+v %v %v", other, ok, err)
				}
			} else if len(ep.History) != 2 || ep.History[0].Address != got || ep.History[1].ContainerID != "sibling" {
				// The retry re-read the endpoint: the sibling's entry stays.
				t.Fatalf("history %+v", ep.History)
			}
		})
	}
}

// Two agents (two nodes: their in-process claims do not see each other,
// only the store's compares do) allocate from one small pool on one store
// with 128 goroutines: every address is given out once, exactly as many
// allocations succeed as the pool holds, the rest are pool_full.
func TestOneCommitNoDuplicatesUnderContention(t *testing.T) {
	bolt := openBolt(t)
	const size, workers = 64, 128
	spec := PoolSpec{Name: "small", Subnet: "10.41.0.0/24", Ranges: []string{"10.41.0.1-10.41.0.64"}}
	st := &racyStore{Store: bolt}
	met := &retryMetrics{}
	var agents []*IPAM
	for _, node := range []string{"node-a", "node-b"} {
		p := mustPool(t, spec)
		// Retries generous enough that a lost race never ends as
		// try_again: what is counted is who got an address.
		m := mustNew(t, Options{Store: st, Pools: []*Pool{p}, Node: node, MaxRetries: 1000, Metrics: met, Links: noLinks{}})
		agents = append(agents, m)
	}
	ctx := context.Background()
	got, errs := storetest.AllocateAtOnce(workers, func(i int) (Attachment, error) {
		return agents[i%2].Allocate(ctx, req(fmt.Sprint("c", i), "small"))
	})
	storetest.NoneTwice(t, got, func(i int) string { return fmt.Sprint("c", i) })
	ok, full := 0, 0
	for i := range workers {
		switch {
		case errs[i] == nil:
			ok++
		case code(errs[i]) == api.CodePoolFull:
			full++
		default:
			t.Errorf("c%d: %v", i, errs[i])
		}
	}
	if ok != size || full != workers-size {
		t.Errorf("%d allocated and %d pool_full, want %d and %d", ok, full, size, workers-size)
	}
	if n := st.commits.Load(); n != int64(size)+met.retries.Load() {
		// Every allocation is one commit, plus one per lost race.
		t.Errorf("%d commits for %d allocations and %d lost races", n, size, met.retries.Load())
	}
	if err := Consistent(ctx, bolt); err != nil {
		t.Fatal(err)
	}
	for _, m := range agents {
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u[0].Allocated != size || u[0].Reserved != 0 {
			t.Errorf("usage %+v", u[0])
		}
	}
	t.Logf("%d lost races between the two nodes", met.retries.Load())
}
