package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/check"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// ipamChecker adapts the check orchestration (the same one that answers
// POST /v1/check) to ipam.Checker: one check.Run for every candidate of an
// allocation, so a dual-stack allocation costs one reply window.
type ipamChecker struct {
	a *Agent
	// detectors names the plugin behind each detection a pool switches on
	// (config.IPAMConfig.Detectors). Which detector blocked never decides
	// what a block does: its kind does (outcome).
	detectors map[string]string
}

// detectorsFor leaves out the plugins of the detections a check did not
// ask for (a pool with conflict_detection = false is not probed for
// conflicts); every other detector, a third party's included, is asked.
type detectorsFor struct {
	inner  check.Detectors
	hidden map[string]bool
}

func (d detectorsFor) Check(ctx context.Context, name string, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return d.inner.Check(ctx, name, req)
}

func (d detectorsFor) Detectors() []supervisor.Detector {
	var out []supervisor.Detector
	for _, det := range d.inner.Detectors() {
		if !d.hidden[det.Name] {
			out = append(out, det)
		}
	}
	return out
}

func (c ipamChecker) Check(ctx context.Context, req api.Check) ([]ipam.CheckResult, error) {
	a := c.a
	if !a.started.Load() {
		return nil, fmt.Errorf("%w: spiderpool-agent is still starting; try again", ipam.ErrNotReady)
	}
	if a.stopping.Load() {
		return nil, fmt.Errorf("%w: spiderpool-agent is stopping; try again", ipam.ErrNotReady)
	}
	asked := map[string]bool{}
	for _, ad := range req.Addresses {
		asked[api.DetectionConflict] = asked[api.DetectionConflict] || ad.Conflict
		asked[api.DetectionGateway] = asked[api.DetectionGateway] || ad.Gateway.IsValid()
	}
	// A pool that asks for a detection the agent does not run is never
	// vetted silently.
	have := map[string]bool{}
	for _, det := range a.sup.Detectors() {
		have[det.Name] = true
	}
	hidden := map[string]bool{}
	for _, detection := range []string{api.DetectionConflict, api.DetectionGateway} {
		plugin, ok := c.detectors[detection]
		switch {
		case !asked[detection]:
			hidden[plugin] = ok
		case !ok:
			return nil, fmt.Errorf("the pool asks for %s detection but no plugin runs it", detection)
		case !have[plugin]:
			return nil, fmt.Errorf("the pool asks for %s detection but plugin %q is not enabled", detection, plugin)
		}
	}
	resp := check.Run(ctx, detectorsFor{inner: a.sup, hidden: hidden}, a.tel, req)
	out := make([]ipam.CheckResult, len(req.Addresses))
	for i := range resp.Addresses {
		out[i] = outcome(resp.Addresses[i])
	}
	if a.log.IsDebug() {
		a.log.Debug("allocation check", checkTimes(req, resp)...)
	}
	return out, nil
}

// checkTimes are an allocation's check for its debug line: where, the
// whole check, and each detector's slowest call as the agent timed it
// (<name>_ms) and as the plugin did (<name>_plugin_ms); the difference is
// the call to the plugin and back.
func checkTimes(req api.Check, resp api.CheckResult) []any {
	kv := []any{"netns", req.Netns, "interface", req.Interface, "duration_ms", resp.DurationMs}
	slowest := map[string][2]float64{}
	var names []string
	for _, ad := range resp.Addresses {
		for _, d := range ad.Detectors {
			t, seen := slowest[d.Name]
			if !seen {
				names = append(names, d.Name)
			}
			slowest[d.Name] = [2]float64{max(t[0], d.DurationMs), max(t[1], d.PluginMs)}
		}
	}
	for _, n := range names {
		kv = append(kv, n+"_ms", slowest[n][0], n+"_plugin_ms", slowest[n][1])
	}
	return kv
}

// outcome reads one address's detector results by the kind of each block,
// whichever detector gave it: an unreachable network, a refusal or an
// undecided detector end the allocation; an address in use or refused by
// policy lets IPAM try the next candidate (in use: after quarantining
// it). When several detectors block, the stronger meaning wins, in that
// order. Each reason names its detector.
func outcome(res api.AddressResult) ipam.CheckResult {
	byKind := map[api.BlockKind][]string{}
	var errs []string
	mac := "" // of the first in-use block that names who answered
	for _, d := range res.Detectors {
		reason := d.Reason
		if reason == "" {
			reason = "said " + string(d.Verdict)
		}
		reason = d.Name + ": " + reason
		switch d.Verdict {
		case api.VerdictError:
			errs = append(errs, reason)
		case api.VerdictBlock:
			kind := d.BlockKind
			if kind == "" {
				kind = api.BlockFail
			}
			byKind[kind] = append(byKind[kind], reason)
			if kind == api.BlockInUse && mac == "" {
				mac = d.Evidence[sdk.EvidenceResponderMAC]
			}
		}
	}
	for _, o := range []struct {
		kind    api.BlockKind
		outcome ipam.Outcome
	}{
		{api.BlockUnreachable, ipam.OutcomeUnreachable},
		{api.BlockFail, ipam.OutcomeBlocked},
	} {
		if r := byKind[o.kind]; len(r) > 0 {
			return ipam.CheckResult{Outcome: o.outcome, Reason: strings.Join(r, "; ")}
		}
	}
	if len(errs) > 0 {
		return ipam.CheckResult{Outcome: ipam.OutcomeError, Reason: strings.Join(errs, "; ")}
	}
	// In use beats policy: quarantining an address someone holds is right
	// whatever else refuses it.
	if r := byKind[api.BlockInUse]; len(r) > 0 {
		return ipam.CheckResult{Outcome: ipam.OutcomeConflict, Reason: strings.Join(append(r, byKind[api.BlockPolicy]...), "; "), MAC: mac}
	}
	if r := byKind[api.BlockPolicy]; len(r) > 0 {
		return ipam.CheckResult{Outcome: ipam.OutcomePolicy, Reason: strings.Join(r, "; ")}
	}
	return ipam.CheckResult{Outcome: ipam.OutcomeFree}
}
