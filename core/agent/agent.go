// Package agent is the spiderpool-agent daemon: it loads the configuration,
// takes the control socket, serves health, metrics and gops, runs the
// plugins through the supervisor, answers checks, reloads on SIGHUP and
// stops gracefully on SIGTERM, SIGINT or a shutdown request.
package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/check"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/gopsagent"
	"github.com/spiderpool-agent/spiderpool-agent/core/health"
	"github.com/spiderpool-agent/spiderpool-agent/core/httpserve"
	"github.com/spiderpool-agent/spiderpool-agent/core/logging"
	"github.com/spiderpool-agent/spiderpool-agent/core/sdnotify"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
	"github.com/spiderpool-agent/spiderpool-agent/core/version"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// loopTick is how often the main loop beats; liveness fails when it has
// not beaten for a second.
const loopTick = 200 * time.Millisecond

// Options say where the agent finds its configuration and where it logs.
type Options struct {
	Load config.LoadOptions
	// LogOutput receives the log; default stderr.
	LogOutput io.Writer
}

// Agent is one running daemon.
type Agent struct {
	opts   Options
	log    hclog.Logger
	tel    *telemetry.Telemetry
	sup    *supervisor.Supervisor
	notify *sdnotify.Notifier
	// ipam is nil when IPAM is off (no --ipam-config-dir).
	ipam *ipamService

	cfgMu sync.Mutex // also serialises reloads
	cfg   *config.Config

	startedAt time.Time
	started   atomic.Bool
	stopping  atomic.Bool
	beat      atomic.Int64 // unix nanos of the main loop's last tick
	stopOnce  sync.Once
	stopCh    chan struct{}
	changed   chan struct{} // plugin states changed
}

// Run loads the configuration and runs the daemon until it is told to stop.
// A bad configuration, a busy port or another agent on the socket is an
// error before anything has started.
func Run(ctx context.Context, opts Options) error {
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	cfg, err := config.Load(opts.Load)
	if err != nil {
		return err
	}
	a := &Agent{
		opts:      opts,
		cfg:       cfg,
		log:       logging.New(opts.LogOutput, cfg.LogLevel, cfg.LogFormat),
		notify:    sdnotify.New(),
		startedAt: time.Now(),
		stopCh:    make(chan struct{}),
		changed:   make(chan struct{}, 1),
	}
	return a.run(ctx)
}

func (a *Agent) run(ctx context.Context) error {
	cfg := a.cfg
	a.log.Info("starting", "version", version.Version, "commit", version.Commit, "pid", os.Getpid(), "files", strings.Join(cfg.Files, ","))
	if len(cfg.IgnoredConfYMLKeys) > 0 {
		a.log.Debug("conf.yml keys this agent does not use", "keys", strings.Join(cfg.IgnoredConfYMLKeys, ","))
	}
	tel, err := telemetry.New(telemetry.Options{Version: version.Version, Commit: version.Commit, Logger: a.log.Named("metrics")})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	a.tel = tel

	// Take the socket first: a second agent must stop here, before it
	// binds a port or starts a plugin.
	controlLn, err := control.Listen(ctx, cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	listeners := []net.Listener{controlLn}
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	// IPAM next: its store is locked per node, and a bad pool file stops
	// the start like any bad configuration.
	if a.ipam, err = a.startIPAM(ctx, cfg); err != nil {
		closeAll()
		return fmt.Errorf("IPAM: %w", err)
	}
	if a.ipam != nil {
		defer a.ipam.close()
	}
	healthLn, err := httpserve.Listen(fmt.Sprintf(":%d", cfg.HealthPort))
	if err != nil {
		closeAll()
		return fmt.Errorf("health server on port %d (health_port, SPIDERPOOL_HEALTH_PORT): %w", cfg.HealthPort, err)
	}
	listeners = append(listeners, healthLn)
	var metricsLn net.Listener
	if cfg.Metrics.Enabled {
		addr := net.JoinHostPort(cfg.Metrics.Address, strconv.Itoa(cfg.Metrics.Port))
		if metricsLn, err = httpserve.Listen(addr); err != nil {
			closeAll()
			return fmt.Errorf("metrics server on %s (metrics.port, SPIDERPOOL_METRIC_HTTP_PORT): %w", addr, err)
		}
		listeners = append(listeners, metricsLn)
	}
	stopGops := gopsagent.Start(cfg.GopsPort, a.log.Named("gops"))
	defer stopGops()

	a.sup = supervisor.New(supervisor.Options{
		Logger:         a.log.Named("plugin"),
		Agent:          agentSettings(cfg),
		StartTimeout:   cfg.Supervisor.StartTimeout,
		HealthInterval: cfg.Supervisor.HealthInterval,
		Restart:        restartPolicy(cfg),
		Observer:       tel,
		OnChange:       a.pluginsChanged,
		Limits:         pluginLimits(cfg),
	})

	// Servers: control and health at once, so that startup and liveness
	// answer while plugins start.
	var servers sync.WaitGroup
	controlCtx, stopControl := context.WithCancel(context.Background())
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	serve := func(name string, ctx context.Context, ln net.Listener, h http.Handler) <-chan struct{} {
		servers.Add(1)
		done := make(chan struct{})
		go func() {
			defer servers.Done()
			defer close(done)
			if err := httpserve.Serve(ctx, ln, h, httpserve.WithGrace(cfg.ShutdownTimeout)); err != nil {
				a.log.Error("server stopped", "server", name, "error", err)
			}
		}()
		return done
	}
	controlDone := serve("control", controlCtx, controlLn, control.NewHandler(a, a.log.Named("control")))
	serve("health", httpCtx, healthLn, health.NewHandler(a))
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle(telemetry.MetricsPath, tel.Handler())
		serve("metrics", httpCtx, metricsLn, mux)
		a.log.Info("serving metrics", "address", metricsLn.Addr().String())
	}
	a.log.Info("serving", "socket", cfg.SocketPath, "health", healthLn.Addr().String())

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)
	a.beat.Store(time.Now().UnixNano())

	// Start the plugins; the main loop beats meanwhile so that liveness
	// holds during a slow start.
	startDone := make(chan struct{})
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	go func() {
		defer close(startDone)
		a.sup.Apply(startCtx, PluginSpecs(cfg), agentSettings(cfg))
	}()
	a.loop(ctx, signals, startDone)
	cancelStart() // a stop during start-up does not wait for slow plugins

	// Graceful stop: no new requests, in-flight checks finish, then plugins.
	a.stopping.Store(true)
	_ = a.notify.Stopping()
	a.log.Info("stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	stopControl()
	// In-flight checks need their plugins: wait for the control server to
	// answer them (bounded by the grace period) before stopping plugins.
	<-controlDone
	<-startDone
	a.sup.Stop(stopCtx)
	stopHTTP()
	servers.Wait()
	a.log.Info("stopped")
	return nil
}

