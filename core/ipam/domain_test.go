package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// The pools of the reproduction: ovB's range holds all of ovA's and ovA's
// gateway.
var (
	ovA = PoolSpec{Name: "ovA", Subnet: "10.90.0.0/24", Ranges: []string{"10.90.0.10-10.90.0.40"}, Gateway: "10.90.0.1"}
	ovB = PoolSpec{Name: "ovB", Subnet: "10.90.0.0/24", Ranges: []string{"10.90.0.1-10.90.0.40"}}
)

// fillConcurrently allocates from each pool until it is full, 8 workers
// per pool at once, and returns every address given with its holder.
func fillConcurrently(t *testing.T, m *IPAM, pools ...string) map[string][]AttachmentKey {
	t.Helper()
	ctx := context.Background()
	var (
		mu   sync.Mutex
		got  = map[string][]AttachmentKey{}
		wg   sync.WaitGroup
		errs = make(chan error, 64)
	)
	for _, pool := range pools {
		for w := 0; w < 8; w++ {
			wg.Go(func() {
				for i := 0; ; i++ {
					cid := fmt.Sprintf("%s-w%d-%d", pool, w, i)
					att, err := m.Allocate(ctx, AllocateRequest{ContainerID: cid, Interface: "eth0", Pools: []string{pool}})
					if code(err) == "pool_full" {
						return
					}
					if code(err) == "try_again" {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", cid, err)
						return
					}
					mu.Lock()
					for _, ip := range att.Addresses {
						k := ip.Domain + "/" + ip.Address.Addr().String()
						got[k] = append(got[k], att.AttachmentKey)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return got
}

// Two pools whose ranges overlap in one domain - loaded without the
// configuration's check, as a reload or another node's definition could -
// still never give one address to two holders: the store keys the address
// in its domain, so the second commit's compare fails and the allocator
// moves on. Together they hand out each address of the union once.
func TestOverlappingPoolsOneDomainNeverShareAnAddress(t *testing.T) {
	f := newFixture(t, ovA, ovB)
	got := fillConcurrently(t, f.m, "ovA", "ovB")
	for a, holders := range got {
		if len(holders) != 1 {
			t.Errorf("%s given to %d holders: %v", a, len(holders), holders)
		}
	}
	// ovB's range 10.90.0.1-40 minus the network address... .1 is ovA's
	// gateway but ovB has no gateway: ovB holds .1-.40 (40), ovA .10-.40
	// inside it. The union is 40 addresses, each given once.
	if len(got) != 40 {
		t.Errorf("%d distinct addresses given, want 40 (the union of the two ranges)", len(got))
	}
	assertConsistent(t, f)
	usage, err := f.m.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, u := range usage {
		total += u.Allocated
		if u.Free < 0 {
			t.Errorf("pool %s: free %d", u.Name, u.Free)
		}
	}
	if total != 40 {
		t.Errorf("the pools count %d allocated, want 40: %+v", total, usage)
	}
	// Releasing through one pool frees the domain's key for the other.
	for _, holders := range got {
		if _, ok, err := f.m.Release(context.Background(), holders[0]); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	assertEmpty(t, f)
}

// The same ranges in two domains are two address spaces: both fill
// completely, and each address is held once per domain.
func TestSameRangesInTwoDomainsBothAllocateFully(t *testing.T) {
	a, b := ovB, ovB
	a.Name, a.Domain = "vlan10", "vlan10"
	b.Name, b.Domain = "vlan20", "vlan20"
	f := newFixture(t, a, b)
	got := fillConcurrently(t, f.m, "vlan10", "vlan20")
	perDomain := map[string]int{}
	for k, holders := range got {
		if len(holders) != 1 {
			t.Errorf("%s given to %d holders", k, len(holders))
		}
		d, _, _ := strings.Cut(k, "/")
		perDomain[d]++
	}
	if perDomain["vlan10"] != 40 || perDomain["vlan20"] != 40 {
		t.Fatalf("per domain %v, want 40 each", perDomain)
	}
	assertConsistent(t, f)
	usage, err := f.m.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		if u.Allocated != 40 || u.Free != 0 || u.Domain != u.Name {
			t.Errorf("%+v", u)
		}
	}
	// A GC pass and a reload that keeps the pools see each pool's own
	// records only.
	if _, err := f.m.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.m.SetPools(context.Background(), f.m.Pools()); err != nil {
		t.Fatal(err)
	}
}

// A reload may not move a pool that holds addresses to another domain: its
// records are keyed in the old one, and the new domain would give them out
// again. At start, CheckDomains refuses the same.
func TestPoolDomainMoveWithLiveAddressesRefused(t *testing.T) {
	f := newFixture(t, PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.20"}})
	ctx := context.Background()
	att := f.allocate(t, req("c1", "p"))
	moved := mustPool(t, PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.20"}, PoolOptions: PoolOptions{Domain: "vlan9"}})
	err := f.m.SetPools(ctx, []*Pool{moved})
	held := att.Addresses[0].Address.Addr().String()
	if err == nil || !strings.Contains(err.Error(), `moving pool "p" from domain "default" to "vlan9" would orphan 1 live allocation(s)`) || !strings.Contains(err.Error(), held) {
		t.Fatalf("reload moving a pool's domain: %v", err)
	}
	if f.m.Pools()[0].Domain != DefaultDomain {
		t.Fatal("a refused reload changed the pools")
	}
	m2 := mustNew(t, Options{Store: f.store, Pools: []*Pool{moved}, Node: "node-a"})
	err = m2.CheckDomains(ctx)
	if !errors.Is(err, ErrDomainMoved) || !strings.Contains(err.Error(), `pool "p" is configured in domain "vlan9" but holds 1 live allocation(s) in domain "default": `+held) {
		t.Fatalf("start with a moved domain: %v", err)
	}
	if err := f.m.CheckDomains(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPoolDomainValidated(t *testing.T) {
	for _, d := range []string{"-x", "a b", "a/b", "é", strings.Repeat("d", 64), "x\x00"} {
		_, err := NewPool(PoolSpec{Name: "p", Subnet: "10.9.0.0/24", PoolOptions: PoolOptions{Domain: d}}, 5000)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "domain" {
			t.Errorf("domain %q: %v", d, err)
		}
	}
	p, err := NewPool(PoolSpec{Name: "p", Subnet: "10.9.0.0/24"}, 5000)
	if err != nil || p.Domain != DefaultDomain {
		t.Fatalf("%v %v", p, err)
	}
}

func TestPoolOverlap(t *testing.T) {
	mk := func(s PoolSpec) *Pool {
		p := mustPool(t, s)
		return p
	}
	a, b := mk(ovA), mk(ovB)
	if n, first := a.Overlap(b); n != 31 || first != netip.MustParseAddr("10.90.0.10") {
		t.Errorf("overlap %d from %s, want 31 from 10.90.0.10", n, first)
	}
	if n, _ := b.Overlap(a); n != 31 {
		t.Errorf("overlap is not symmetric: %d", n)
	}
	if !b.HoldsGatewayOf(a) || a.HoldsGatewayOf(b) {
		t.Error("gateway: ovB hands out ovA's gateway; ovA has none of ovB's")
	}
	other := ovB
	other.Domain = "elsewhere"
	if n, _ := a.Overlap(mk(other)); n != 0 || mk(other).HoldsGatewayOf(a) {
		t.Error("pools of different domains overlap")
	}
	split := PoolSpec{Name: "split", Subnet: "10.90.0.0/24", Ranges: []string{"10.90.0.5-10.90.0.12", "10.90.0.39-10.90.0.60"}}
	if n, first := a.Overlap(mk(split)); n != 5 || first.String() != "10.90.0.10" {
		t.Errorf("split overlap %d from %s, want 5 from 10.90.0.10", n, first)
	}
	v6 := mk(PoolSpec{Name: "six", Subnet: "::/64", Ranges: []string{"::a5a:a-::a5a:40"}})
	if n, _ := a.Overlap(v6); n != 0 {
		t.Error("an IPv6 pool overlaps an IPv4 one")
	}
}

// MigrateKeys over an IPAM: the moved store is consistent, the old
// allocations are released through the new keys, and their addresses are
// not handed out again while held.
func TestMigrateKeysThenAllocateAndRelease(t *testing.T) {
	s := openBolt(t)
	for i := 10; i < 40; i++ {
		holder := storetest.PerPoolHolder("lan", netip.MustParseAddr(fmt.Sprintf("10.20.0.%d", i)), fmt.Sprintf("c%d", i), "node-a")
		if _, err := s.Commit(context.Background(), nil, holder); err != nil {
			t.Fatal(err)
		}
	}
	n, err := MigrateKeys(context.Background(), s)
	if err != nil || n != 30 {
		t.Fatalf("moved %d: %v", n, err)
	}
	if n, err := MigrateKeys(context.Background(), s); err != nil || n != 0 {
		t.Fatalf("second run moved %d: %v", n, err)
	}
	if err := Consistent(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	p := mustPool(t, PoolSpec{Name: "lan", Subnet: "10.20.0.0/24", Ranges: []string{"10.20.0.10-10.20.0.40"}})
	m := mustNew(t, Options{Store: s, Pools: []*Pool{p}, Node: "node-a"})
	if err := m.CheckDomains(context.Background()); err != nil {
		t.Fatal(err)
	}
	att, err := m.Allocate(context.Background(), AllocateRequest{ContainerID: "new", Interface: "eth0", Pools: []string{"lan"}})
	if err != nil || att.Addresses[0].Address.Addr().String() != "10.20.0.40" {
		t.Fatalf("the one free address: %+v %v", att, err)
	}
	if _, ok, err := m.Release(context.Background(), AttachmentKey{ContainerID: "c10", Interface: "eth0"}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	u, err := m.Usage(context.Background())
	if err != nil || u[0].Allocated != 30 || u[0].Free != 1 {
		t.Fatalf("%+v %v", u, err)
	}
	if err := Consistent(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}
