// Package supervisor runs the agent's plugins as hashicorp/go-plugin
// processes: it launches each enabled plugin once, configures it, watches its
// health, restarts it with backoff when it dies or stops answering, and stops
// it gracefully. Every call into a plugin goes through it, bounded by the
// plugin's timeout, and so is every call into go-plugin: a stop always ends
// in SIGKILL of the plugin's whole process tree in bounded time.
//
// A plugin binary is executed only when it and every directory above it
// can be changed by no one but root or the agent's user (sshd's
// StrictModes), and what runs is the descriptor that was checked and
// hashed (trust.go). Each plugin's output is bounded: log lines by a token
// bucket, memory by RLIMIT_DATA and GOMEMLIMIT (limits.go). Where the node
// lets the agent make cgroups, each plugin instance is born in a cgroup of
// its own that bounds its processes and the memory of its whole tree and
// that no descendant can leave; stopping the plugin empties and removes it
// (cgroup.go). Besides, its orphans are found by an environment mark and
// reaped by the agent as child subreaper (reaper.go).
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Spec is what the supervisor needs to run one plugin.
type Spec struct {
	Name string
	// Enabled false keeps the plugin stopped and shows it as disabled.
	Enabled bool
	// Path is the plugin binary.
	Path string
	// Component, when set, makes Path a plugin set (sdk.Set) run as
	// "PATH serve COMPONENT": still one process, handshake, checksum and
	// restart budget per plugin, only the file is shared.
	Component string
	// Checksum is "sha256:<hex>" or empty.
	Checksum string
	// Timeout bounds each call into the plugin.
	Timeout time.Duration
	// FailurePolicy is "fail-closed" or "fail-open" (detectors only).
	FailurePolicy string
	Config        sdk.RawConfig
	// Kind is what the plugin is expected to be until it says for itself;
	// it decides whether a plugin that never started holds checks back.
	Kind sdk.Kind
	// Generation numbers the agent configuration this spec came from;
	// status shows which one each plugin runs.
	Generation uint64
}

func (s Spec) sameProcess(o Spec) bool {
	return s.Path == o.Path && s.Component == o.Component && s.Checksum == o.Checksum
}

func (s Spec) sameConfig(o Spec) bool {
	return s.Config.Filename == o.Config.Filename && string(s.Config.Body) == string(o.Config.Body) &&
		s.Config.Start == o.Config.Start && s.Timeout == o.Timeout && s.FailurePolicy == o.FailurePolicy
}

// Observer receives what the supervisor sees, for metrics. Implementations
// must not block.
type Observer interface {
	PluginState(plugin string, st api.PluginState, restarts int)
	PluginRestarted(plugin string)
	PluginCall(plugin, method string, seconds float64, err error)
	PluginSamples(plugin string, samples []sdk.Sample)
	// PluginLogSuppressed counts log lines of a plugin dropped by its
	// log rate limit.
	PluginLogSuppressed(plugin string, lines int)
}

// Options configure a Supervisor.
type Options struct {
	Logger hclog.Logger
	Agent  sdk.AgentSettings
	// StartTimeout bounds the process start and handshake.
	StartTimeout time.Duration
	// HealthInterval is how often each plugin's health and metrics are
	// collected. A plugin that misses HealthFailures in a row is restarted.
	HealthInterval time.Duration
	HealthFailures int
	Restart        RestartPolicy
	Observer       Observer
	// OnChange is called after any plugin's state changes. It must not block.
	OnChange func()
	// Limits bound each plugin's memory and log output.
	Limits Limits

	// UserNamed is for commands that run a binary their user named (plugin
	// run, plugin docs, config validate --plugin-dir), not for the daemon:
	// a binary the daemon's owner and mode rule would refuse (a build in
	// /tmp, say) still runs, and the refusal is reported once as a note
	// (Conn.WouldRefuse, a validation warning) instead of an error.
	UserNamed bool

	// testHookOpened runs after a plugin binary was opened and before it is
	// checked and executed.
	testHookOpened func()
	// socketDir holds the plugins' socket directories (makeSocketDir);
	// empty: go-plugin's default, os.TempDir().
	socketDir string
}

// Defaults of Options, also the agent config's defaults for them.
const (
	DefaultStartTimeout   = 10 * time.Second
	DefaultHealthInterval = 2 * time.Second
	DefaultHealthFailures = 3
)

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.HealthFailures == 0 {
		o.HealthFailures = DefaultHealthFailures
	}
	if o.Restart == (RestartPolicy{}) {
		o.Restart = DefaultRestartPolicy
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.OnChange == nil {
		o.OnChange = func() {}
	}
	o.Limits.setDefaults()
}

type nopObserver struct{}

func (nopObserver) PluginState(string, api.PluginState, int)  {}
func (nopObserver) PluginRestarted(string)                    {}
func (nopObserver) PluginCall(string, string, float64, error) {}
func (nopObserver) PluginSamples(string, []sdk.Sample)        {}
func (nopObserver) PluginLogSuppressed(string, int)           {}

// ErrUnavailable is wrapped by calls to a plugin that is not running.
var ErrUnavailable = errors.New("plugin unavailable")

// ErrTimeout is wrapped by calls that ran out of time; it wraps
// ErrUnavailable, since a plugin that does not answer in time is not
// available for that call.
var ErrTimeout = fmt.Errorf("%w: timed out", ErrUnavailable)

// ErrUnknownPlugin is wrapped by calls that name no configured plugin.
var ErrUnknownPlugin = errors.New("unknown plugin")

