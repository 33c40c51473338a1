package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// managed is one plugin and the goroutine that keeps it running.
type managed struct {
	sup *Supervisor
	log hclog.Logger
	lim *logLimiter // the plugin's log lines, across its restarts

	mu       sync.Mutex
	spec     Spec
	st       api.Plugin
	inst     *instance
	cancel   context.CancelFunc // ends the current run
	done     chan struct{}      // closed when the current run has returned
	settled  chan struct{}      // closed when the current run first settles
	stopCtx  context.Context    // bounds the graceful stop of the current run
	stopping bool
}

func newManaged(sp Spec, sup *Supervisor) *managed {
	m := &managed{sup: sup, spec: sp, log: sup.opts.Logger.Named(sp.Name)}
	m.lim = newLogLimiter(sup.opts.Limits, func(n int) { sup.opts.Observer.PluginLogSuppressed(sp.Name, n) })
	m.st = api.Plugin{Name: sp.Name, Kind: string(sp.Kind), Path: sp.Path, Component: sp.Component, Policy: sp.FailurePolicy, Since: time.Now(), Limits: sup.opts.Limits.String()}
	return m
}

func (m *managed) specCopy() Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spec
}

func (m *managed) snapshot() api.Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// start begins a run (or marks the plugin disabled). Callers hold no lock.
func (m *managed) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settled = make(chan struct{})
	m.done = make(chan struct{})
	if !m.spec.Enabled {
		m.setStateLocked(api.Disabled, "disabled in the configuration", "")
		close(m.settled)
		close(m.done)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.stopCtx = context.Background()
	go m.run(ctx, m.done)
}

// update applies a new spec and reports whether the caller should wait for
// the plugin to settle.
func (m *managed) update(sp Spec, agentChanged bool) bool {
	m.mu.Lock()
	old := m.spec
	running := m.inst != nil
	st := m.st.State
	m.mu.Unlock()

	switch {
	case sp.Enabled != old.Enabled, !sp.sameProcess(old), !running && st != api.Restarting:
		// Start over: enabling, disabling, a new binary, or a plugin that
		// is not running (failed, disabled by its budget or checksum) and
		// may now start with the new settings.
		m.shutdown(context.Background())
		m.mu.Lock()
		m.spec = sp
		m.st.Path, m.st.Component, m.st.Policy = sp.Path, sp.Component, sp.FailurePolicy
		m.mu.Unlock()
		m.start()
		return true
	case !sp.sameConfig(old) || agentChanged:
		m.mu.Lock()
		inst := m.inst
		if inst == nil {
			// Between runs: the next start uses the new spec.
			m.spec = sp
			m.st.Policy = sp.FailurePolicy
		}
		m.mu.Unlock()
		if inst == nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), sp.Timeout)
		defer cancel()
		if err := m.configure(ctx, inst, sp); err != nil {
			// The process keeps its previous config, and so does the spec,
			// so that a restart (after a crash, a kill -9) starts it with
			// the config it ran, never the refused one.
			m.log.Error("reconfigure failed; the plugin keeps its previous config", "error", err, "generation", old.Generation)
			m.mu.Lock()
			m.st.LastError = err.Error()
			m.mu.Unlock()
			return false
		}
		m.mu.Lock()
		m.spec = sp
		m.st.Policy = sp.FailurePolicy
		m.st.ConfigGeneration = sp.Generation
		m.mu.Unlock()
		m.log.Info("reconfigured", "generation", sp.Generation)
	default:
		// Nothing changed for this plugin: it runs the new generation too.
		m.mu.Lock()
		if m.st.ConfigGeneration == old.Generation {
			m.st.ConfigGeneration = sp.Generation
		}
		m.spec.Generation = sp.Generation
		m.mu.Unlock()
	}
	return false
}

// shutdown ends the current run gracefully within ctx and waits for it.
func (m *managed) shutdown(ctx context.Context) {
	m.mu.Lock()
	done := m.done
	m.stopCtx = ctx
	m.stopping = true
	// Under the lock, so that whoever sees stopping also sees the run's
	// context ended.
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	if done != nil {
		<-done
	}
	m.mu.Lock()
	m.stopping = false
	m.cancel = nil
	m.mu.Unlock()
}

func (m *managed) waitSettled(ctx context.Context) {
	m.mu.Lock()
	ch := m.settled
	m.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (m *managed) markSettled() {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.settled:
	default:
		close(m.settled)
	}
}

func (m *managed) setState(st api.PluginState, msg, lastErr string) {
	m.mu.Lock()
	changed := m.setStateLocked(st, msg, lastErr)
	m.mu.Unlock()
	if changed {
		m.sup.opts.OnChange()
	}
}

