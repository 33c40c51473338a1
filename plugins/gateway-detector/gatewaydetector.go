//go:build linux

// Package gatewaydetector is spiderpool-agent's gateway detector: does the
// workload's gateway answer on the link? IPv4: an ARP request; IPv6: a
// Neighbor Solicitation. An answer within the window lets the workload pass;
// silence blocks it. See README.md.
package gatewaydetector

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Name is the plugin's name in the agent's config.
const Name = "gateway-detector"

// Version is the plugin's own version.
var Version = "0.1.0"

// Plugin is the detector.
type Plugin struct {
	*probeplugin.Detector
}

var _ sdk.Detector = (*Plugin)(nil)

// New returns the detector with the default options.
func New(log hclog.Logger) *Plugin {
	return &Plugin{Detector: probeplugin.NewDetector(log, probeplugin.Names{
		Prefix:      "gateway",
		What:        "Gateway checks",
		Blocked:     "unreachable",
		BlockedHelp: "Gateways that did not answer within the window, by family.",
		RTT:         true,
	})}
}

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return probeplugin.Info(Name, Version,
		"blocks an address whose gateway does not answer ARP / neighbor solicitation")
}

// Check implements sdk.Detector: does req.Gateway answer on req.Interface?
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	gw, cand := req.Gateway, req.Address.Addr()
	// The probe form: 0.0.0.0 (IPv4), the link-local address or :: (IPv6),
	// never the candidate, which would write it into the gateway's
	// neighbour cache before its conflict check (Spiderpool issue 4475).
	c := probeplugin.Check{
		Addr: gw,
		Run: func(e *probe.Engine, ctx context.Context, t probe.Target, pp probe.Params) (probe.Result, error) {
			return e.CheckGateway(ctx, t, pp)
		},
		Judge: func(res probe.Result, o probeplugin.Options) sdk.CheckResult {
			r := Judge(res, o)
			r.Evidence = map[string]string{"sender": senderName(res.Source)}
			return r
		},
	}
	switch {
	case !gw.IsValid():
		c.Skip = "no gateway given"
	case cand.IsValid() && cand.Unmap().Is4() != gw.Unmap().Is4():
		c.Err = fmt.Errorf("%w: gateway %s is %s but address %s is %s", probe.ErrInvalid,
			gw, probeplugin.Family(gw), req.Address, probeplugin.Family(cand))
	}
	return p.Kit.Check(ctx, req, c), nil
}

// Judge turns a completed gateway check into the answer.
func Judge(res probe.Result, o probeplugin.Options) sdk.CheckResult {
	if res.Verdict == probe.Reachable {
		return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("gateway %s answered from %s in %s on %s",
			res.Addr, res.Responder, probeplugin.FormatDuration(res.RTT), res.Interface)}
	}
	// A dead gateway makes every address of the pool useless: the
	// allocation fails at once rather than trying the next candidate.
	return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: sdk.BlockUnreachable, Reason: fmt.Sprintf("gateway %s did not answer within %s on %s",
		res.Addr, probeplugin.FormatDuration(o.Window), res.Interface)}
}

// senderName names the source the engine's gateway probe used: "0.0.0.0",
// "::", or "link-local" (the address itself says nothing to an operator).
func senderName(src netip.Addr) string {
	if src.Is6() && src.IsLinkLocalUnicast() {
		return "link-local"
	}
	return src.String()
}
