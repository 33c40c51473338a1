// Package mtuguard is an example detector for spiderpool-agent, as an
// author gets it from `spiderpool-agent plugin new mtu-guard` and fills it
// in: it blocks an address whose interface has an MTU below a configured
// minimum. It shows a config struct, a value that parses but is wrong
// reported at its file:line:column (min_mtu = 70000), and a Check that
// looks inside the workload's network namespace with sdk/netns.
package mtuguard

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// Version is the plugin's own version.
const Version = "0.1.0"

// Config is the plugin's config { } block: one tagged field per attribute,
// e.g. Limit int `hcl:"limit,optional" help:"what it means"`.
type Config struct {
	MinMTU int `hcl:"min_mtu,optional" help:"the smallest MTU a workload's interface may have, 68 to 65535"`
}

// defaults are the values of attributes the block does not set.
func defaults() Config { return Config{MinMTU: 1500} }

// parse decodes a block and checks what the types cannot; ValidateConfig
// (the agent's dry run) and Configure share it.
func parse(raw sdk.RawConfig) (Config, error) {
	cfg := defaults()
	if err := raw.Decode(&cfg); err != nil {
		return Config{}, err
	}
	if cfg.MinMTU < 68 || cfg.MinMTU > 65535 {
		return Config{}, raw.AttrError("min_mtu", fmt.Sprintf("%d is out of range: an MTU is 68 to 65535", cfg.MinMTU))
	}
	return cfg, nil
}

// Plugin is the detector.
type Plugin struct {
	sdk.Base
	log sdk.Logger
	mu  sync.RWMutex
	cfg Config
}

var (
	_ sdk.Detector  = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns the plugin with the default config.
func New(log sdk.Logger) *Plugin { return &Plugin{log: log, cfg: defaults()} }

// Info implements sdk.Plugin. Name must be the block's name.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "mtu-guard", Kind: sdk.KindDetector, Version: Version, APIVersion: sdk.APIVersion,
		Description: "blocks an address whose interface has an MTU below min_mtu"}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema {
	d := defaults()
	return sdk.MustSchemaOf(&d)
}

// ValidateConfig implements sdk.Validator.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	_, err := parse(req.Config)
	return err
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parse(req.Config)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return nil
}

func (p *Plugin) config() Config {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// Check implements sdk.Detector. Look at req.Interface inside req.Netns
// (netns.Do) and return by ctx's deadline; an error is a VerdictError.
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	cfg := p.config()
	var mtu int
	err := netns.Do(req.Netns, func() error {
		ifi, err := net.InterfaceByName(req.Interface)
		if err == nil {
			mtu = ifi.MTU
		}
		return err
	})
	if err != nil {
		return sdk.CheckResult{}, err
	}
	if mtu < cfg.MinMTU {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: sdk.BlockFail, Reason: fmt.Sprintf("%s has MTU %d, below %d", req.Interface, mtu, cfg.MinMTU)}, nil
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("%s has MTU %d", req.Interface, mtu)}, nil
}