func (m *managed) setStateLocked(st api.PluginState, msg, lastErr string) bool {
	changed := m.st.State != st
	if changed {
		m.st.Since = time.Now()
		m.log.Info("state changed", "from", m.st.State, "to", st)
	}
	m.st.State, m.st.Message = st, msg
	if lastErr != "" {
		m.st.LastError = lastErr
	}
	m.sup.opts.Observer.PluginState(m.st.Name, st, m.st.Restarts)
	return changed
}

// run keeps the plugin running until ctx ends.
func (m *managed) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	bo := newBackoff(m.sup.opts.Restart)
	for {
		m.setState(api.Starting, "", "")
		sp := m.specCopy()
		startCtx, cancel := context.WithTimeout(ctx, m.sup.opts.StartTimeout+sp.Timeout)
		inst, err := launch(startCtx, sp, &m.sup.opts, m.log, m.lim, m.sup.reaper)
		if err == nil {
			err = m.configure(startCtx, inst, sp)
			if err != nil {
				inst.stop(m.stopContext(), m.log, true)
			} else {
				m.mu.Lock()
				m.st.ConfigGeneration = sp.Generation
				m.mu.Unlock()
			}
		}
		cancel()
		if ctx.Err() != nil {
			// Stopped between launch and serve: the configured
			// instance (and anything it forked) must not outlive
			// the run that started it.
			if err == nil {
				inst.stop(m.stopContext(), m.log, true)
			}
			return
		}
		var ranFor time.Duration
		var cfgErr *sdk.ConfigError
		switch {
		case errors.As(err, &cfgErr):
			// A bad config stays bad until a reload: no restarts.
			m.log.Error("plugin config rejected", "error", err)
			m.setState(api.Failed, "invalid plugin configuration", err.Error())
			m.markSettled()
			<-ctx.Done()
			return
		case errors.Is(err, errPermanent):
			m.log.Error("plugin disabled", "error", err)
			m.setState(api.Disabled, "cannot start", err.Error())
			m.markSettled()
			<-ctx.Done()
			return
		case err != nil:
			m.log.Error("plugin failed to start", "error", err)
			m.setState(api.Failed, "failed to start", err.Error())
		default:
			ranFor = m.serve(ctx, inst)
			if ctx.Err() != nil {
				return
			}
		}
		m.markSettled()
		wait, ok := bo.next(ranFor)
		m.mu.Lock()
		lastErr := m.st.LastError
		m.mu.Unlock()
		if !ok {
			msg := fmt.Sprintf("restart budget of %d spent", m.sup.opts.Restart.Budget)
			m.log.Error("plugin disabled", "reason", msg, "last_error", lastErr)
			m.setState(api.Disabled, msg, "")
			<-ctx.Done()
			return
		}
		m.mu.Lock()
		m.st.Restarts++
		m.mu.Unlock()
		m.sup.opts.Observer.PluginRestarted(sp.Name)
		m.setState(api.Restarting, fmt.Sprintf("restarting in %v", wait.Round(time.Millisecond)), "")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *managed) stopContext() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopCtx == nil {
		return context.Background()
	}
	return m.stopCtx
}

// configure validates sp's config block against the schema the plugin
// reported, then sends it.
func (m *managed) configure(ctx context.Context, inst *instance, sp Spec) error {
	if err := sp.Config.Validate(inst.schema); err != nil {
		return err
	}
	start := time.Now()
	err := inst.rpc.Configure(ctx, sdk.ConfigureRequest{Config: sp.Config, Agent: m.sup.agentSettings()})
	m.sup.opts.Observer.PluginCall(sp.Name, "Configure", time.Since(start).Seconds(), err)
	if err != nil {
		var ce *sdk.ConfigError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("configure: %w", err)
	}
	return nil
}

// serve publishes a configured instance and watches it until it exits,
// stops answering, or ctx ends. It returns how long the instance ran.
func (m *managed) serve(ctx context.Context, inst *instance) time.Duration {
	m.mu.Lock()
	m.inst = inst
	m.st.PID = inst.pid
	m.st.Version = inst.info.Version
	m.st.Kind = string(inst.info.Kind)
	m.st.Description = inst.info.Description
	m.st.Capabilities = inst.info.Capabilities
	m.mu.Unlock()
	m.log.Info("plugin started", "pid", inst.pid, "version", inst.info.Version, "kind", inst.info.Kind)
	m.setState(api.Ready, "", "")
	m.markSettled()
	m.pollHealth(ctx, inst)

	reason, answering := m.watch(ctx, inst)
	m.mu.Lock()
	m.inst = nil
	m.st.PID = 0
	m.mu.Unlock()
	if ctx.Err() == nil {
		m.log.Warn("plugin is gone; restarting it", "reason", reason)
		// Not ready from this moment: no check may go to it, and
		// readiness says so while it is replaced.
		m.setState(api.Restarting, "stopping: "+reason, reason)
	}
	// A plugin that stopped answering is not asked to shut down: the call
	// would only wait out its timeout.
	inst.stop(m.stopContext(), m.log, answering)
	return time.Since(inst.started)
}

