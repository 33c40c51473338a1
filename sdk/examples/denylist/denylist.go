// Package denylist is an example third-party detector for spiderpool-agent:
// it blocks candidate addresses that fall inside configured prefixes, such as
// the addresses of a rack's switches and BMCs that must never be handed to a
// workload. It shows everything a detector needs: Info, a config struct with
// hcl tags, Configure, Check, Health and Metrics.
package denylist

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Version is the plugin's own version.
const Version = "0.1.0"

// Config is the plugin's config { } block.
type Config struct {
	Deny   []string `hcl:"deny,optional" help:"prefixes whose addresses are never given to a workload"`
	Reason string   `hcl:"reason,optional" help:"text added to every block verdict"`
}

func defaults() Config { return Config{Reason: "reserved for infrastructure"} }

// Plugin is the detector.
type Plugin struct {
	sdk.Base
	log hclog.Logger

	mu     sync.RWMutex
	deny   []netip.Prefix
	reason string

	checks  atomic.Uint64
	blocked atomic.Uint64
}

// Interface guards: the compiler checks the contract.
var (
	_ sdk.Detector  = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New(log hclog.Logger) *Plugin { return &Plugin{log: log} }

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name: "denylist", Kind: sdk.KindDetector, Version: Version, APIVersion: sdk.APIVersion,
		Description: "blocks addresses inside configured prefixes",
	}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema {
	d := defaults()
	return sdk.MustSchemaOf(&d)
}

// parse decodes and checks a config block. ValidateConfig and Configure
// both use it, so that what the dry run accepts Configure accepts too.
func parse(raw sdk.RawConfig) (Config, []netip.Prefix, error) {
	cfg := defaults()
	if err := raw.Decode(&cfg); err != nil {
		return Config{}, nil, err // a *sdk.ConfigError with file:line:col
	}
	deny := make([]netip.Prefix, 0, len(cfg.Deny))
	for _, s := range cfg.Deny {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			// Parses as HCL but is wrong: name the list element's position.
			return Config{}, nil, raw.EntryError("deny", s, false, fmt.Sprintf("%q is not a prefix such as 10.0.0.0/29", s))
		}
		deny = append(deny, pfx.Masked())
	}
	return cfg, deny, nil
}

// ValidateConfig implements sdk.Validator: the agent's dry run before a
// reload or in `config validate`.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	_, _, err := parse(req.Config)
	return err
}

// Configure implements sdk.Plugin. It validates everything before it
// changes anything, so a bad reload leaves the old settings in force.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg, deny, err := parse(req.Config)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.deny, p.reason = deny, cfg.Reason
	p.mu.Unlock()
	p.log.Info("configured", "prefixes", len(deny))
	return nil
}

// Check implements sdk.Detector.
func (p *Plugin) Check(_ context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	p.checks.Add(1)
	p.mu.RLock()
	defer p.mu.RUnlock()
	addr := req.Address.Addr()
	for _, pfx := range p.deny {
		if pfx.Contains(addr) {
			p.blocked.Add(1)
			return sdk.CheckResult{
				Verdict: sdk.VerdictBlock,
				// Policy: the agent skips this address, without quarantine,
				// and tries the next candidate of the pool.
				BlockKind: sdk.BlockPolicy,
				Reason:    fmt.Sprintf("%s is inside %s: %s", addr, pfx, p.reason),
				Evidence:  map[string]string{"prefix": pfx.String()},
			}, nil
		}
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("%s is in no denied prefix", addr)}, nil
}

// Health implements sdk.Plugin.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return sdk.Health{State: sdk.HealthReady, Detail: map[string]int{"prefixes": len(p.deny)}}
}

// Metrics implements sdk.Plugin.
func (p *Plugin) Metrics(context.Context) []sdk.Sample {
	return []sdk.Sample{
		{Name: "denylist_checks_total", Type: sdk.Counter, Value: float64(p.checks.Load()), Help: "Checks answered."},
		{Name: "denylist_blocked_total", Type: sdk.Counter, Value: float64(p.blocked.Load()), Help: "Checks blocked."},
	}
}