// loop is the supervisor loop: it handles signals, reports plugin state to
// systemd and beats for liveness, until a stop is requested.
func (a *Agent) loop(ctx context.Context, signals chan os.Signal, startDone chan struct{}) {
	tick := time.NewTicker(loopTick)
	defer tick.Stop()
	var watchdog <-chan time.Time
	if iv := a.notify.WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
		_ = a.notify.Watchdog()
	}
	lastStatus := ""
	report := func() {
		if s := a.statusLine(); s != lastStatus {
			lastStatus = s
			_ = a.notify.Status(s)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.stopCh:
			return
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				a.log.Info("SIGHUP: reloading the configuration")
				if err := a.Reload(ctx); err != nil {
					a.log.Error("reload failed; the running configuration stays", "error", err)
				}
				continue
			}
			a.log.Info("signal received", "signal", sig.String())
			return
		case <-startDone:
			startDone = nil
			a.started.Store(true)
			ready, waiting := a.Status(ctx).Ready()
			a.log.Info("started", "ready", ready, "waiting_for", strings.Join(waiting, ","), "took", time.Since(a.startedAt).Round(time.Millisecond))
			lastStatus = a.statusLine()
			_ = a.notify.Ready(lastStatus)
		case <-a.changed:
			if a.started.Load() {
				report()
			}
		case <-watchdog:
			_ = a.notify.Watchdog()
		case <-tick.C:
		}
		a.beat.Store(time.Now().UnixNano())
	}
}

// statusLine summarises plugin states for systemd, e.g.
// "3 plugins: 2 ready, 1 degraded (sysctl-tuner)".
func (a *Agent) statusLine() string {
	plugins := a.sup.Snapshot()
	by := map[state.PluginState][]string{}
	for _, p := range plugins {
		by[p.State] = append(by[p.State], p.Name)
	}
	var parts []string
	for _, st := range state.AllPluginStates {
		names := by[st]
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		part := fmt.Sprintf("%d %s", len(names), st)
		if st != state.Ready {
			part += " (" + strings.Join(names, ", ") + ")"
		}
		parts = append(parts, part)
	}
	return fmt.Sprintf("%d plugins: %s", len(plugins), strings.Join(parts, ", "))
}

