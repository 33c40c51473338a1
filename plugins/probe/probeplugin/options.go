//go:build linux

package probeplugin

import (
	"errors"
	"fmt"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Bounds of the shared options.
const (
	MaxWindow  = 10 * time.Second
	MaxRetries = 10
	MaxProbes  = 10
	// MaxProbeRate bounds probe_rate; pacing that loose is no pacing.
	MaxProbeRate = 100000
)

// Options are the config { } attributes every detector built on the probe
// engine shares. DefaultOptions gives Spiderpool's documented behaviour.
type Options struct {
	Window      time.Duration `hcl:"window,optional" help:"Reply window of one check: an answer within it is decisive, silence for all of it is the other verdict. More than 0, at most 10s."`
	Retries     int           `hcl:"retries,optional" help:"Retries when sending a probe fails; when the first probe cannot be sent after them the check is an error. 0 to 10."`
	Probes      int           `hcl:"probes,optional" help:"Probes sent, spread evenly over the window; the check stops at the first decisive answer. 1 to 10."`
	IdleTimeout time.Duration `hcl:"idle_timeout,optional" help:"How long a packet socket stays open after its last check; \"0s\" closes it at once."`
	ProbeRate   int           `hcl:"probe_rate,optional" help:"Most probes per second this plugin sends on one interface, in bursts of up to a fiftieth of it; checks beyond it wait for their first probe. 1 to 100000."`
}

// DefaultOptions returns the defaults: a 100ms window, 3 retries, 3 probes,
// sockets closed after 30s idle, 4000 probes per second per interface.
func DefaultOptions() Options {
	return Options{
		Window:      probe.DefaultWindow,
		Retries:     probe.DefaultRetries,
		Probes:      probe.DefaultProbes,
		IdleTimeout: probe.DefaultIdleTimeout,
		ProbeRate:   probe.DefaultProbeRate,
	}
}

// AttrError is an attribute whose value is out of range.
type AttrError struct {
	Attr string // the attribute's name, such as "window"
	Msg  string
}

func (e *AttrError) Error() string { return e.Attr + ": " + e.Msg }

// Validate checks every option and returns an *AttrError for the first one
// out of range.
func (o Options) Validate() error {
	switch {
	case o.Window <= 0 || o.Window > MaxWindow:
		return &AttrError{"window", fmt.Sprintf("%q is out of range: the reply window must be more than 0 and at most %s", o.Window.String(), MaxWindow)}
	case o.Retries < 0 || o.Retries > MaxRetries:
		return &AttrError{"retries", fmt.Sprintf("%d is out of range: 0 to %d retries (0: a failed send is not retried)", o.Retries, MaxRetries)}
	case o.Probes < 1 || o.Probes > MaxProbes:
		return &AttrError{"probes", fmt.Sprintf("%d is out of range: 1 to %d probes per window", o.Probes, MaxProbes)}
	case o.IdleTimeout < 0:
		return &AttrError{"idle_timeout", fmt.Sprintf("%q is negative", o.IdleTimeout.String())}
	case o.ProbeRate < 1 || o.ProbeRate > MaxProbeRate:
		return &AttrError{"probe_rate", fmt.Sprintf("%d is out of range: 1 to %d probes per second per interface", o.ProbeRate, MaxProbeRate)}
	}
	return nil
}

// Params are the engine parameters for these options; every value is set
// (retries = 0 is no retries).
func (o Options) Params() probe.Params {
	return probe.Params{Window: o.Window, Retries: new(o.Retries), Probes: o.Probes}
}

// EngineOptions are the engine options for these options (idle_timeout =
// "0s" closes a socket as soon as its last check ends).
func (o Options) EngineOptions() probe.Options {
	return probe.Options{IdleTimeout: new(o.IdleTimeout), ProbeRate: float64(o.ProbeRate)}
}

// Schema is the config schema of a detector: the shared attributes with
// their defaults, then those of extra, a pointer to the plugin's own config
// struct filled with its defaults (see sdk.SchemaOf). extra may be nil.
func Schema(extra any) sdk.Schema {
	d := DefaultOptions()
	return sdk.MustSchemaOf(targets(&d, extra)...)
}

// Decode decodes a config block into opts (fill it with DefaultOptions
// first) and extra (nil, or a pointer to the plugin's own config struct,
// filled with its defaults), then validates opts. The block may set the
// attributes of both; anything else is an error with HCL's did-you-mean.
// Every error is an *sdk.ConfigError naming file:line:column, a range error
// included.
func Decode(raw sdk.RawConfig, opts *Options, extra any) error {
	if err := raw.Decode(targets(opts, extra)...); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		var ae *AttrError
		if errors.As(err, &ae) {
			return raw.AttrError(ae.Attr, ae.Msg)
		}
		return err
	}
	return nil
}

func targets(opts *Options, extra any) []any {
	if extra == nil {
		return []any{opts}
	}
	return []any{opts, extra}
}