// Supervisor owns the plugin processes.
type Supervisor struct {
	opts   Options
	reaper *reaper

	mu      sync.Mutex
	agent   sdk.AgentSettings
	plugins map[string]*managed
	stopped bool
}

// New returns a supervisor with nothing running.
func New(opts Options) *Supervisor {
	opts.setDefaults()
	rp := newReaper()
	opts.Limits.cgroup = rp.cgroups
	opts.Logger.Info("plugin limits", "limits", opts.Limits.String())
	if n := rp.cgroups.sweep(func() { rp.reapZombies() }); n > 0 {
		opts.Logger.Warn("ended what an earlier agent left in plugin cgroups", "cgroups", n)
	}
	if n := sweepSocketDirs(opts.Logger); n > 0 {
		opts.Logger.Warn("removed the plugin socket directories of agents that died without stopping", "directories", n)
	}
	opts.socketDir = makeSocketDir(opts.Logger)
	return &Supervisor{opts: opts, reaper: rp, agent: opts.Agent, plugins: map[string]*managed{}}
}

// Apply makes the running plugins match specs: new or newly enabled ones
// start, removed or disabled ones stop, a changed binary restarts its
// plugin, a changed config is sent to the running process. It waits until
// every plugin it started or reconfigured has settled (ready, failed or
// disabled), or ctx ends.
func (s *Supervisor) Apply(ctx context.Context, specs []Spec, agent sdk.AgentSettings) {
	s.Begin(ctx, specs, agent)(ctx)
}

// Begin is Apply up to its wait: when it returns, every plugin of specs is
// in Snapshot and the new ones are starting; settle waits, as Apply does,
// for those it started or reconfigured. Stopping removed plugins and
// reconfiguring changed ones happen in Begin itself (bounded by ctx), so
// that it returns at once only when every plugin is new: the agent's start.
func (s *Supervisor) Begin(ctx context.Context, specs []Spec, agent sdk.AgentSettings) (settle func(context.Context)) {
	type change struct {
		m    *managed
		spec Spec
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return func(context.Context) {}
	}
	agentChanged := agent != s.agent
	s.agent = agent
	wanted := map[string]bool{}
	for _, sp := range specs {
		wanted[sp.Name] = true
	}
	var added []*managed
	var changed []change
	var removed []*managed
	for name, m := range s.plugins {
		if !wanted[name] {
			delete(s.plugins, name)
			removed = append(removed, m)
		}
	}
	for _, sp := range specs {
		if m, ok := s.plugins[sp.Name]; ok {
			changed = append(changed, change{m, sp})
			continue
		}
		m := newManaged(sp, s)
		s.plugins[sp.Name] = m
		added = append(added, m)
	}
	s.mu.Unlock()

	// Work on the plugins without the lock: they call back into s.
	for _, m := range removed {
		m.shutdown(ctx)
	}
	pending := added
	for _, m := range added {
		m.start()
	}
	for _, c := range changed {
		if c.m.update(c.spec, agentChanged) {
			pending = append(pending, c.m)
		}
	}
	return func(ctx context.Context) {
		for _, m := range pending {
			m.waitSettled(ctx)
		}
	}
}

// Stop shuts every plugin down: a Shutdown call bounded by ctx, then the
// process is ended. It returns when all processes are gone.
func (s *Supervisor) Stop(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	ms := make([]*managed, 0, len(s.plugins))
	for _, m := range s.plugins {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.shutdown(ctx)
		}()
	}
	wg.Wait()
	if s.opts.socketDir != "" {
		// Only when empty: another Supervisor of this process may still
		// use it (each plugin's kill removed its own directory below).
		_ = os.Remove(s.opts.socketDir)
	}
}

// Snapshot returns every plugin's state, sorted by name.
func (s *Supervisor) Snapshot() []api.Plugin {
	s.mu.Lock()
	ms := make([]*managed, 0, len(s.plugins))
	for _, m := range s.plugins {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	out := make([]api.Plugin, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Detector names a detector plugin and how to treat it.
type Detector struct {
	Name          string
	FailurePolicy string
	// Available is false when the plugin is not running or not ready.
	Available bool
}

// Detectors lists the enabled detector plugins, sorted by name. A plugin
// that never told its kind (it failed to start) counts as what its Spec
// expects, so that fail-closed can hold checks back on it.
func (s *Supervisor) Detectors() []Detector {
	s.mu.Lock()
	ms := make([]*managed, 0, len(s.plugins))
	for _, m := range s.plugins {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	var out []Detector
	for _, m := range ms {
		sp, p := m.specCopy(), m.snapshot()
		kind := sdk.Kind(p.Kind)
		if kind == "" {
			kind = sp.Kind
		}
		if !sp.Enabled || kind != sdk.KindDetector {
			continue
		}
		out = append(out, Detector{
			Name: sp.Name, FailurePolicy: sp.FailurePolicy,
			Available: p.State == api.Ready || p.State == api.Degraded,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Check runs one detector's check, bounded by the plugin's timeout and ctx.
func (s *Supervisor) Check(ctx context.Context, name string, req sdk.CheckRequest) (sdk.CheckResult, error) {
	m, err := s.get(name)
	if err != nil {
		return sdk.CheckResult{}, err
	}
	var res sdk.CheckResult
	err = m.call(ctx, "Check", func(ctx context.Context, c *sdk.Client) error {
		var err error
		res, err = c.Check(ctx, req)
		return err
	})
	return res, err
}

func (s *Supervisor) get(name string) (*managed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.plugins[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPlugin, name)
	}
	return m, nil
}

func (s *Supervisor) agentSettings() sdk.AgentSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agent
}
