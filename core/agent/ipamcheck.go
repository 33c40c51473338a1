package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/check"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// ipamChecker adapts the check orchestration (the same one that answers
// POST /v1/check) to ipam.Checker: one check.Run for every candidate of an
// allocation, so a dual-stack allocation costs one reply window.
type ipamChecker struct {
	a *Agent
}

// detectorsFor hides ip-conflict from a check that asked for no conflict
// detection (a pool with conflict_detection = false).
type detectorsFor struct {
	inner    check.Detectors
	conflict bool
}

func (d detectorsFor) Check(ctx context.Context, name string, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return d.inner.Check(ctx, name, req)
}

func (d detectorsFor) Detectors() []supervisor.Detector {
	var out []supervisor.Detector
	for _, det := range d.inner.Detectors() {
		if det.Name == config.PluginIPConflict && !d.conflict {
			continue
		}
		out = append(out, det)
	}
	return out
}

func (c ipamChecker) Check(ctx context.Context, req ipam.CheckRequest) ([]ipam.CheckResult, error) {
	a := c.a
	if !a.started.Load() {
		return nil, fmt.Errorf("%w: spiderpool-agent is still starting; try again", ipam.ErrNotReady)
	}
	if a.stopping.Load() {
		return nil, fmt.Errorf("%w: spiderpool-agent is stopping; try again", ipam.ErrNotReady)
	}
	vc := state.Check{Interface: req.Interface, Netns: req.Netns}
	wantConflict, wantGateway := false, false
	for _, ad := range req.Addresses {
		vc.Addresses = append(vc.Addresses, state.CheckAddress{Address: ad.Address, Gateway: ad.Gateway})
		wantConflict = wantConflict || ad.Conflict
		wantGateway = wantGateway || ad.Gateway.IsValid()
	}
	// A pool that asks for a detector the agent does not run is never
	// vetted silently.
	have := map[string]bool{}
	for _, det := range a.sup.Detectors() {
		have[det.Name] = true
	}
	if wantConflict && !have[config.PluginIPConflict] {
		return nil, fmt.Errorf("the pool asks for conflict detection but plugin %q is not enabled", config.PluginIPConflict)
	}
	if wantGateway && !have[config.PluginGatewayDetector] {
		return nil, fmt.Errorf("the pool asks for gateway detection but plugin %q is not enabled", config.PluginGatewayDetector)
	}
	resp := check.Run(ctx, detectorsFor{inner: a.sup, conflict: wantConflict}, a.tel, vc)
	out := make([]ipam.CheckResult, len(req.Addresses))
	for i := range req.Addresses {
		out[i] = outcome(req.Addresses[i], resp.Addresses[i])
	}
	return out, nil
}

// outcome reads one address's detector results: a dead gateway, another
// detector's block or an undecided detector end the allocation; a conflict
// lets IPAM try the next candidate.
func outcome(req ipam.CheckAddress, res state.AddressResult) ipam.CheckResult {
	var conflict, gateway, blocked, errs []string
	mac := ""
	for _, d := range res.Detectors {
		reason := d.Reason
		if reason == "" {
			reason = d.Name + " said " + string(d.Verdict)
		}
		switch {
		case d.Verdict == state.VerdictError:
			errs = append(errs, d.Name+": "+reason)
		case d.Verdict != state.VerdictBlock:
		case d.Name == config.PluginIPConflict:
			conflict = append(conflict, reason)
			if mac == "" {
				mac = d.Evidence[sdk.EvidenceResponderMAC]
			}
		case d.Name == config.PluginGatewayDetector:
			gateway = append(gateway, reason)
		default:
			blocked = append(blocked, d.Name+": "+reason)
		}
	}
	switch {
	case len(gateway) > 0:
		return ipam.CheckResult{Outcome: ipam.OutcomeGateway, Reason: strings.Join(gateway, "; ")}
	case len(blocked) > 0:
		return ipam.CheckResult{Outcome: ipam.OutcomeBlocked, Reason: strings.Join(blocked, "; ")}
	case len(errs) > 0:
		return ipam.CheckResult{Outcome: ipam.OutcomeError, Reason: strings.Join(errs, "; ")}
	case len(conflict) > 0:
		return ipam.CheckResult{Outcome: ipam.OutcomeConflict, Reason: strings.Join(conflict, "; "), MAC: mac}
	}
	return ipam.CheckResult{Outcome: ipam.OutcomeFree}
}
