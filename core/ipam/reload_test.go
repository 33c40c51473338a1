package ipam_test

import (
	"context"
	"strings"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

func TestSetPools(t *testing.T) {
	f := newFixture(t, PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.19"}}, PoolSpec{Name: "q", Subnet: "10.10.0.0/24"})
	ctx := context.Background()
	att := f.allocate(t, req("c1", "p"))
	held := att.Addresses[0].Address.Addr()
	mk := func(specs ...PoolSpec) []*Pool {
		var out []*Pool
		for _, s := range specs {
			p := mustPool(t, s)
			out = append(out, p)
		}
		return out
	}
	grown := PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.29"}}
	if err := f.m.SetPools(ctx, mk(grown, PoolSpec{Name: "q", Subnet: "10.10.0.0/24"})); err != nil {
		t.Fatalf("grow: %v", err)
	}
	if f.m.Pools()[0].Size() != 20 {
		t.Fatal("grow not applied")
	}
	shrunk := PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.200-10.9.0.210"}}
	err := f.m.SetPools(ctx, mk(shrunk, PoolSpec{Name: "q", Subnet: "10.10.0.0/24"}))
	if err == nil || !strings.Contains(err.Error(), held.String()) || !strings.Contains(err.Error(), `shrinking pool "p"`) {
		t.Fatalf("shrink: %v", err)
	}
	err = f.m.SetPools(ctx, mk(PoolSpec{Name: "q", Subnet: "10.10.0.0/24"}))
	if err == nil || !strings.Contains(err.Error(), `removing pool "p"`) {
		t.Fatalf("remove: %v", err)
	}
	if f.m.Pools()[0].Size() != 20 || len(f.m.Pools()) != 2 {
		t.Fatal("a refused reload changed the running pools")
	}
	// Removing a pool without allocations is fine.
	if err := f.m.SetPools(ctx, mk(grown)); err != nil {
		t.Fatal(err)
	}
}
