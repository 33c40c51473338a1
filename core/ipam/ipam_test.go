package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// The tests here use the real bbolt store; the wire is a table (the real
// probes run through the real agent in test/ipam).

func TestAllocateDualStackIdempotentRelease(t *testing.T) {
	f := newFixture(t, v4, v6)
	ctx := context.Background()
	att := f.allocate(t, req("c1", "lan4", "lan6"))
	if len(att.Addresses) != 2 || att.State != StateAllocated {
		t.Fatalf("attachment %+v", att)
	}
	a4, a6 := att.Addresses[0], att.Addresses[1]
	if !a4.Address.Addr().Is4() || a4.Address.Bits() != 24 || a4.Gateway.String() != "10.20.0.1" || !a6.Address.Addr().Is6() || a6.Address.Bits() != 64 {
		t.Fatalf("addresses %+v", att.Addresses)
	}
	if f.chk.calls != 1 {
		t.Errorf("%d check calls for a dual-stack allocation, want 1 (one window for both)", f.chk.calls)
	}
	again, err := f.m.Allocate(ctx, req("c1", "lan4", "lan6"))
	if err != nil || again.Addresses[0].Address != a4.Address || again.Addresses[1].Address != a6.Address {
		t.Fatalf("repeat: %+v, %v", again, err)
	}
	if _, err := f.m.Allocate(ctx, req("c1", "lan4")); code(err) != api.CodeMismatch {
		t.Fatalf("repeat with other pools: %v", err)
	}
	rel, ok, err := f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"})
	if err != nil || !ok || len(rel.Addresses) != 2 {
		t.Fatalf("release: %+v %v %v", rel, ok, err)
	}
	if _, ok, err := f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"}); ok || err != nil {
		t.Fatalf("second release: %v %v", ok, err)
	}
	if _, ok, err := f.m.Release(ctx, AttachmentKey{ContainerID: "never", Interface: "eth0"}); ok || err != nil {
		t.Fatalf("release of an unknown key: %v %v", ok, err)
	}
	assertConsistent(t, f)
	us, _ := f.m.Usage(ctx)
	for _, u := range us {
		if u.Allocated != 0 || u.Reserved != 0 || u.Free != u.Size {
			t.Fatalf("after release: %+v", u)
		}
	}
}

func TestAllocateValidation(t *testing.T) {
	f := newFixture(t, v4, v6, PoolSpec{Name: "other4", Subnet: "10.30.0.0/24"})
	ctx := context.Background()
	for _, tc := range []struct {
		r     AllocateRequest
		field string
		code  string
	}{
		{r: AllocateRequest{Interface: "eth0", Pools: []string{"lan4"}}, field: "container_id"},
		{r: AllocateRequest{ContainerID: "c", Interface: "eth0/1", Pools: []string{"lan4"}}, field: "interface"},
		{r: AllocateRequest{ContainerID: "c", Interface: "eth0"}, field: "pools"},
		{r: AllocateRequest{ContainerID: "c", Interface: "eth0", Netns: "relative/ns", Pools: []string{"lan4"}}, field: "netns"},
		{r: AllocateRequest{ContainerID: "c", Interface: "eth0", Pools: []string{"lan4", "other4"}}, field: "pools[1]"},
		{r: AllocateRequest{ContainerID: "c", Interface: "eth0", Pools: []string{"nope"}}, code: api.CodeUnknownPool},
	} {
		_, err := f.m.Allocate(ctx, tc.r)
		var fe *api.FieldError
		switch {
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%+v: %v, want a field error on %s", tc.r, err, tc.field)
		case tc.code != "" && code(err) != tc.code:
			t.Errorf("%+v: %v, want code %s", tc.r, err, tc.code)
		}
	}
}

