package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

// The tests here use the real bbolt store; the wire is a table (the real
// probes run through the real agent in test/ipam).

type tableChecker struct {
	mu       sync.Mutex
	conflict map[netip.Addr]bool
	gwDown   bool
	calls    int
}

func (c *tableChecker) Check(_ context.Context, req api.Check) ([]CheckResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	out := make([]CheckResult, len(req.Addresses))
	for i, a := range req.Addresses {
		switch {
		case a.Gateway.IsValid() && c.gwDown:
			out[i] = CheckResult{Outcome: OutcomeUnreachable, Reason: fmt.Sprintf("gateway %s did not answer within 100ms", a.Gateway)}
		case a.Conflict && c.conflict[a.Address.Addr()]:
			out[i] = CheckResult{Outcome: OutcomeConflict, Reason: fmt.Sprintf("%s is in use by 02:00:00:00:00:10", a.Address.Addr()), MAC: "02:00:00:00:00:10"}
		default:
			out[i] = CheckResult{Outcome: OutcomeFree}
		}
	}
	return out, nil
}

type noLinks struct{}

func (noLinks) EnsureUp(context.Context, string, string) (func(), error) { return func() {}, nil }

type fixture struct {
	m     *IPAM
	store *boltstore.Store
	racy  *racyStore
	chk   *tableChecker
	now   atomic.Pointer[time.Time]
}

func newFixture(t *testing.T, specs ...PoolSpec) *fixture {
	t.Helper()
	return newFixtureOpts(t, Options{}, specs...)
}

