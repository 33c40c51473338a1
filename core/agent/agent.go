// Package agent is the spiderpool-agent daemon: it loads the configuration,
// takes the control socket, serves health, metrics and gops, runs the
// plugins through the supervisor, answers checks, reloads on SIGHUP and
// stops gracefully on SIGTERM, SIGINT or a shutdown request.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/check"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/gopsagent"
	"github.com/spiderpool-agent/spiderpool-agent/core/health"
	"github.com/spiderpool-agent/spiderpool-agent/core/httpserve"
	"github.com/spiderpool-agent/spiderpool-agent/core/logging"
	"github.com/spiderpool-agent/spiderpool-agent/core/sdnotify"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
	"github.com/spiderpool-agent/spiderpool-agent/core/version"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/reclaim"
)

// loopTick is how often the main loop beats.
const loopTick = 200 * time.Millisecond

// Liveness. A probe answers from what the agent's own loops recorded, so
// that it costs nothing and cannot queue behind other work: 5000 probes at
// once each dialling the control socket gave 3209 false 503s. The bounds
// leave room for a loaded 2-core machine: liveness is for a wedged agent,
// which a false failure would have restarted.
const (
	// staleBeat: the main loop has not beaten for this long.
	staleBeat = 5 * time.Second
	// selfProbeInterval is how often the agent asks its own control socket
	// for its status, each time bounded by selfProbeTimeout: an answer
	// takes milliseconds, so a longer wait is the socket not answering.
	selfProbeInterval = time.Second
	selfProbeTimeout  = 2 * time.Second
	// staleSelfProbe: no answer on the control socket for this long.
	staleSelfProbe = 10 * time.Second
	// unreadySelfProbe: no answer on the control socket for this long
	// makes the agent not ready ("control-socket"): the CNI plugin and
	// the CLI reach it only there. Several probes, so that one refused
	// in a burst (every connection busy) does not flap readiness.
	unreadySelfProbe = 5 * time.Second
)

// reloadLoadTimeout bounds the reading and validating of the configuration
// files in a reload: the files are read non-blocking and bounded in size,
// so this is a last guard, not an expected wait.
const reloadLoadTimeout = 10 * time.Second

// Limits of the three servers (httpserve.Limits; zero fields keep
// httpserve.DefaultLimits). An idle connection costs about 10-20 KiB
// (goroutine and buffers), so the connection limits bound what a flood can
// take to a few MiB per server. A flood beyond a limit waits in the kernel's
// backlog, and so do the legitimate requests behind it, until the header
// timeout cuts the slow ones: hence short timeouts where requests are tiny.

// healthLimits: probes send a few bytes and get a few hundred back; a probe
// queued behind a full house waits at most ReadHeader.
func healthLimits() httpserve.Limits {
	return httpserve.Limits{ReadHeader: 2 * time.Second, Read: 2 * time.Second,
		Write: 5 * time.Second, Idle: 5 * time.Second, MaxConns: 1024}
}

// controlLimits: the CLI and the CNI plugin send one small request per
// connection (no keep-alive) at once, so a client silent for 2s is not one
// of them; the write timeout outlasts the longest request
// (controlWriteTimeout). Idle connections never keep a request out
// (httpserve closes the oldest for it); the limit is the requests in
// progress at once - every allocation ends by ipam.allocation_timeout - and
// one beyond it is answered "try again" at once.
func controlLimits(cfg *config.Config) httpserve.Limits {
	return httpserve.Limits{ReadHeader: 2 * time.Second, Write: controlWriteTimeout(cfg), Idle: 5 * time.Second, MaxConns: 512}
}

// controlBusyBody answers a connection beyond the control socket's limit,
// in both the control API's and the IPAM API's words (api.ErrorBody).
var controlBusyBody = []byte(`{"error":"spiderpool-agent is serving as many control requests as it takes at once; try again","code":"` + api.CodeTryAgain + `"}` + "\n")

