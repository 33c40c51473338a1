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
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Name is the plugin's name in the agent's config.
const Name = "gateway-detector"

// Version is the plugin's own version.
var Version = "0.1.0"

// Config holds the attributes of this plugin besides the shared ones.
type Config struct {
	// UseCandidateAsSender: see README.md and Spiderpool issue 4475.
	UseCandidateAsSender bool `hcl:"use_candidate_as_sender,optional" help:"Send the probe from the workload's address once it passed conflict detection, instead of 0.0.0.0 / the link-local address. This writes the address into the gateway's neighbour cache (Spiderpool issue 4475)."`
}

// Plugin is the detector.
type Plugin struct {
	*probeplugin.Kit
	useCandidate atomic.Bool
}

var (
	_ sdk.Detector  = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns the detector with the default options.
func New(log hclog.Logger) *Plugin {
	return &Plugin{Kit: probeplugin.NewKit(log, probeplugin.Names{
		Prefix:      "gateway",
		What:        "Gateway checks",
		Blocked:     "unreachable",
		BlockedHelp: "Gateways that did not answer within the window, by family.",
		RTT:         true,
	})}
}

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name: Name, Kind: sdk.KindDetector, Version: Version, APIVersion: sdk.APIVersion,
		Description: "blocks an address whose gateway does not answer ARP / neighbor solicitation",
		// Raw packets; setns into workload namespaces.
		Capabilities: []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"},
	}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema { return probeplugin.Schema(&Config{}) }

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var c Config
	if err := p.Kit.Configure(req, &c); err != nil {
		return err
	}
	p.useCandidate.Store(c.UseCandidateAsSender)
	return nil
}

// ValidateConfig implements sdk.Validator: the block decoded and checked as
// Configure would, nothing applied.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	opts := probeplugin.DefaultOptions()
	return probeplugin.Decode(req.Config, &opts, &Config{})
}

// Check implements sdk.Detector: does req.Gateway answer on req.Interface?
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	gw, cand := req.Gateway, req.Address.Addr()
	sender := Sender(req, p.useCandidate.Load())
	c := probeplugin.Check{
		Addr: gw,
		Run: func(e *probe.Engine, ctx context.Context, t probe.Target, pp probe.Params) (probe.Result, error) {
			return e.CheckGateway(ctx, t, pp, sender)
		},
		Judge: func(res probe.Result, o probeplugin.Options) sdk.CheckResult {
			r := Judge(res, o)
			r.Evidence = map[string]string{"sender": senderName(sender, gw)}
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
	return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: fmt.Sprintf("gateway %s did not answer within %s on %s",
		res.Addr, probeplugin.FormatDuration(o.Window), res.Interface)}
}

// Sender is the source of the gateway probe: 0.0.0.0 (IPv4) or the
// interface's link-local address (IPv6), unless the candidate passed its
// conflict check and use_candidate_as_sender is set (Spiderpool issue 4475:
// a probe from the candidate writes it into the gateway's neighbour cache).
func Sender(req sdk.CheckRequest, useCandidate bool) probe.Sender {
	if req.ConflictChecked && useCandidate && req.Address.IsValid() {
		return probe.Sender{Addr: req.Address.Addr(), ConflictChecked: true}
	}
	return probe.Sender{}
}

func senderName(s probe.Sender, gw netip.Addr) string {
	switch {
	case s.Addr.IsValid():
		return s.Addr.String()
	case gw.Unmap().Is4():
		return "0.0.0.0"
	}
	return "link-local"
}
