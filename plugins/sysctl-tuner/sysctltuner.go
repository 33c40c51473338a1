// Package sysctltuner is the sysctl-tuner plugin of spiderpool-agent: it
// sets the kernel network parameters an underlay node needs (the six
// Spiderpool defaults plus whatever the config block adds) and keeps them
// from drifting. It is written against sdk/ only; the work is done by the
// tuner subpackage, this package is the glue: config decoding with
// positions, the reconcile loop, logging, health and metrics.
//
// See README.md beside this file for the operator's view.
package sysctltuner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Name is the plugin's name, as in `plugin "sysctl-tuner" { }`.
const Name = "sysctl-tuner"

// Version is the plugin's own version; the build may override it.
var Version = "0.1.0"

// states are the key states, in the order metrics report them.
var states = []tuner.State{
	tuner.StateApplied, tuner.StateUnchanged, tuner.StateUnsupported, tuner.StateFailed, tuner.StatePending,
}

// keySeen is what the last observed pass said about a key, to log only
// changes of state.
type keySeen struct {
	state    tuner.State
	err      string
	failures uint64 // the tuner's cumulative counts, to turn them into increments
	drifts   uint64
}

// loop is the running reconcile goroutine.
type loop struct {
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
}

// Plugin is the sysctl-tuner.
type Plugin struct {
	log hclog.Logger
	tu  *tuner.Tuner

	// cfgMu serialises Configure and Shutdown (and owns loop and closed).
	cfgMu  sync.Mutex
	loop   *loop
	closed bool

	// passMu serialises passes and their bookkeeping, so that reports are
	// observed in the order they were made.
	passMu sync.Mutex

	// mu guards what Health, Status and Metrics read.
	mu         sync.Mutex
	configured bool
	seen       map[string]keySeen
	drifts     map[string]uint64 // cumulative drift corrections by key
	failures   map[string]uint64 // cumulative failed passes by key
	everKeys   map[string]bool   // every key configured since start
	passes     uint64
	lastErr    string // an incomplete pass's reason
}

// Interface guards.
var (
	_ sdk.Tuner     = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns an unconfigured plugin. It touches no sysctl until Configure.
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Plugin{
		log: log,
		// The root given here is never used: Configure always passes the
		// configured proc_sys_root explicitly.
		tu:       tuner.New(tuner.DefaultProcSysRoot),
		seen:     map[string]keySeen{},
		drifts:   map[string]uint64{},
		failures: map[string]uint64{},
		everKeys: map[string]bool{},
	}
}

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:        Name,
		Kind:        sdk.KindTuner,
		Version:     Version,
		APIVersion:  sdk.APIVersion,
		Description: "sets the kernel network parameters (sysctls) the node needs and keeps them from drifting",
		// Writing /proc/sys/net/* takes CAP_NET_ADMIN in the namespace's
		// owning user namespace; keys outside net.* need uid 0.
		Capabilities: []string{"CAP_NET_ADMIN"},
	}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema {
	d := defaults()
	return sdk.MustSchemaOf(&d)
}

// Configure implements sdk.Plugin. It validates the whole block first (a
// rejected block leaves the previous settings and loop in force), then
// applies the new settings at once and restarts the reconcile loop with the
// new interval. Keys that fail to apply do not fail Configure: they make
// the plugin degraded.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, settings, err := parse(req)
	if err != nil {
		return err
	}

	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	if p.closed {
		return fmt.Errorf("%s is shut down", Name)
	}
	old := p.stopLoop()

	p.passMu.Lock()
	if err := p.tu.Configure(settings); err != nil {
		// validate ran the same checks; this is not expected.
		p.passMu.Unlock()
		if old != nil {
			p.startLoop(old.interval)
		}
		return fmt.Errorf("sysctl settings: %w", err)
	}
	p.rebaseLocked()
	rep := p.passLocked(ctx)
	p.passMu.Unlock()

	p.startLoop(cfg.ReconcileInterval)
	p.log.Info("configured", "keys", len(rep.Keys), "proc_sys_root", cfg.ProcSysRoot,
		"reconcile_interval", cfg.ReconcileInterval.String(), "enable_ipv4", req.Agent.EnableIPv4,
		"enable_ipv6", req.Agent.EnableIPv6, "degraded", rep.Degraded)
	return nil
}

// rebaseLocked aligns the bookkeeping with a just-configured tuner: its
// per-key failure counts (kept or reset by Configure) become the baseline
// for increments, and its states the baseline for logging. The caller
// holds passMu.
func (p *Plugin) rebaseLocked() {
	st := p.tu.Status()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]keySeen, len(st.Keys))
	for _, k := range st.Keys {
		seen[k.Key] = keySeen{state: k.State, err: k.Error, failures: k.Failures, drifts: k.Drifts}
		p.everKeys[k.Key] = true
	}
	p.seen = seen
	p.configured = true
}