// metricsLimits: a scrape is one small request and a larger answer.
func metricsLimits() httpserve.Limits { return httpserve.Limits{MaxConns: 64} }

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
	// loaded says which configuration runs. Replaced (under cfgMu) when a
	// reload is accepted, read without cfgMu: Status must not wait for a
	// reload, which holds cfgMu for as long as plugins take to answer.
	loaded atomic.Pointer[configLoad]

	startedAt time.Time
	started   atomic.Bool
	stopping  atomic.Bool
	beat      atomic.Int64 // unix nanos of the main loop's last tick
	probeOK   atomic.Int64 // unix nanos of the last answer on the control socket
	probeErr  atomic.Pointer[error]
	gops      string // the gops agent's address, "" when not listening
	reloading sync.WaitGroup
	stopOnce  sync.Once
	stopCh    chan struct{}
	changed   chan struct{} // plugin states changed
	// work sees checks and IPAM calls, so that the agent returns a burst's
	// memory once the burst is over (the plugins do the same, in the sdk).
	work *reclaim.Reclaimer
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
		work:      reclaim.New(reclaim.DefaultQuiet),
	}
	a.loaded.Store(&configLoad{generation: 1, at: time.Now()})
	defer a.work.Stop()
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
	var stopGops func()
	a.gops, stopGops = gopsagent.Start(cfg.GopsPort, a.log.Named("gops"))
	defer stopGops()

	a.sup = supervisor.New(supervisor.Options{
		Logger:         a.log.Named("plugin"),
		Agent:          Settings(cfg),
		StartTimeout:   cfg.Supervisor.StartTimeout,
		HealthInterval: cfg.Supervisor.HealthInterval,
		Restart:        restartPolicy(cfg),
		Observer:       tel,
		OnChange:       a.pluginsChanged,
		Limits:         pluginLimits(cfg),
	})

	// The plugins are handed to the supervisor before anything serves, so
	// that the first status lists every configured one (starting); their
	// wait to settle runs below, beside the servers.
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	settle := a.sup.Begin(startCtx, specsOf(cfg, 1), Settings(cfg))

	// Servers: control and health at once, so that startup and liveness
	// answer while plugins start.
	var servers sync.WaitGroup
	controlCtx, stopControl := context.WithCancel(context.Background())
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	serve := func(name string, ctx context.Context, ln net.Listener, h http.Handler, lim httpserve.Limits, opts ...httpserve.Option) <-chan struct{} {
		servers.Add(1)
		done := make(chan struct{})
		go func() {
			defer servers.Done()
			defer close(done)
			// The servers' own errors (a panic in a handler, accept
			// errors) go to the agent's log, not to stderr unformatted.
			errLog := a.log.Named(name).StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error})
			opts = append(opts, httpserve.WithGrace(cfg.ShutdownTimeout), httpserve.WithLimits(lim), httpserve.WithErrorLog(errLog))
			if err := httpserve.Serve(ctx, ln, h, opts...); err != nil {
				a.log.Error("server stopped", "server", name, "error", err)
			}
		}()
		return done
	}
	controlDone := serve("control", controlCtx, controlLn, control.NewHandler(a, a.log.Named("control")), controlLimits(cfg), httpserve.WithBusyBody(controlBusyBody))
	serve("health", httpCtx, healthLn, health.NewHandler(a), healthLimits())
	if metricsLn != nil {
		mux := http.NewServeMux()
		// A scraper that gives up mid-answer is normal (its timeout): one
		// debug line, not a warning per metric family.
		metricsLog := a.log.Named("metrics")
		mux.Handle(telemetry.MetricsPath, httpserve.QuietWhenGone(tel.Handler(), func(r *http.Request, err error) {
			metricsLog.Debug("the scraper went away before the answer was written", "remote", r.RemoteAddr, "error", err)
		}))
		serve("metrics", httpCtx, metricsLn, mux, metricsLimits())
		a.log.Info("serving metrics", "address", metricsLn.Addr().String())
	}
	a.log.Info("serving", "socket", cfg.SocketPath, "health", healthLn.Addr().String())

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)
	a.beat.Store(time.Now().UnixNano())
	a.probeOK.Store(time.Now().UnixNano())
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go a.selfProbe(probeCtx, cfg.SocketPath)

	// Wait for the plugins to settle; the main loop beats meanwhile so
	// that liveness holds during a slow start.
	startDone := make(chan struct{})
	go func() {
		defer close(startDone)
		settle(startCtx)
	}()
	reloadCtx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	a.loop(ctx, signals, startDone, reloadCtx)
	cancelStart() // a stop during start-up does not wait for slow plugins
	stopReloads() // nor for a SIGHUP reload still applying
	stopProbe()

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
	a.reloading.Wait()
	a.sup.Stop(stopCtx)
	stopHTTP()
	servers.Wait()
	a.log.Info("stopped")
	return nil
}