func (a *Agent) pluginsChanged() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *Agent) config() *config.Config {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

// Snapshot implements health.Source.
func (a *Agent) Snapshot() state.Agent { return a.Status(context.Background()) }

// Live implements health.Source: the main loop beat within a second and the
// control socket answers.
func (a *Agent) Live(ctx context.Context) error {
	if age := time.Since(time.Unix(0, a.beat.Load())); age > time.Second {
		return fmt.Errorf("the supervisor loop has not run for %v", age.Round(time.Millisecond))
	}
	c := control.Client{SocketPath: a.config().SocketPath}
	if _, err := c.Status(ctx); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// Status implements control.Backend.
func (a *Agent) Status(context.Context) state.Agent {
	var plugins []state.Plugin
	if a.sup != nil {
		plugins = a.sup.Snapshot()
	}
	return state.Agent{
		Version: version.Version, PID: os.Getpid(), StartedAt: a.startedAt,
		Started: a.started.Load(), Plugins: plugins, IPAM: a.ipamStatus(context.Background()),
	}
}

// Shutdown implements control.Backend: it begins a graceful stop.
func (a *Agent) Shutdown(context.Context) error {
	a.log.Info("shutdown requested over the control socket")
	a.stopOnce.Do(func() { close(a.stopCh) })
	return nil
}

// Reload implements control.Backend: the configuration is loaded and
// validated again; only a good one replaces the running one.
func (a *Agent) Reload(ctx context.Context) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	_ = a.notify.Reloading()
	defer func() { _ = a.notify.Ready(a.statusLine()) }()
	cfg, err := config.Load(a.opts.Load)
	if err != nil {
		a.tel.ConfigReloaded(false)
		return err
	}
	if a.ipam != nil {
		// Pools first: a refused pool change refuses the whole reload, so
		// nothing is half-applied.
		if err := a.ipam.reload(ctx, cfg); err != nil {
			a.tel.ConfigReloaded(false)
			return fmt.Errorf("IPAM: %w", err)
		}
	}
	old := a.cfg
	for _, restart := range restartOnly(old, cfg) {
		a.log.Warn("this setting changes only with a restart of the agent", "setting", restart)
	}
	if lvl := logging.Level(cfg.LogLevel); lvl != a.log.GetLevel() {
		a.log.SetLevel(lvl)
		a.log.Info("log level changed", "level", cfg.LogLevel)
	}
	a.cfg = cfg
	// Bounded, since the reload runs on the main loop, whose beat feeds
	// liveness and the systemd watchdog.
	applyCtx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
	defer cancel()
	a.sup.Apply(applyCtx, PluginSpecs(cfg), agentSettings(cfg))
	a.tel.ConfigReloaded(true)
	a.log.Info("configuration reloaded", "files", strings.Join(cfg.Files, ","))
	return nil
}

// restartOnly names the settings that differ between old and new but are
// not applied by a reload.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("socket_path", old.SocketPath != cfg.SocketPath)
	add("health_port", old.HealthPort != cfg.HealthPort)
	add("gops_port", old.GopsPort != cfg.GopsPort)
	add("metrics", old.Metrics != cfg.Metrics)
	add("log_format", old.LogFormat != cfg.LogFormat)
	add("supervisor", old.Supervisor != cfg.Supervisor)
	return out
}

// Check implements control.Backend.
func (a *Agent) Check(ctx context.Context, req control.ValidatedCheck) (control.CheckResponse, error) {
	if !a.started.Load() {
		return control.CheckResponse{}, fmt.Errorf("%w: still starting", control.ErrNotReady)
	}
	if a.stopping.Load() {
		return control.CheckResponse{}, fmt.Errorf("%w: stopping", control.ErrNotReady)
	}
	return check.Run(ctx, a.sup, a.tel, req), nil
}

func agentSettings(cfg *config.Config) sdk.AgentSettings {
	return sdk.AgentSettings{EnableIPv4: cfg.EnableIPv4, EnableIPv6: cfg.EnableIPv6, LogLevel: logging.Level(cfg.LogLevel).String()}
}

func restartPolicy(cfg *config.Config) supervisor.RestartPolicy {
	p := supervisor.DefaultRestartPolicy
	p.InitialBackoff = cfg.Supervisor.RestartInitialBackoff
	p.MaxBackoff = cfg.Supervisor.RestartMaxBackoff
	p.Budget = cfg.Supervisor.RestartBudget
	p.StableAfter = cfg.Supervisor.StableAfter
	return p
}

// pluginLimits are the supervisor block's bounds on each plugin.
func pluginLimits(cfg *config.Config) supervisor.Limits {
	return supervisor.Limits{
		MemoryMax:         uint64(cfg.Supervisor.PluginMemoryMaxMB) << 20,
		LogLinesPerSecond: float64(cfg.Supervisor.PluginLogRate),
		LogBurst:          cfg.Supervisor.PluginLogBurst,
	}
}

// builtinKinds are the kinds of the built-in plugins; any other plugin is
// expected to be a detector until it says otherwise.
var builtinKinds = map[string]sdk.Kind{config.PluginSysctlTuner: sdk.KindTuner}

// PluginSpecs turns the configured plugins into what the supervisor runs.
func PluginSpecs(cfg *config.Config) []supervisor.Spec {
	specs := make([]supervisor.Spec, 0, len(cfg.Plugins))
	for _, p := range cfg.Plugins {
		kind, ok := builtinKinds[p.Name]
		if !ok {
			kind = sdk.KindDetector
		}
		specs = append(specs, supervisor.Spec{
			Name: p.Name, Enabled: p.Enabled, Path: p.BinaryPath(cfg.PluginDir), Checksum: p.Checksum,
			Timeout: p.Timeout, FailurePolicy: p.FailurePolicy, Config: p.Config, Kind: kind,
		})
	}
	return specs
}