func newFixtureOpts(t *testing.T, opts Options, specs ...PoolSpec) *fixture {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &fixture{store: s, chk: &tableChecker{conflict: map[netip.Addr]bool{}}}
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	f.now.Store(&now)
	for _, sp := range specs {
		p, err := NewPool(sp, 5000)
		if err != nil {
			t.Fatal(err)
		}
		opts.Pools = append(opts.Pools, p)
	}
	f.racy = &racyStore{Store: s}
	opts.Store = f.racy
	if opts.Checker == nil {
		opts.Checker = f.chk
	}
	if opts.Links == nil {
		opts.Links = noLinks{}
	}
	if opts.CheckNetns == nil {
		// The tables name namespace paths that do not exist; the real
		// vetting has tests of its own (deadline_test.go).
		opts.CheckNetns = func(string) error { return nil }
	}
	opts.Node = "node-a"
	opts.Now = func() time.Time { return *f.now.Load() }
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

func (f *fixture) advance(d time.Duration) {
	n := f.now.Load().Add(d)
	f.now.Store(&n)
}

var (
	v4 = PoolSpec{Name: "lan4", Subnet: "10.20.0.0/24", Ranges: []string{"10.20.0.10-10.20.0.49"}, Gateway: "10.20.0.1", ConflictDetection: true, GatewayDetection: true}
	v6 = PoolSpec{Name: "lan6", Subnet: "fd00:20::/64", Ranges: []string{"fd00:20::10-fd00:20::4f"}, Gateway: "fd00:20::1", ConflictDetection: true}
)

func req(cid string, pools ...string) AllocateRequest {
	return AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: "default/" + cid, Pools: pools}
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestAllocateDualStackIdempotentRelease(t *testing.T) {
	f := newFixture(t, v4, v6)
	ctx := context.Background()
	att, err := f.m.Allocate(ctx, req("c1", "lan4", "lan6"))
	if err != nil {
		t.Fatal(err)
	}
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
		if _, err := f.m.Allocate(ctx, req(fmt.Sprint("c", i), "tiny")); err != nil {
			t.Fatal(err)
		}
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
	first, err := f.m.Allocate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addresses[0].Address.Addr()
	for i := 1; i <= 4; i++ {
		key := AttachmentKey{ContainerID: fmt.Sprint("c", i-1), Interface: "eth0"}
		if _, _, err := f.m.Release(ctx, key); err != nil {
			t.Fatal(err)
		}
		f.advance(time.Second)
		r.ContainerID = fmt.Sprint("c", i)
		att, err := f.m.Allocate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
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
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		r := req(fmt.Sprint("thief", i), "lan4")
		att, err := f.m.Allocate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if att.Addresses[0].Address.Addr() == addr {
			return r.ContainerID
		}
	}
	t.Fatalf("could not place %s", addr)
	return ""
}

func TestConflictQuarantineNext(t *testing.T) {
	f := newFixture(t, v4)
	ctx := context.Background()
	// Find where c1's candidate order starts, then make it busy.
	probe, err := f.m.Allocate(ctx, req("c1", "lan4"))
	if err != nil {
		t.Fatal(err)
	}
	busy := probe.Addresses[0].Address.Addr()
	f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"})
	// History makes busy sticky for default/c1; use a new workload name
	// with the same key so that the hashed order is the same.
	f.chk.conflict[busy] = true
	r := req("c1", "lan4")
	r.Workload = "fresh"
	att, err := f.m.Allocate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	got := att.Addresses[0].Address.Addr()
	if got == busy {
		t.Fatalf("got the busy address %s", busy)
	}
	if len(att.Skipped) != 1 || att.Skipped[0].Address != busy || !att.Skipped[0].Quarantined || !strings.Contains(att.Skipped[0].Reason, "in use by") {
		t.Fatalf("skipped %+v", att.Skipped)
	}
	us, _ := f.m.Usage(ctx)
	if us[0].Quarantined != 1 {
		t.Fatalf("usage %+v, want 1 quarantined", us[0])
	}
	// The quarantine is visible with its cause, the MAC that answered and
	// its end.
	recs, err := f.m.AddressState(ctx, busy)
	until := f.now.Load().Add(DefaultQuarantine)
	if err != nil || len(recs) != 1 || recs[0].State != StateQuarantined || recs[0].MAC != "02:00:00:00:00:10" ||
		!recs[0].Until.Equal(until) || !strings.Contains(recs[0].Reason, "in use by") || recs[0].Pool != "lan4" {
		t.Fatalf("AddressState(%s) = %+v %v, want quarantined by 02:00:00:00:00:10 until %v", busy, recs, err, until)
	}
	if recs, err := f.m.AddressState(ctx, got); err != nil || len(recs) != 1 || recs[0].State != StateAllocated || recs[0].Owner.ContainerID != "c1" {
		t.Fatalf("AddressState(%s) = %+v %v, want allocated to c1", got, recs, err)
	}
	ep, _ := f.m.History(ctx, "fresh")
	if len(ep.History[0].Skipped) != 1 {
		t.Fatalf("history does not record the skipped address: %+v", ep.History[0])
	}
	// Quarantined: not handed out while the quarantine lasts, even when
	// the wire is quiet again...
	f.chk.conflict[busy] = false
	for i := range 38 {
		a, err := f.m.Allocate(ctx, req(fmt.Sprint("x", i), "lan4"))
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if a.Addresses[0].Address.Addr() == busy {
			t.Fatalf("quarantined %s handed out", busy)
		}
	}
	if _, err := f.m.Allocate(ctx, req("y", "lan4")); code(err) != api.CodePoolFull {
		t.Fatalf("pool with only the quarantined address left: %v", err)
	}
	// ...and back after it.
	f.advance(DefaultQuarantine + time.Second)
	if recs, err := f.m.AddressState(ctx, busy); err != nil || len(recs) != 0 {
		t.Fatalf("AddressState(%s) after the quarantine = %+v %v, want none (free)", busy, recs, err)
	}
	a, err := f.m.Allocate(ctx, req("y", "lan4"))
	if err != nil || a.Addresses[0].Address.Addr() != busy {
		t.Fatalf("after the quarantine: %+v %v", a, err)
	}
	assertConsistent(t, f)
}

func TestConflictBoundAndQuarantineCap(t *testing.T) {
	f := newFixtureOpts(t, Options{MaxTries: 4}, v4) // 40 addresses: 4 may be quarantined
	ctx := context.Background()
	for i := range 40 {
		f.chk.conflict[f.m.Pools()[0].At(i)] = true
	}
	_, err := f.m.Allocate(ctx, req("c1", "lan4"))
	if code(err) != api.CodeConflict || !strings.Contains(err.Error(), "4 addresses tried, all in use:") {
		t.Fatalf("all busy: %v", err)
	}
	_, err = f.m.Allocate(ctx, req("c2", "lan4"))
	if code(err) != api.CodeConflict {
		t.Fatal(err)
	}
	us, _ := f.m.Usage(ctx)
	if us[0].Quarantined != 4 || us[0].Allocated != 0 || us[0].Reserved != 0 {
		t.Fatalf("usage %+v: want the quarantine cap 4 (a tenth of 40), nothing held", us[0])
	}
	assertConsistent(t, f)
}

func TestGatewayDownFailsAtOnceAndLeaksNothing(t *testing.T) {
	f := newFixture(t, v4, v6)
	f.chk.gwDown = true
	_, err := f.m.Allocate(context.Background(), req("c1", "lan4", "lan6"))
	if code(err) != api.CodeGateway || !strings.Contains(err.Error(), "gateway 10.20.0.1 did not answer") {
		t.Fatalf("%v", err)
	}
	if f.chk.calls != 1 {
		t.Fatalf("%d checks: a dead gateway must fail at once", f.chk.calls)
	}
	assertEmpty(t, f)
}

func TestCheckerNotReadyIsRetryable(t *testing.T) {
	f := newFixtureOpts(t, Options{Checker: notReady{}}, v4)
	_, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
	if code(err) != api.CodeNotReady {
		t.Fatalf("%v (code %q), want %s", err, code(err), api.CodeNotReady)
	}
	assertEmpty(t, f)
}

type notReady struct{}

func (notReady) Check(context.Context, api.Check) ([]CheckResult, error) {
	return nil, fmt.Errorf("%w: still starting", ErrNotReady)
}

type errChecker struct{}

func (errChecker) Check(context.Context, api.Check) ([]CheckResult, error) {
	return nil, errors.New("ip-conflict is not ready")
}

func TestCheckErrorLeaksNothing(t *testing.T) {
	f := newFixtureOpts(t, Options{Checker: errChecker{}}, v4)
	_, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
	if code(err) != api.CodeCheckFailed || !strings.Contains(err.Error(), "ip-conflict is not ready") {
		t.Fatalf("%v", err)
	}
	assertEmpty(t, f)
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
	var wg sync.WaitGroup
	errs := make(chan error, n)
	got := make([]netip.Addr, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			att, err := f.m.Allocate(ctx, req(fmt.Sprint("c", i), "big"))
			if err != nil {
				errs <- err
				return
			}
			got[i] = att.Addresses[0].Address.Addr()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for i, a := range got {
		if j, dup := seen[a]; dup {
			t.Fatalf("%s given to c%d and c%d", a, j, i)
		}
		seen[a] = i
	}
	assertConsistent(t, f)
}

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
		if _, err := f.m.Allocate(ctx, r); err != nil {
			t.Fatal(err)
		}
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
	if _, err := f.m.Allocate(ctx, r); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.m.GC(ctx); len(res.Suspected) != 1 {
		t.Fatal(res)
	}
	f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"})
	if _, err := f.m.Allocate(ctx, r); err != nil {
		t.Fatal(err)
	}
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

func TestSetPools(t *testing.T) {
	f := newFixture(t, PoolSpec{Name: "p", Subnet: "10.9.0.0/24", Ranges: []string{"10.9.0.10-10.9.0.19"}}, PoolSpec{Name: "q", Subnet: "10.10.0.0/24"})
	ctx := context.Background()
	att, err := f.m.Allocate(ctx, req("c1", "p"))
	if err != nil {
		t.Fatal(err)
	}
	held := att.Addresses[0].Address.Addr()
	mk := func(specs ...PoolSpec) []*Pool {
		var out []*Pool
		for _, s := range specs {
			p, err := NewPool(s, 5000)
			if err != nil {
				t.Fatal(err)
			}
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
	err = f.m.SetPools(ctx, mk(shrunk, PoolSpec{Name: "q", Subnet: "10.10.0.0/24"}))
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

func assertEmpty(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	for _, prefix := range []string{PrefixAttachments, PrefixDomains, PrefixPools} {
		es, err := f.store.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if strings.Contains(string(e.Value), `"quarantined"`) {
				continue
			}
			t.Errorf("left behind: %s = %s", e.Key, e.Value)
		}
	}
}

// assertConsistent: every address record's owner lists it, every
// attachment's addresses are recorded as owned by it, no reservation is
// left, no address appears twice.
func assertConsistent(t *testing.T, f *fixture) {
	t.Helper()
	if err := Consistent(context.Background(), f.store); err != nil {
		t.Fatal(err)
	}
}

// A request that skips gateway detection (the CNI plugin, when the bridge
// becomes the gateway after IPAM answers) is not failed by a gateway that
// does not answer yet; conflicts are still checked, and the attachment
// says what was not checked. Skipping every detection a request's pools
// enable takes the one-commit path: no check at all.
func TestSkipDetection(t *testing.T) {
	f := newFixture(t, v4, v6)
	ctx := context.Background()
	f.chk.gwDown = true
	if _, err := f.m.Allocate(ctx, req("gw", "lan4")); code(err) != api.CodeGateway {
		t.Fatalf("without the skip: %v, want %s", err, api.CodeGateway)
	}

	// Conflict detection still runs: with every address busy on the wire,
	// the answer is a conflict, not the gateway.
	for i := 10; i < 50; i++ {
		f.chk.conflict[netip.AddrFrom4([4]byte{10, 20, 0, byte(i)})] = true
	}
	r := req("bridge", "lan4", "lan6")
	r.SkipDetection = []api.DetectionSkip{{Detection: api.DetectionGateway, Reason: "the bridge is the gateway"}}
	if _, err := f.m.Allocate(ctx, r); code(err) != api.CodeConflict {
		t.Fatalf("gateway skipped, every address busy: %v, want %s", err, api.CodeConflict)
	}
	clear(f.chk.conflict)
	att, err := f.m.Allocate(ctx, r)
	if err != nil {
		t.Fatalf("gateway detection skipped: %v", err)
	}
	// lan6 enables no gateway detection: nothing to record for it.
	want := []api.DetectionSkip{{Pool: "lan4", Detection: "gateway", Reason: "the bridge is the gateway"}}
	if fmt.Sprint(att.NotChecked) != fmt.Sprint(want) {
		t.Errorf("not checked %+v, want %+v", att.NotChecked, want)
	}
	if got, _, _ := f.m.Get(ctx, att.AttachmentKey); fmt.Sprint(got.NotChecked) != fmt.Sprint(want) {
		t.Errorf("stored attachment says not checked %+v", got.NotChecked)
	}

	calls := f.chk.calls
	r = req("ptp", "lan4")
	r.SkipDetection = []api.DetectionSkip{
		{Detection: api.DetectionGateway, Reason: "ptp"},
		{Pool: "lan4", Detection: api.DetectionConflict, Reason: "ptp"},
	}
	att, err = f.m.Allocate(ctx, r)
	if err != nil || f.chk.calls != calls || len(att.NotChecked) != 2 {
		t.Fatalf("everything skipped: %+v %v, %d checks", att, err, f.chk.calls-calls)
	}

	for _, bad := range []struct {
		skip  api.DetectionSkip
		field string
	}{
		{api.DetectionSkip{Detection: "dhcp", Reason: "x"}, "skip_detection[0].detection"},
		{api.DetectionSkip{Detection: "gateway"}, "skip_detection[0].reason"},
		{api.DetectionSkip{Detection: "gateway", Pool: "other", Reason: "x"}, "skip_detection[0].pool"},
		{api.DetectionSkip{Detection: "gateway", Reason: "a\x00b"}, "skip_detection[0].reason"},
	} {
		r := req("bad", "lan4")
		r.SkipDetection = []api.DetectionSkip{bad.skip}
		var fe *api.FieldError
		if _, err := f.m.Allocate(ctx, r); !errors.As(err, &fe) || fe.Field != bad.field {
			t.Errorf("skip %+v: %v, want an error naming %s", bad.skip, err, bad.field)
		}
	}
}

// An allocation that fails in several pools names each of them with its
// reason, not only the first.
func TestFailureNamesEveryFailingPool(t *testing.T) {
	ctx := context.Background()
	v6gw := v6
	v6gw.GatewayDetection = true
	t.Run("gateways", func(t *testing.T) {
		f := newFixture(t, v4, v6gw)
		f.chk.gwDown = true
		_, err := f.m.Allocate(ctx, req("c1", "lan4", "lan6"))
		if code(err) != api.CodeGateway || !strings.Contains(err.Error(), `pool "lan4": gateway 10.20.0.1 did not answer`) ||
			!strings.Contains(err.Error(), `pool "lan6": gateway fd00:20::1 did not answer`) {
			t.Fatalf("%v", err)
		}
		assertEmpty(t, f)
	})
	t.Run("unknown", func(t *testing.T) {
		f := newFixture(t, v4)
		_, err := f.m.Allocate(ctx, req("c1", "nope4", "nope6"))
		if code(err) != api.CodeUnknownPool || !strings.Contains(err.Error(), `pool "nope4"`) || !strings.Contains(err.Error(), `pool "nope6"`) {
			t.Fatalf("%v", err)
		}
	})
	small4 := PoolSpec{Name: "s4", Subnet: "10.30.0.0/24", Ranges: []string{"10.30.0.10-10.30.0.10"}}
	small6 := PoolSpec{Name: "s6", Subnet: "fd00:30::/64", Ranges: []string{"fd00:30::10-fd00:30::10"}}
	for _, detect := range []bool{false, true} {
		t.Run(fmt.Sprintf("full, detection %v", detect), func(t *testing.T) {
			a, b := small4, small6
			a.ConflictDetection, b.ConflictDetection = detect, detect
			f := newFixture(t, a, b)
			if _, err := f.m.Allocate(ctx, req("c1", "s4", "s6")); err != nil {
				t.Fatal(err)
			}
			_, err := f.m.Allocate(ctx, req("c2", "s4", "s6"))
			if code(err) != api.CodePoolFull || !strings.Contains(err.Error(), `pool "s4" is full`) || !strings.Contains(err.Error(), `pool "s6" is full`) {
				t.Fatalf("%v", err)
			}
			assertConsistent(t, f)
		})
	}
	t.Run("both in conflict", func(t *testing.T) {
		f := newFixtureOpts(t, Options{MaxTries: 1}, v4, v6)
		for _, p := range f.m.Pools() {
			for i := range p.Size() {
				f.chk.conflict[p.At(i)] = true
			}
		}
		_, err := f.m.Allocate(ctx, req("c1", "lan4", "lan6"))
		if code(err) != api.CodeConflict || !strings.Contains(err.Error(), `pool "lan4": 1 addresses tried, all in use`) || !strings.Contains(err.Error(), `pool "lan6": 1 addresses tried, all in use`) {
			t.Fatalf("%v", err)
		}
		assertConsistent(t, f)
	})
}