// loop is the supervisor loop: it handles signals, reports plugin state to
// systemd and beats for liveness, until a stop is requested.
func (a *Agent) loop(ctx context.Context, signals chan os.Signal, startDone chan struct{}, reloadCtx context.Context) {
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
				// Off the main loop, so that signals, the systemd watchdog
				// and liveness go on while files are read and plugins are
				// reconfigured. Reloads run one at a time (cfgMu).
				a.log.Info("SIGHUP: reloading the configuration")
				a.reloading.Add(1)
				go func() {
					defer a.reloading.Done()
					if err := a.Reload(reloadCtx); err != nil {
						a.log.Error("reload failed; the running configuration stays", "error", err)
					}
				}()
				break
			}
			a.log.Info("signal received", "signal", sig.String())
			return
		case <-startDone:
			startDone = nil
			a.started.Store(true)
			// The start is a burst too: config, plugins and stores.
			a.work.Begin()()
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
	by := map[api.PluginState][]string{}
	for _, p := range plugins {
		by[p.State] = append(by[p.State], p.Name)
	}
	var parts []string
	for _, st := range api.AllPluginStates {
		names := by[st]
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		part := fmt.Sprintf("%d %s", len(names), st)
		if st != api.Ready {
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

// Snapshot implements health.Source.
func (a *Agent) Snapshot() api.Agent { return a.Status(context.Background()) }

// Live implements health.Source: the main loop beat within staleBeat and
// the control socket answered the agent's own status request (selfProbe)
// within staleSelfProbe. It reads two timestamps and takes no lock, so that
// no load on the agent makes a live agent look dead.
func (a *Agent) Live(context.Context) error {
	now := time.Now()
	if age := now.Sub(time.Unix(0, a.beat.Load())); age > staleBeat {
		return fmt.Errorf("the supervisor loop has not run for %v", age.Round(time.Millisecond))
	}
	if age := now.Sub(time.Unix(0, a.probeOK.Load())); age > staleSelfProbe {
		why := "no answer"
		if err := a.probeErr.Load(); err != nil {
			why = (*err).Error()
		}
		return fmt.Errorf("the control socket has not answered for %v: %s", age.Round(time.Millisecond), why)
	}
	return nil
}

// selfProbe asks the control socket for the agent's status every
// selfProbeInterval, as the CLI would, and records when it last answered
// for Live. One request a second, whatever the number of liveness probes.
func (a *Agent) selfProbe(ctx context.Context, socket string) {
	c := api.Client{SocketPath: socket}
	t := time.NewTicker(selfProbeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, selfProbeTimeout)
		_, err := c.Status(pctx)
		cancel()
		if err == nil {
			a.probeOK.Store(time.Now().UnixNano())
		} else if ctx.Err() == nil {
			a.probeErr.Store(&err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status implements control.Backend.
func (a *Agent) Status(context.Context) api.Agent {
	var plugins []api.Plugin
	if a.sup != nil {
		plugins = a.sup.Snapshot()
	}
	loaded := a.loaded.Load()
	return api.Agent{
		Version: version.Version, PID: os.Getpid(), StartedAt: a.startedAt,
		Started: a.started.Load(), ConfigGeneration: loaded.generation, ConfigLoadedAt: loaded.at, Plugins: plugins, Gops: a.gops,
		IPAM: a.ipamStatus(context.Background()), ControlSocket: a.controlSocket(),
	}
}

// controlSocket is the control socket's state for readiness, from the
// self-probe's last answer (selfProbe): down when it has not answered for
// unreadySelfProbe. Two timestamps, no lock.
func (a *Agent) controlSocket() *api.Component {
	last := a.probeOK.Load()
	if last == 0 {
		return nil // not serving yet
	}
	age := time.Since(time.Unix(0, last))
	if age <= unreadySelfProbe {
		return &api.Component{Up: true}
	}
	why := "no answer"
	if err := a.probeErr.Load(); err != nil {
		why = (*err).Error()
	}
	return &api.Component{Error: fmt.Sprintf("the control socket has not answered the agent's own status request for %v: %s", age.Round(time.Millisecond), why)}
}

// Shutdown implements control.Backend: it begins a graceful stop.
func (a *Agent) Shutdown(context.Context) error {
	// The control handler has logged the request.
	a.stopOnce.Do(func() { close(a.stopCh) })
	return nil
}

// Reload implements control.Backend. It is atomic: the configuration is
// loaded and validated, then every enabled plugin is asked whether it
// accepts its new block (a dry run) before any plugin is changed. If one
// refuses, the reload is refused as a whole with the refusals' file:line:col
// and the running configuration stays - also for plugins restarted later.
func (a *Agent) Reload(ctx context.Context) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	_ = a.notify.Reloading()
	defer func() { _ = a.notify.Ready(a.statusLine()) }()
	cfg, err := loadBounded(ctx, a.opts.Load, reloadLoadTimeout)
	if err != nil {
		a.tel.ConfigReloaded(false)
		return err
	}
	// Bounded: a reload holds cfgMu, so the next reload waits for it, and
	// a stop waits for a SIGHUP reload still running (a.reloading).
	applyCtx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
	defer cancel()
	gen := a.loaded.Load().generation
	specs := specsOf(cfg, gen+1)
	v := a.sup.Validate(applyCtx, specs, Settings(cfg))
	if !v.OK() {
		a.tel.ConfigReloaded(false)
		return fmt.Errorf("%w: nothing was changed, the running configuration (generation %d) stays:\n%w", ErrReloadRefused, gen, v.Err())
	}
	for _, name := range slices.Sorted(maps.Keys(v.Warnings)) {
		for _, w := range v.Warnings[name] {
			a.log.Warn(w, "plugin", name)
		}
	}
	if a.ipam != nil {
		// Pools after the plugins' dry run and before anything is applied:
		// a refused pool change refuses the whole reload, so nothing is
		// half-applied.
		if err := a.ipam.reload(ctx, cfg); err != nil {
			a.tel.ConfigReloaded(false)
			return fmt.Errorf("%w: IPAM: %w", ErrReloadRefused, err)
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
	a.loaded.Store(&configLoad{generation: gen + 1, at: time.Now()})
	a.sup.Apply(applyCtx, specs, Settings(cfg))
	a.tel.ConfigReloaded(true)
	a.log.Info("configuration reloaded", "files", strings.Join(cfg.Files, ","), "generation", gen+1)
	return nil
}

// loadBounded runs config.Load, but returns at timeout or when ctx ends even
// if the reading is stuck (a file system that does not answer): a reload
// then fails and the running configuration stays. The stuck read is left
// behind; it holds one goroutine, not the agent.
func loadBounded(ctx context.Context, opts config.LoadOptions, timeout time.Duration) (*config.Config, error) {
	type result struct {
		cfg *config.Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := config.Load(opts)
		done <- result{cfg, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-t.C:
		return nil, fmt.Errorf("reading the configuration took longer than %s", timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("reading the configuration: %w", ctx.Err())
	}
}

// controlWriteTimeout is the control API's write timeout: longer than the
// longest request it serves - a check (bounded by its slowest plugin), a
// reload (bounded by shutdown_timeout) or a CPU profile
// (api.MaxProfileDuration) - plus room for a loaded machine.
func controlWriteTimeout(cfg *config.Config) time.Duration {
	longest := max(cfg.ShutdownTimeout+reloadLoadTimeout, api.MaxProfileDuration)
	for _, p := range cfg.Plugins {
		longest = max(longest, p.Timeout)
	}
	return longest + 30*time.Second
}

// configLoad is one accepted configuration: generation counts them (1 at
// start), at is when it was loaded.
type configLoad struct {
	generation uint64
	at         time.Time
}

// ErrReloadRefused is wrapped by a reload that a plugin's dry run refused.
var ErrReloadRefused = errors.New("reload refused")

func specsOf(cfg *config.Config, generation uint64) []supervisor.Spec {
	specs := PluginSpecs(cfg)
	for i := range specs {
		specs[i].Generation = generation
	}
	return specs
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
func (a *Agent) Check(ctx context.Context, req api.Check) (api.CheckResult, error) {
	if !a.started.Load() {
		return api.CheckResult{}, fmt.Errorf("%w: still starting", control.ErrNotReady)
	}
	if a.stopping.Load() {
		return api.CheckResult{}, fmt.Errorf("%w: stopping", control.ErrNotReady)
	}
	defer a.work.Begin()()
	return check.Run(ctx, a.sup, a.tel, req), nil
}

// Settings are the agent-wide settings every plugin receives with its config.
func Settings(cfg *config.Config) sdk.AgentSettings {
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
		PidsMax:           int64(cfg.Supervisor.PluginPidsMax),
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
		sp := p.Spec
		sp.Path, sp.Component, _ = p.Binary(cfg.PluginDirs())
		sp.Kind = kind
		specs = append(specs, sp)
	}
	return specs
}
