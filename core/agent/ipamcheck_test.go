package agent

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

// outcome reads blocks by their kind, never by the detector's name: a
// third party's in_use block is a conflict like the conflict detector's,
// and the stronger meaning wins when several detectors speak.
func TestOutcomeByKind(t *testing.T) {
	block := func(name string, kind state.BlockKind) state.DetectorResult {
		return state.DetectorResult{Name: name, Verdict: state.VerdictBlock, BlockKind: kind, Reason: "r"}
	}
	pass := state.DetectorResult{Name: "ok", Verdict: state.VerdictPass, Reason: "fine"}
	errd := state.DetectorResult{Name: "flaky", Verdict: state.VerdictError, Reason: "timeout"}
	tests := []struct {
		name   string
		dets   []state.DetectorResult
		want   ipam.Outcome
		reason string
	}{
		{"all pass", []state.DetectorResult{pass, {Name: "gw", Verdict: state.VerdictSkip}}, ipam.OutcomeFree, ""},
		{"in use, any detector", []state.DetectorResult{pass, block("dhcp-leases", state.BlockInUse)}, ipam.OutcomeConflict, "dhcp-leases: r"},
		{"policy", []state.DetectorResult{block("cmdb", state.BlockPolicy)}, ipam.OutcomePolicy, "cmdb: r"},
		{"unreachable", []state.DetectorResult{block("vlan-guard", state.BlockUnreachable)}, ipam.OutcomeUnreachable, "vlan-guard: r"},
		{"fail", []state.DetectorResult{block("mtu", state.BlockFail)}, ipam.OutcomeBlocked, "mtu: r"},
		{"no kind is fail", []state.DetectorResult{block("old", "")}, ipam.OutcomeBlocked, "old: r"},
		{"error", []state.DetectorResult{pass, errd}, ipam.OutcomeError, "flaky: timeout"},
		{"in use and policy quarantine", []state.DetectorResult{block("cmdb", state.BlockPolicy), block("arp", state.BlockInUse)}, ipam.OutcomeConflict, "arp: r; cmdb: r"},
		{"error beats in use", []state.DetectorResult{block("arp", state.BlockInUse), errd}, ipam.OutcomeError, "flaky: timeout"},
		{"fail beats error", []state.DetectorResult{errd, block("mtu", state.BlockFail)}, ipam.OutcomeBlocked, "mtu: r"},
		{"unreachable beats fail", []state.DetectorResult{block("mtu", state.BlockFail), block("gw", state.BlockUnreachable), block("arp", state.BlockInUse)}, ipam.OutcomeUnreachable, "gw: r"},
		{"a reason-less block says who", []state.DetectorResult{{Name: "terse", Verdict: state.VerdictBlock, BlockKind: state.BlockPolicy}}, ipam.OutcomePolicy, "terse: said block"},
	}
	for _, tt := range tests {
		got := outcome(state.AddressResult{Detectors: tt.dets})
		if got.Outcome != tt.want || got.Reason != tt.reason {
			t.Errorf("%s: %s %q, want %s %q", tt.name, got.Outcome, got.Reason, tt.want, tt.reason)
		}
	}
}
