package ipam_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

func TestGC(t *testing.T) {
	gone := map[string]bool{}
	var mu sync.Mutex
	f := newFixtureOpts(t, Options{GCGrace: time.Minute, NetnsGone: func(p string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return gone[p], nil
	}}, PoolSpec{Name: "p", Subnet: "10.9.0.0/24"})
	ctx := context.Background()
	mk := func(cid, ns string) {
		r := req(cid, "p")
		r.Netns = ns
		f.allocate(t, r)
	}
	mk("dead", "/var/run/netns/dead")
	mk("live", "/var/run/netns/live")
	mk("back", "/var/run/netns/back")
	mk("nons", "")
	mu.Lock()
	gone["/var/run/netns/dead"], gone["/var/run/netns/back"] = true, true
	mu.Unlock()
	res, err := f.m.GC(ctx)
	if err != nil || len(res.Suspected) != 2 || len(res.Reclaimed) != 0 || res.Checked != 3 {
		t.Fatalf("first look: %+v %v", res, err)
	}
	// Not yet a grace period later: nothing freed.
	f.advance(30 * time.Second)
	if res, _ := f.m.GC(ctx); len(res.Reclaimed) != 0 {
		t.Fatalf("freed before the grace period: %+v", res)
	}
	// "back" reappears (a namespace of that name again): kept.
	mu.Lock()
	gone["/var/run/netns/back"] = false
	mu.Unlock()
	f.advance(31 * time.Second)
	res, err = f.m.GC(ctx)
	if err != nil || len(res.Reclaimed) != 1 || res.Reclaimed[0].ContainerID != "dead" {
		t.Fatalf("second look: %+v %v", res, err)
	}
	list, _ := f.m.List(ctx, "", "")
	if len(list) != 3 {
		t.Fatalf("after GC %d allocations, want live, back and nons", len(list))
	}
	assertConsistent(t, f)
}

// TestGCRevisionCheck: the key was released and allocated again between
// the two looks (a new workload with the same container id reusing the
// path): the new allocation is never freed by the old suspicion.
func TestGCRevisionCheck(t *testing.T) {
	f := newFixtureOpts(t, Options{GCGrace: time.Minute, NetnsGone: func(string) (bool, error) { return true, nil }},
		PoolSpec{Name: "p", Subnet: "10.9.0.0/24"})
	ctx := context.Background()
	r := req("c1", "p")
	r.Netns = "/var/run/netns/x"
	f.allocate(t, r)
	if res, _ := f.m.GC(ctx); len(res.Suspected) != 1 {
		t.Fatal(res)
	}
	f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"})
	f.allocate(t, r)
	f.advance(2 * time.Minute)
	res, _ := f.m.GC(ctx)
	if len(res.Reclaimed) != 0 {
		t.Fatalf("GC freed an allocation made after its first look: %+v", res)
	}
}

func TestRecoverDanglingReservation(t *testing.T) {
	f := newFixture(t, v4)
	ctx := context.Background()
	// A reservation as an agent killed in the middle of a check leaves it.
	if err := ReserveForTest(ctx, f.m, req("c1", "lan4")); err != nil {
		t.Fatal(err)
	}
	if us, _ := f.m.Usage(ctx); us[0].Reserved != 1 {
		t.Fatalf("%+v", us)
	}
	n, err := f.m.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Recover: %d %v", n, err)
	}
	assertEmpty(t, f)
}

// An allocate for a key whose reservation no allocation of this process
// is making (its rollback could not reach a shared store) replaces the
// reservation: one address, not two, and not "try again" forever.
func TestAllocateOverDanglingReservation(t *testing.T) {
	f := newFixture(t, v4)
	ctx := context.Background()
	if err := ReserveForTest(ctx, f.m, req("c1", "lan4")); err != nil {
		t.Fatal(err)
	}
	att, err := f.m.Allocate(ctx, req("c1", "lan4"))
	if err != nil || len(att.Addresses) != 1 {
		t.Fatalf("allocate over a dangling reservation: %+v %v", att, err)
	}
	if us, _ := f.m.Usage(ctx); us[0].Reserved != 0 || us[0].Allocated != 1 {
		t.Fatalf("%+v", us)
	}
	assertConsistent(t, f)
}
