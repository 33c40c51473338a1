// Package mtuguard is an example detector for spiderpool-agent, as an
// author gets it from `spiderpool-agent plugin new mtu-guard` and fills it
// in: it blocks an address whose interface has an MTU below a configured
// minimum. It shows a config struct whose range the SDK checks (min_mtu =
// 70000 is refused at its file:line:column) and a verdict that looks at an
// interface inside the workload's network namespace.
package mtuguard

import (
	"context"
	"fmt"
	"net"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// Version is the plugin's own version, stamped at build: make build
// VERSION=1.2.0 (the Makefile passes -X; its default is git describe).
var Version = "0.0.0-dev"

// Config is the plugin's config { } block: one tagged field per attribute,
// e.g. Limit int `hcl:"limit,optional" min:"1" max:"64" help:"what it means"`.
// The tags min, max, min_items, max_items, enum and format (cidr, ip, mac,
// ifname) and the field types netip.Prefix, netip.Addr and net.HardwareAddr
// are checked by Decode and by the agent, at the value's file:line:col.
type Config struct {
	MinMTU int `hcl:"min_mtu,optional" min:"68" max:"65535" help:"the smallest MTU a workload's interface may have"`
}

// defaults are the values of attributes the block does not set.
func defaults() Config { return Config{MinMTU: 1500} }

// check refuses a block that decodes but is wrong in a way no tag says, at
// the value's position; ValidateConfig (the agent's dry run) and Configure
// both run it:
//
//	return raw.AttrError("limit", "must be even")
func check(raw sdk.RawConfig, cfg *Config) error {
	return nil
}

// Plugin is the detector. sdk.Configured decodes, checks and keeps its
// config block (ConfigSchema, ValidateConfig, Configure and Config).
type Plugin struct {
	sdk.Configured[Config]
	log sdk.Logger
}

var (
	_ sdk.Detector  = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns the plugin with the default config.
func New(log sdk.Logger) *Plugin {
	return &Plugin{Configured: sdk.Configured[Config]{Defaults: defaults(), Check: check}, log: log}
}

// Info implements sdk.Plugin. Name must be the block's name.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "mtu-guard", Kind: sdk.KindDetector, Version: Version, APIVersion: sdk.APIVersion,
		Description: "blocks an address whose interface has an MTU below min_mtu"}
}

// Check implements sdk.Detector: it runs verdict inside the workload's
// network namespace.
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (res sdk.CheckResult, err error) {
	cfg := p.Config()
	err = netns.Do(req.Netns, func() error {
		res, err = verdict(ctx, cfg, req)
		return err
	})
	return res, err
}

// verdict is the detector's answer about req.Address on req.Interface. It
// runs inside req.Netns (net.InterfaceByName, netlink and sockets see the
// workload's interfaces) and must return by ctx's deadline; an error is a
// VerdictError.
func verdict(ctx context.Context, cfg Config, req sdk.CheckRequest) (sdk.CheckResult, error) {
	ifi, err := net.InterfaceByName(req.Interface)
	if err != nil {
		return sdk.CheckResult{}, err
	}
	if ifi.MTU < cfg.MinMTU {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: sdk.BlockFail, Reason: fmt.Sprintf("%s has MTU %d, below %d", req.Interface, ifi.MTU, cfg.MinMTU)}, nil
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("%s has MTU %d", req.Interface, ifi.MTU)}, ctx.Err()
}
