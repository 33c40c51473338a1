package ipam_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

// TestWalkOfANearlyFullPool: in a pool 95% full, allocations cost about as
// many store reads as in an empty one. The walk from an allocation's hash
// read every taken candidate on its way (70 reads per allocation at 95% of
// 1,000 addresses, 7 in an empty pool).
func TestWalkOfANearlyFullPool(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := NewPool(PoolSpec{Name: "fill", Subnet: "10.98.0.0/22", Ranges: []string{"10.98.0.1-10.98.3.232"}}, 5000)
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStore{Store: s}
	m, err := New(Options{Store: st, Pools: []*Pool{p}, Node: "node-a", Links: noLinks{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cycles := func(prefix string, n int) float64 {
		before := st.gets.Load()
		for i := range n {
			att, err := m.Allocate(ctx, req(fmt.Sprint(prefix, i), "fill"))
			if err == nil {
				_, _, err = m.Release(ctx, att.AttachmentKey)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return float64(st.gets.Load()-before) / float64(n)
	}
	empty := cycles("empty-", 50)
	for i := range 950 {
		if _, err := m.Allocate(ctx, req(fmt.Sprint("held-", i), "fill")); err != nil {
			t.Fatal(err)
		}
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
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	spec := PoolSpec{Name: "small", Subnet: "10.99.0.0/28"} // 14 addresses
	newIPAM := func(node string) *IPAM {
		p, err := NewPool(spec, 5000)
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(Options{Store: s, Pools: []*Pool{p}, Node: node, Links: noLinks{}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := newIPAM("node-a"), newIPAM("node-b")
	ctx := context.Background()
	var atts []Attachment
	for i := range 14 {
		att, err := a.Allocate(ctx, req(fmt.Sprint("c", i), "small"))
		if err != nil {
			t.Fatal(err)
		}
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
