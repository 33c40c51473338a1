package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

func TestConflictQuarantineNext(t *testing.T) {
	f := newFixture(t, v4)
	ctx := context.Background()
	// Find where c1's candidate order starts, then make it busy.
	probe := f.allocate(t, req("c1", "lan4"))
	busy := probe.Addresses[0].Address.Addr()
	f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"})
	// History makes busy sticky for default/c1; use a new workload name
	// with the same key so that the hashed order is the same.
	f.chk.conflict[busy] = true
	r := req("c1", "lan4")
	r.Workload = "fresh"
	att := f.allocate(t, r)
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
			f.allocate(t, req("c1", "s4", "s6"))
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
