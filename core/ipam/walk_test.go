package ipam_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// TestWalkOfANearlyFullPool: in a pool 95% full, allocations cost about as
// many store reads as in an empty one. The walk from an allocation's hash
// read every taken candidate on its way (70 reads per allocation at 95% of
// 1,000 addresses, 7 in an empty pool).
func TestWalkOfANearlyFullPool(t *testing.T) {
	m, _, st := fillFixture(t)
	cycles := func(prefix string, n int) float64 {
		before := st.gets.Load()
		for i := range n {
			mustCycle(t, m, req(fmt.Sprint(prefix, i), "fill"))
		}
		return float64(st.gets.Load()-before) / float64(n)
	}
	empty := cycles("empty-", 50)
	for i := range 950 {
		mustAllocate(t, m, req(fmt.Sprint("held-", i), "fill"))
	}
	full := cycles("full-", 50)
	t.Logf("store reads per allocate+release: %.1f in the empty pool, %.1f at 95%%", empty, full)
	if full > empty+3 {
		t.Errorf("at 95%% an allocate+release reads the store %.1f times, in the empty pool %.1f", full, empty)
	}
}

// TestWalkHintIsOnlyAHint: addresses released behind this allocator's back
// (another node on a shared store, another process) are found: the pool is
// never called full while the store holds a free address.
func TestWalkHintIsOnlyAHint(t *testing.T) {
	s := openBolt(t)
	spec := PoolSpec{Name: "small", Subnet: "10.99.0.0/28"} // 14 addresses
	newIPAM := func(node string) *IPAM {
		p := mustPool(t, spec)
		m := mustNew(t, Options{Store: s, Pools: []*Pool{p}, Node: node, Links: noLinks{}})
		return m
	}
	a, b := newIPAM("node-a"), newIPAM("node-b")
	ctx := context.Background()
	var atts []Attachment
	for i := range 14 {
		att := mustAllocate(t, a, req(fmt.Sprint("c", i), "small"))
		atts = append(atts, att)
	}
	if _, err := a.Allocate(ctx, req("one-too-many", "small")); code(err) != "pool_full" {
		t.Fatalf("the 15th allocation: %v, want pool_full", err)
	}
	for _, att := range atts[3:6] {
		if _, ok, err := b.Release(ctx, att.AttachmentKey); err != nil || !ok {
			t.Fatalf("release through the other allocator: %v %v", ok, err)
		}
	}
	for i := range 3 {
		if _, err := a.Allocate(ctx, req(fmt.Sprint("again-", i), "small")); err != nil {
			t.Fatalf("allocation %d after 3 releases elsewhere: %v", i, err)
		}
	}
	if _, err := a.Allocate(ctx, req("full-again", "small")); code(err) != "pool_full" {
		t.Fatalf("after the 3: %v, want pool_full", err)
	}
}

// fillFixture is an IPAM of pool "fill" (1,000 addresses, detection off)
// on node-a over a real bbolt file, counting the store's reads of single
// keys.
func fillFixture(tb testing.TB) (*IPAM, *Pool, *countingStore) {
	tb.Helper()
	p := mustPool(tb, PoolSpec{Name: "fill", Subnet: "10.98.0.0/22", Ranges: []string{"10.98.0.1-10.98.3.232"}})
	st := &countingStore{Store: openBolt(tb)}
	return mustNew(tb, Options{Store: st, Pools: []*Pool{p}, Node: "node-a", Links: noLinks{}}), p, st
}

// countingStore counts the reads of single keys.
type countingStore struct {
	Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) (Entry, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}