// watch returns when the process exits, misses too many health checks, or
// ctx ends, with the reason and whether the plugin still answers calls.
func (m *managed) watch(ctx context.Context, inst *instance) (string, bool) {
	exitPoll := time.NewTicker(50 * time.Millisecond)
	defer exitPoll.Stop()
	health := time.NewTicker(m.sup.opts.HealthInterval)
	defer health.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return "stopping", missed == 0
		case <-exitPoll.C:
			if inst.client.Exited() {
				if why := inst.runner.exitReason(); why != "" {
					return why, false
				}
				return "the plugin process exited", false
			}
		case <-health.C:
			// Orphans of any plugin tree that exited meanwhile are the
			// agent's to collect, as subreaper.
			m.sup.reaper.reapZombies()
			if m.pollHealth(ctx, inst) {
				missed = 0
				continue
			}
			missed++
			if missed >= m.sup.opts.HealthFailures {
				return fmt.Sprintf("the plugin missed %d health checks in a row", missed), false
			}
		}
	}
}

// pollHealth asks the plugin for its health and metrics and reports whether
// it answered.
func (m *managed) pollHealth(ctx context.Context, inst *instance) bool {
	sp := m.specCopy()
	cctx, cancel := context.WithTimeout(ctx, sp.Timeout)
	defer cancel()
	start := time.Now()
	h, err := inst.rpc.Health(cctx)
	m.sup.opts.Observer.PluginCall(sp.Name, "Health", time.Since(start).Seconds(), err)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("health check failed", "error", err)
		}
		return false
	}
	st := map[sdk.HealthState]api.PluginState{
		sdk.HealthReady: api.Ready, sdk.HealthDegraded: api.Degraded, sdk.HealthFailed: api.Failed,
	}[h.State]
	m.mu.Lock()
	if d, ok := h.Detail.(json.RawMessage); ok {
		m.st.Detail = d
	} else {
		m.st.Detail = nil
	}
	m.mu.Unlock()
	m.setState(st, h.Message, "")

	if inst.info.Kind == sdk.KindTuner {
		start = time.Now()
		ts, err := inst.rpc.Status(cctx)
		m.sup.opts.Observer.PluginCall(sp.Name, "Status", time.Since(start).Seconds(), err)
		if err == nil {
			m.mu.Lock()
			m.st.Tuned = tunedState(ts)
			m.mu.Unlock()
		}
	}

	start = time.Now()
	samples, err := inst.rpc.Metrics(cctx)
	m.sup.opts.Observer.PluginCall(sp.Name, "CollectMetrics", time.Since(start).Seconds(), err)
	if err == nil {
		m.sup.opts.Observer.PluginSamples(sp.Name, samples)
	}
	return true
}

// call runs fn against the running instance, bounded by the plugin's
// timeout, and records the call.
func (m *managed) call(ctx context.Context, method string, fn func(context.Context, *sdk.Client) error) error {
	m.mu.Lock()
	inst, sp, st := m.inst, m.spec, m.st
	m.mu.Unlock()
	if inst == nil || (st.State != api.Ready && st.State != api.Degraded) {
		reason := string(st.State)
		if st.LastError != "" {
			reason += ": " + st.LastError
		}
		return fmt.Errorf("%w: %s is %s", ErrUnavailable, sp.Name, reason)
	}
	cctx, cancel := context.WithTimeout(ctx, sp.Timeout)
	defer cancel()
	start := time.Now()
	err := fn(cctx, inst.rpc)
	m.sup.opts.Observer.PluginCall(sp.Name, method, time.Since(start).Seconds(), err)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sdk.ErrDeadline) || cctx.Err() != nil && ctx.Err() == nil:
		return fmt.Errorf("%s: %s did not answer within its timeout of %v: %w", sp.Name, method, sp.Timeout, ErrTimeout)
	case errors.Is(err, sdk.ErrUnavailable):
		return fmt.Errorf("%s: %w", sp.Name, errors.Join(ErrUnavailable, err))
	}
	return fmt.Errorf("%s: %w", sp.Name, err)
}

// tunedState is a tuner's report as status shows it.
func tunedState(ts sdk.TunerStatus) *api.Tuned {
	out := &api.Tuned{Keys: make([]api.TunedKey, 0, len(ts.Keys)), LastReconcile: ts.LastReconcile}
	for _, k := range ts.Keys {
		out.Keys = append(out.Keys, api.TunedKey{
			Key: k.Key, Desired: k.Desired, Actual: k.Actual, State: k.State,
			Previous: k.Previous, Error: k.Error, LastDrift: k.LastDrift,
		})
	}
	return out
}