// passLocked runs one pass and observes its report. The caller holds
// passMu.
func (p *Plugin) passLocked(ctx context.Context) tuner.Report {
	rep := p.tu.Reconcile(ctx)
	p.observe(rep)
	return rep
}

// pass runs one pass unless ctx has ended.
func (p *Plugin) pass(ctx context.Context) (tuner.Report, bool) {
	p.passMu.Lock()
	defer p.passMu.Unlock()
	if ctx.Err() != nil {
		return tuner.Report{}, false
	}
	return p.passLocked(ctx), true
}

// observe logs a pass's writes and changes of state and folds its counts
// into the metrics.
func (p *Plugin) observe(rep tuner.Report) {
	for _, c := range rep.Changes {
		if c.Drift {
			p.log.Warn("sysctl drifted; set it back", "key", c.Key, "path", c.Path, "old", c.Old, "new", c.New)
		} else {
			p.log.Info("sysctl set", "key", c.Key, "path", c.Path, "old", c.Old, "new", c.New)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.passes++
	// Drifts and failures are counted once, by the tuner, per key; the
	// plugin turns its counts into increments of counters that stay
	// monotonic across reconfigures.
	for _, k := range rep.Keys {
		prev := p.seen[k.Key]
		if k.Failures > prev.failures {
			p.failures[k.Key] += k.Failures - prev.failures
		}
		if k.Drifts > prev.drifts {
			p.drifts[k.Key] += k.Drifts - prev.drifts
		}
		switch {
		case k.State == tuner.StateFailed && (prev.state != tuner.StateFailed || prev.err != k.Error):
			p.log.Error("sysctl failed", "key", k.Key, "path", k.Path, "desired", k.Desired, "actual", k.Actual, "error", k.Error)
		case k.State == tuner.StateUnsupported && prev.state != tuner.StateUnsupported:
			p.log.Info("sysctl not present in this kernel or network namespace; skipped", "key", k.Key, "path", k.Path)
		case prev.state == tuner.StateFailed && k.State != tuner.StateFailed:
			p.log.Info("sysctl recovered", "key", k.Key, "path", k.Path, "state", string(k.State), "actual", k.Actual)
		}
		p.seen[k.Key] = keySeen{state: k.State, err: k.Error, failures: max(k.Failures, prev.failures), drifts: max(k.Drifts, prev.drifts)}
	}
	if rep.Err != "" && rep.Err != p.lastErr {
		p.log.Warn("reconcile pass incomplete", "error", rep.Err)
	}
	p.lastErr = rep.Err
}

// stopLoop stops the reconcile goroutine, if any, waits for it and returns
// it. The caller holds cfgMu and not passMu.
func (p *Plugin) stopLoop() *loop {
	l := p.loop
	if l == nil {
		return nil
	}
	l.cancel()
	<-l.done
	p.loop = nil
	return l
}

// startLoop starts the reconcile goroutine; interval 0 starts none. The
// caller holds cfgMu.
func (p *Plugin) startLoop(interval time.Duration) {
	if interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{interval: interval, cancel: cancel, done: make(chan struct{})}
	p.loop = l
	go p.run(ctx, l)
}

func (p *Plugin) run(ctx context.Context, l *loop) {
	defer close(l.done)
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	// Configure's pass may have been cut short by its deadline: finish the
	// job now rather than one interval later.
	if p.hasPending() {
		p.pass(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.pass(ctx)
		}
	}
}

func (p *Plugin) hasPending() bool {
	for _, k := range p.tu.Status().Keys {
		if k.State == tuner.StatePending {
			return true
		}
	}
	return false
}

// Status implements sdk.Tuner: the state left by the last pass. A key not
// visited yet (Configure's pass was cut short by its deadline and the loop
// has not caught up) makes Status run a pass first, so that every key has
// one of the states applied, unchanged, unsupported or failed.
func (p *Plugin) Status(ctx context.Context) sdk.TunerStatus {
	if p.hasPending() {
		if rep, ok := p.pass(ctx); ok {
			return toSDK(rep)
		}
	}
	return toSDK(p.tu.Status())
}

func toSDK(rep tuner.Report) sdk.TunerStatus {
	out := sdk.TunerStatus{Keys: make([]sdk.TunedKey, 0, len(rep.Keys)), LastReconcile: rep.LastReconcile}
	for _, k := range rep.Keys {
		out.Keys = append(out.Keys, sdk.TunedKey{
			Key: k.Key, Desired: k.Desired, Actual: k.Actual, State: string(k.State),
			Previous: k.Previous, Error: k.Error, LastDrift: k.LastDrift,
		})
	}
	return out
}

// Health implements sdk.Plugin: ready when no key failed, degraded naming
// the failed keys otherwise. Detail is the tuner's own record of every key
// ([]tuner.KeyStatus: with the path it resolved to and its drift and failure
// counts), which the Tuner Status RPC reduces to sdk.TunedKey.
func (p *Plugin) Health(context.Context) sdk.Health {
	rep := p.tu.Status()
	var failed []string
	for _, k := range rep.Keys {
		if k.State == tuner.StateFailed {
			failed = append(failed, k.Key)
		}
	}
	h := sdk.Health{State: sdk.HealthReady, Detail: rep.Keys}
	if len(failed) > 0 {
		h.State = sdk.HealthDegraded
		h.Message = fmt.Sprintf("%d of %d sysctl keys failed: %s", len(failed), len(rep.Keys), strings.Join(failed, ", "))
	}
	return h
}

// Metric names, without the agent's spiderpool_ prefix.
const (
	MetricKeyState         = "sysctl_key_state"
	MetricKeys             = "sysctl_keys"
	MetricDriftCorrections = "sysctl_drift_corrections_total"
	MetricWriteFailures    = "sysctl_write_failures_total"
	MetricPasses           = "sysctl_reconcile_passes_total"
	MetricLastReconcile    = "sysctl_last_reconcile_timestamp_seconds"
	MetricReconcileSeconds = "sysctl_reconcile_duration_seconds"
)

// Metrics implements sdk.Plugin. sysctl_key_state has one series per key
// and state: 1 for the key's current state, 0 for the others (a key no
// longer configured reports 0 for every state), so that no stale 1 stays
// behind when a key changes state.
func (p *Plugin) Metrics(context.Context) []sdk.Sample {
	rep := p.tu.Status()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []sdk.Sample
	current := make(map[string]tuner.State, len(rep.Keys))
	for _, k := range rep.Keys {
		current[k.Key] = k.State
	}
	keys := make([]string, 0, len(p.everKeys))
	for k := range p.everKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	counts := map[tuner.State]int{}
	for _, key := range keys {
		cur, ok := current[key]
		if ok {
			counts[cur]++
		}
		for _, s := range states {
			v := 0.0
			if ok && s == cur {
				v = 1
			}
			out = append(out, sdk.Sample{Name: MetricKeyState, Type: sdk.Gauge, Value: v,
				Labels: map[string]string{"key": key, "state": string(s)},
				Help:   "1 for the state a sysctl key is in (applied, unchanged, unsupported, failed, pending), 0 for the others."})
		}
		out = append(out,
			sdk.Sample{Name: MetricDriftCorrections, Type: sdk.Counter, Value: float64(p.drifts[key]),
				Labels: map[string]string{"key": key},
				Help:   "Times a sysctl key was found changed behind the tuner's back and set back."},
			sdk.Sample{Name: MetricWriteFailures, Type: sdk.Counter, Value: float64(p.failures[key]),
				Labels: map[string]string{"key": key},
				Help:   "Passes that ended with the sysctl key failed (read, write or read-back)."})
	}
	for _, s := range states {
		out = append(out, sdk.Sample{Name: MetricKeys, Type: sdk.Gauge, Value: float64(counts[s]),
			Labels: map[string]string{"state": string(s)},
			Help:   "Configured sysctl keys by state."})
	}
	out = append(out, sdk.Sample{Name: MetricPasses, Type: sdk.Counter, Value: float64(p.passes),
		Help: "Passes that read (and if needed rewrote) every configured sysctl key."})
	if !rep.LastReconcile.IsZero() {
		out = append(out,
			sdk.Sample{Name: MetricLastReconcile, Type: sdk.Gauge, Value: float64(rep.LastReconcile.UnixNano()) / 1e9,
				Help: "Unix time at which the last pass started."},
			sdk.Sample{Name: MetricReconcileSeconds, Type: sdk.Gauge, Value: rep.Duration.Seconds(),
				Help: "How long the last pass took, in seconds."})
	}
	return out
}

// Shutdown implements sdk.Plugin: it stops the reconcile loop, waiting for
// a pass in progress until ctx's deadline. The tuned values stay as they
// are.
func (p *Plugin) Shutdown(ctx context.Context) error {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	p.closed = true
	l := p.loop
	if l == nil {
		return nil
	}
	l.cancel()
	select {
	case <-l.done:
		p.loop = nil
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reconcile loop did not stop: %w", ctx.Err())
	}
}
