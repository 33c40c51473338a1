package agent

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// outcome reads blocks by their kind, never by the detector's name: a
// third party's in_use block is a conflict like the conflict detector's,
// and the stronger meaning wins when several detectors speak.
func TestOutcomeByKind(t *testing.T) {
	block := func(name string, kind api.BlockKind) api.DetectorResult {
		return api.DetectorResult{Name: name, Verdict: api.VerdictBlock, BlockKind: kind, Reason: "r"}
	}
	pass := api.DetectorResult{Name: "ok", Verdict: api.VerdictPass, Reason: "fine"}
	errd := api.DetectorResult{Name: "flaky", Verdict: api.VerdictError, Reason: "timeout"}
	tests := []struct {
		name   string
		dets   []api.DetectorResult
		want   ipam.Outcome
		reason string
	}{
		{"all pass", []api.DetectorResult{pass, {Name: "gw", Verdict: api.VerdictSkip}}, ipam.OutcomeFree, ""},
		{"in use, any detector", []api.DetectorResult{pass, block("dhcp-leases", api.BlockInUse)}, ipam.OutcomeConflict, "dhcp-leases: r"},
		{"policy", []api.DetectorResult{block("cmdb", api.BlockPolicy)}, ipam.OutcomePolicy, "cmdb: r"},
		{"unreachable", []api.DetectorResult{block("vlan-guard", api.BlockUnreachable)}, ipam.OutcomeUnreachable, "vlan-guard: r"},
		{"fail", []api.DetectorResult{block("mtu", api.BlockFail)}, ipam.OutcomeBlocked, "mtu: r"},
		{"no kind is fail", []api.DetectorResult{block("old", "")}, ipam.OutcomeBlocked, "old: r"},
		{"error", []api.DetectorResult{pass, errd}, ipam.OutcomeError, "flaky: timeout"},
		{"in use and policy quarantine", []api.DetectorResult{block("cmdb", api.BlockPolicy), block("arp", api.BlockInUse)}, ipam.OutcomeConflict, "arp: r; cmdb: r"},
		{"error beats in use", []api.DetectorResult{block("arp", api.BlockInUse), errd}, ipam.OutcomeError, "flaky: timeout"},
		{"fail beats error", []api.DetectorResult{errd, block("mtu", api.BlockFail)}, ipam.OutcomeBlocked, "mtu: r"},
		{"unreachable beats fail", []api.DetectorResult{block("mtu", api.BlockFail), block("gw", api.BlockUnreachable), block("arp", api.BlockInUse)}, ipam.OutcomeUnreachable, "gw: r"},
		{"a reason-less block says who", []api.DetectorResult{{Name: "terse", Verdict: api.VerdictBlock, BlockKind: api.BlockPolicy}}, ipam.OutcomePolicy, "terse: said block"},
	}
	for _, tt := range tests {
		got := outcome(api.AddressResult{Detectors: tt.dets})
		if got.Outcome != tt.want || got.Reason != tt.reason {
			t.Errorf("%s: %s %q, want %s %q", tt.name, got.Outcome, got.Reason, tt.want, tt.reason)
		}
	}
}
