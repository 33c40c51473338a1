//go:build linux

// Package ipconflict is spiderpool-agent's IP conflict detector: before an
// address is given to a workload, is another host on the link already using
// it? IPv4: RFC 5227 ARP probes; IPv6: RFC 4862 duplicate address detection.
// A reply within the window blocks the workload; silence lets it pass. See
// README.md.
package ipconflict

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Name is the plugin's name in the agent's config.
const Name = "ip-conflict"

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
		Prefix:      "ip_conflict",
		What:        "IP conflict checks",
		Blocked:     "conflicts",
		BlockedHelp: "Addresses found in use by another host, by family.",
	})}
}

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return probeplugin.Info(Name, Version,
		"blocks an address another host on the link already uses (ARP probe / IPv6 DAD)")
}

// Check implements sdk.Detector: is req.Address in use on req.Interface?
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return p.Kit.Check(ctx, req, probeplugin.Check{
		Addr:  req.Address.Addr(),
		Run:   (*probe.Engine).CheckConflict,
		Judge: Judge,
	}), nil
}

// Judge turns a completed conflict check into the answer.
func Judge(res probe.Result, o probeplugin.Options) sdk.CheckResult {
	if res.Verdict == probe.Conflict {
		// In use: IPAM quarantines the address and tries the next one.
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: sdk.BlockInUse,
			Reason: fmt.Sprintf("%s is in use by %s on %s", res.Addr, res.Responder, res.Interface)}
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass,
		Reason: fmt.Sprintf("%s is not in use on %s (no answer within %s, %s)",
			res.Addr, res.Interface, probeplugin.FormatDuration(o.Window), probeplugin.Plural(res.ProbesSent, "probe"))}
}
