package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// kindChecker answers each address with the outcome the test sets, as the
// agent's checker does for a detector's block of that kind; free otherwise.
type kindChecker struct {
	outcomes map[netip.Addr]Outcome
	calls    int
}

func (c *kindChecker) Check(_ context.Context, req api.Check) ([]CheckResult, error) {
	c.calls++
	out := make([]CheckResult, len(req.Addresses))
	for i, a := range req.Addresses {
		out[i] = CheckResult{Outcome: OutcomeFree}
		if o, ok := c.outcomes[a.Address.Addr()]; ok {
			out[i] = CheckResult{Outcome: o, Reason: fmt.Sprintf("cmdb: %s said %s", a.Address.Addr(), o)}
		}
	}
	return out, nil
}

// firstCandidate is where c1's candidate order starts in lan4: the address
// an allocation for it is checked first.
func firstCandidate(t *testing.T) netip.Addr {
	t.Helper()
	f := newFixture(t, v4)
	att, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
	if err != nil {
		t.Fatal(err)
	}
	return att.Addresses[0].Address.Addr()
}

// A policy refusal skips the address and tries the next one, and leaves no
// record against the refused address: nothing is quarantined, and it is
// offered again as soon as the policy allows it.
func TestPolicySkipsWithoutQuarantine(t *testing.T) {
	first := firstCandidate(t)
	chk := &kindChecker{outcomes: map[netip.Addr]Outcome{first: OutcomePolicy}}
	f := newFixtureOpts(t, Options{Checker: chk}, v4)
	ctx := context.Background()
	att := f.allocate(t, req("c1", "lan4"))
	if got := att.Addresses[0].Address.Addr(); got == first {
		t.Fatalf("got %s, which policy refused", got)
	}
	if len(att.Skipped) != 1 || att.Skipped[0].Address != first || att.Skipped[0].Quarantined || !strings.Contains(att.Skipped[0].Reason, "cmdb:") {
		t.Fatalf("skipped %+v: want %s, not quarantined, with the detector's reason", att.Skipped, first)
	}
	us, _ := f.m.Usage(ctx)
	if us[0].Quarantined != 0 || us[0].Allocated != 1 || us[0].Reserved != 0 {
		t.Fatalf("usage %+v: want 1 allocated, nothing quarantined", us[0])
	}
	if list, _ := f.m.List(ctx, "", ""); len(list) != 1 {
		t.Fatalf("records %+v", list)
	}
	// Policy lifted: the same key's order offers the address again at once
	// (an in-use address would sit out its quarantine).
	// A new workload with the same key: the same hashed order, nothing sticky.
	delete(chk.outcomes, first)
	if _, _, err := f.m.Release(ctx, AttachmentKey{ContainerID: "c1", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	r := req("c1", "lan4")
	r.Workload = "fresh"
	again, err := f.m.Allocate(ctx, r)
	if err != nil || again.Addresses[0].Address.Addr() != first {
		t.Fatalf("after the policy was lifted: %+v %v, want %s", again, err, first)
	}
	assertConsistent(t, f)
}

// Every candidate refused by policy: MaxTries bounds the search, the error
// is blocked (not conflict: the network is not busy), nothing is held.
func TestPolicyRefusingEveryCandidate(t *testing.T) {
	chk := &kindChecker{outcomes: map[netip.Addr]Outcome{}}
	f := newFixtureOpts(t, Options{Checker: chk, MaxTries: 4}, v4)
	for i := range 40 {
		chk.outcomes[f.m.Pools()[0].At(i)] = OutcomePolicy
	}
	_, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
	if code(err) != api.CodeBlocked || !strings.Contains(err.Error(), "4 addresses tried, all refused by policy: cmdb:") {
		t.Fatalf("all refused: %v", err)
	}
	if chk.calls != 4 {
		t.Errorf("%d checks, want MaxTries = 4", chk.calls)
	}
	assertEmpty(t, f)
}

// Mixed: in use then refused by policy, then out of tries: a conflict, and
// only the address in use is quarantined.
func TestInUseAndPolicyOutOfTries(t *testing.T) {
	chk := &kindChecker{outcomes: map[netip.Addr]Outcome{}}
	f := newFixtureOpts(t, Options{Checker: chk, MaxTries: 2}, v4)
	first := firstCandidate(t)
	chk.outcomes[first] = OutcomeConflict
	for i := range 40 {
		if a := f.m.Pools()[0].At(i); a != first {
			chk.outcomes[a] = OutcomePolicy
		}
	}
	ctx := context.Background()
	_, err := f.m.Allocate(ctx, req("c1", "lan4"))
	if code(err) != api.CodeConflict || !strings.Contains(err.Error(), "2 addresses tried, in use or refused by policy") {
		t.Fatalf("in use, then policy: %v", err)
	}
	us, _ := f.m.Usage(ctx)
	if us[0].Quarantined != 1 || us[0].Allocated+us[0].Reserved != 0 {
		t.Fatalf("usage %+v: want only the address in use quarantined", us[0])
	}
	assertConsistent(t, f)
}

// Unreachable and a refusal end the allocation at the first check, whoever
// said it, and hold nothing.
func TestUnreachableAndBlockedFailAtOnce(t *testing.T) {
	for _, tt := range []struct {
		outcome Outcome
		code    string
	}{
		{OutcomeUnreachable, api.CodeGateway},
		{OutcomeBlocked, api.CodeBlocked},
	} {
		t.Run(string(tt.outcome), func(t *testing.T) {
			chk := &kindChecker{outcomes: map[netip.Addr]Outcome{}}
			f := newFixtureOpts(t, Options{Checker: chk}, v4)
			for i := range 40 {
				chk.outcomes[f.m.Pools()[0].At(i)] = tt.outcome
			}
			_, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
			if code(err) != tt.code || !strings.Contains(err.Error(), "cmdb:") {
				t.Fatalf("%s: %v, want %s with the detector's reason", tt.outcome, err, tt.code)
			}
			if chk.calls != 1 {
				t.Errorf("%d checks: %s must fail at once", chk.calls, tt.outcome)
			}
			assertEmpty(t, f)
		})
	}
}