func TestExhaustion(t *testing.T) {
	f := newFixture(t, PoolSpec{Name: "tiny", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.12"}})
	ctx := context.Background()
	for i := range 3 {
		f.allocate(t, req(fmt.Sprint("c", i), "tiny"))
	}
	_, err := f.m.Allocate(ctx, req("c9", "tiny"))
	if code(err) != api.CodePoolFull || !strings.Contains(err.Error(), `pool "tiny" is full: all 3 addresses`) {
		t.Fatalf("4th allocation: %v", err)
	}
	assertConsistent(t, f)
}

func TestHistoryCapOrderAndSticky(t *testing.T) {
	f := newFixtureOpts(t, Options{MaxHistory: 3}, v4)
	ctx := context.Background()
	r := req("c0", "lan4")
	r.Workload = "default/web-0"
	first := f.allocate(t, r)
	addr := first.Addresses[0].Address.Addr()
	for i := 1; i <= 4; i++ {
		key := AttachmentKey{ContainerID: fmt.Sprint("c", i-1), Interface: "eth0"}
		if _, _, err := f.m.Release(ctx, key); err != nil {
			t.Fatal(err)
		}
		f.advance(time.Second)
		r.ContainerID = fmt.Sprint("c", i)
		att := f.allocate(t, r)
		// Sticky: a new container of the same workload gets the address back.
		if got := att.Addresses[0].Address.Addr(); got != addr {
			t.Fatalf("allocation %d got %s, want the sticky %s", i, got, addr)
		}
	}
	ep, err := f.m.History(ctx, "default/web-0")
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.History) != 3 {
		t.Fatalf("%d history entries, want the cap 3", len(ep.History))
	}
	for i, want := range []string{"c4", "c3", "c2"} {
		if ep.History[i].ContainerID != want {
			t.Fatalf("history[%d] = %s, want %s (newest first)", i, ep.History[i].ContainerID, want)
		}
	}
	if !ep.History[0].ReleasedAt.IsZero() || ep.History[1].ReleasedAt.IsZero() {
		t.Fatalf("released times: %+v", ep.History)
	}
	who, err := f.m.WhoHad(ctx, addr)
	if err != nil || len(who) != 3 || who[0].Workload != "default/web-0" {
		t.Fatalf("WhoHad: %+v %v", who, err)
	}
	// The sticky address taken by someone else: the next free one.
	if _, _, err := f.m.Release(ctx, AttachmentKey{ContainerID: "c4", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	other := f.stickTo(t, addr)
	r.ContainerID = "c5"
	att, err := f.m.Allocate(ctx, r)
	if err != nil || att.Addresses[0].Address.Addr() == addr {
		t.Fatalf("sticky address held by %s, got %+v %v", other, att, err)
	}
}

// stickTo allocates addr to another workload by giving it that history.
func (f *fixture) stickTo(t *testing.T, addr netip.Addr) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		r := req(fmt.Sprint("thief", i), "lan4")
		att := f.allocate(t, r)
		if att.Addresses[0].Address.Addr() == addr {
			return r.ContainerID
		}
	}
	t.Fatalf("could not place %s", addr)
	return ""
}

// racyStore makes the first n commits that carry conditions fail as if
// another writer had won.
type racyStore struct {
	Store
	left    atomic.Int64
	commits atomic.Int64 // every Commit call, lost or not
}

func (s *racyStore) Commit(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	s.commits.Add(1)
	if len(conds) > 0 && s.left.Add(-1) >= 0 {
		return 0, fmt.Errorf("%w: simulated", ErrCompareFailed)
	}
	return s.Store.Commit(ctx, conds, ops)
}

func TestRetriesSpent(t *testing.T) {
	f := newFixtureOpts(t, Options{MaxRetries: 2}, PoolSpec{Name: "p", Subnet: "10.9.0.0/24"})
	rs := f.racy
	rs.left.Store(2)
	if _, err := f.m.Allocate(context.Background(), req("c1", "p")); err != nil {
		t.Fatalf("2 lost races with 2 retries allowed: %v", err)
	}
	rs.left.Store(3)
	_, err := f.m.Allocate(context.Background(), req("c2", "p"))
	if code(err) != api.CodeTryAgain || !errors.Is(err, ErrTryAgain) || !strings.Contains(err.Error(), "ipam.update_max_retries = 2") {
		t.Fatalf("3 lost races: %v", err)
	}
	assertConsistent(t, f)
}

func TestConcurrentAllocationsDistinct(t *testing.T) {
	f := newFixture(t, PoolSpec{Name: "big", Subnet: "10.8.0.0/22"}) // 1022 addresses
	ctx := context.Background()
	const n = 500
	got, errs := storetest.AllocateAtOnce(n, func(i int) (Attachment, error) {
		return f.m.Allocate(ctx, req(fmt.Sprint("c", i), "big"))
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	storetest.NoneTwice(t, got, func(i int) string { return fmt.Sprint("c", i) })
	assertConsistent(t, f)
}
