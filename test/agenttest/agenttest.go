// Package agenttest runs the real spiderpool-agent binary, with real plugin
// processes, for end-to-end tests and benchmarks. Each agent runs inside a
// fresh network namespace of its own, so that the sysctl-tuner tunes that
// namespace and never the host, and its health and metrics ports cannot
// collide with anything. The test talks to those ports through sockets
// opened inside the namespace, and to the control socket by its path.
package agenttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// Binaries are built once per test binary.
type Binaries struct {
	Dir       string // holds everything below
	Agent     string // spiderpool-agent
	PluginDir string // spiderpool-plugins (a symlink to Agent, which serves the built-ins, as shipped), the denylist example and test/plugins/leasetable (spiderpool-plugin-lease-table)
	// Faulty maps a mode of test/plugins/faulty to its binary.
	Faulty map[string]string
}

// AgentTags are the build tags of the agent's executable, as the Makefile's
// AGENT_TAGS: the tests run what ships.
const AgentTags = "grpcnotrace,nethttpomithttp2"

// RaceEnv, when set (make test sets it), builds the agent and plugins with
// the race detector, so that end-to-end tests catch races in the real
// processes too. Benchmarks leave it unset.
const RaceEnv = "AGENTTEST_RACE"

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// ModuleRoot finds the repository from the calling package's directory:
// where the binaries are built from and the checked-in files are read.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Build compiles the agent, the built-in plugins, the example plugin, the
// lease-table test detector and the faulty test plugins into a temporary directory, once per process. Call
// Cleanup from TestMain to remove it.
func Build() (Binaries, error) {
	buildOnce.Do(func() { built, buildErr = build() })
	return built, buildErr
}

// Cleanup removes what Build made.
func Cleanup() {
	if built.Dir != "" {
		os.RemoveAll(built.Dir)
	}
}

func build() (Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Binaries{}, err
	}
	dir, err := TrustedDir("agenttest-")
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir, Agent: filepath.Join(dir, "spiderpool-agent"), PluginDir: filepath.Join(dir, "plugins"), Faulty: map[string]string{}}
	type target struct{ out, pkg, ldflags, tags string }
	targets := []target{
		{b.Agent, ".", "-X github.com/spiderpool-agent/spiderpool-agent/core/version.Version=test", AgentTags},
		{filepath.Join(b.PluginDir, "spiderpool-plugin-denylist"), "github.com/spiderpool-agent/spiderpool-agent/sdk/examples/denylist/cmd/spiderpool-plugin-denylist", "", ""},
		{filepath.Join(b.PluginDir, "spiderpool-plugin-lease-table"), "./test/plugins/leasetable", "", ""},
	}
	for _, mode := range []string{"ok", "hang", "crash", "apiv2", "stdout", "orphan", "logflood"} {
		out := filepath.Join(dir, "faulty", "faulty-"+mode)
		b.Faulty[mode] = out
		targets = append(targets, target{out, "./test/plugins/faulty", "-X main.mode=" + mode, ""})
	}
	for _, t := range targets {
		args := []string{"build", "-ldflags", t.ldflags, "-tags", t.tags, "-o", t.out}
		if Race() {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, t.pkg)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return Binaries{}, fmt.Errorf("go build %s: %v\n%s", t.pkg, err, out)
		}
	}
	// The built-ins as the package ships them: the agent's own executable,
	// which serves them when run by the set's name, reached through a
	// symlink that the agent's default resolution runs once per built-in.
	if err := os.Symlink(b.Agent, filepath.Join(b.PluginDir, "spiderpool-plugins")); err != nil {
		os.RemoveAll(dir)
		return Binaries{}, fmt.Errorf("link the built-ins' set: %w", err)
	}
	return b, nil
}

// TrustedRoot is where tests put plugin binaries. The agent refuses a
// plugin binary below a directory that anyone but root can write (sshd's
// StrictModes), and that includes the sticky /tmp where t.TempDir and
// os.MkdirTemp put things; this directory is root's, mode 0755, as is
// every directory above it.
const TrustedRoot = "/var/lib/spiderpool-agent-test"

// TrustedDir makes a fresh directory below TrustedRoot, mode 0755, for
// plugin binaries the agent will accept. The caller removes it.
func TrustedDir(prefix string) (string, error) {
	if err := os.MkdirAll(TrustedRoot, 0o755); err != nil {
		return "", fmt.Errorf("trusted test directory: %w", err)
	}
	// MkdirAll keeps an existing directory's mode; make sure.
	if err := os.Chmod(TrustedRoot, 0o755); err != nil {
		return "", fmt.Errorf("trusted test directory: %w", err)
	}
	dir, err := os.MkdirTemp(TrustedRoot, prefix)
	if err != nil {
		return "", fmt.Errorf("trusted test directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("trusted test directory: %w", err)
	}
	return dir, nil
}

// TrustedTempDir is TrustedDir for one test, removed when it ends.
func TrustedTempDir(t testing.TB) string {
	t.Helper()
	dir, err := TrustedDir("test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ShortTempDir is a fresh directory directly below the system's temporary
// directory, removed when the test ends. Unlike t.TempDir's, which nests
// the test's name below a 0700 parent, its paths are short (a unix
// socket's has at most 107 bytes; Podman refuses a long run root), and
// once made 0755 other users reach it.
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Options describe one agent.
type Options struct {
	// Config is the HCL text of the agent's config file. socket_path,
	// plugin_dir and health_port are set by Start unless Config sets them.
	Config string
	// ConfYML, when set, is written as conf.yml beside it.
	ConfYML string
	// Env is added to the agent's environment.
	Env []string
	// Args are added after "daemon --config-dir DIR".
	Args []string
	// Netns runs the agent in an existing namespace (by name) instead of a
	// fresh one.
	Netns string
	// NetnsPath runs the agent in the namespace at this path, forked from
	// an OS thread inside it rather than through `ip netns exec`, so that
	// Started is the agent's own fork (make bench times starts from it);
	// the agent is killed if this process dies. Overrides Netns.
	NetnsPath string
	// Dir reuses a config dir (and so its socket) instead of a new one: the
	// same agent started again once the previous process has exited.
	Dir string
	// HealthPort and GopsPort are written to the config unless it sets
	// them; 0 leaves the agent's defaults (HealthPort, 5710, for Health).
	HealthPort, GopsPort int
}

// Agent is one running agent process.
type Agent struct {
	t         testing.TB
	bins      Binaries
	Netns     string // the namespace's name; empty with Options.NetnsPath
	NetnsPath string // the namespace's path
	Dir       string // config dir
	Config    string // the config file's text as written
	Socket    string
	Health    int
	Cmd       *exec.Cmd
	Started   time.Time // just before the fork
	log       *SyncBuffer
	done      chan struct{}
	exitErr   error
	exited    Exit
}

// Exit is how the agent process ended.
type Exit struct {
	Code   int
	Signal string // the signal that killed it, if one did
	At     time.Time
}

// HealthPort is the health port every agent uses inside its namespace.
const HealthPort = 5710

// Bounds for tests. They prove that something happens (the agent gets
// ready, stops), with room for a loaded 2-core machine where three plugins
// built with -race take seconds to start; how fast is make bench's job.
const (
	// ReadyTimeout bounds an agent's start until readiness 200.
	ReadyTimeout = 60 * time.Second
	// StopTimeout bounds a graceful stop (shutdown_timeout, 10s by default,
	// plus room).
	StopTimeout = 30 * time.Second
)

// Start runs an agent and returns at once; use WaitReady.
func Start(t testing.TB, bins Binaries, opts Options) *Agent {
	t.Helper()
	ns, nsPath := opts.Netns, opts.NetnsPath
	if nsPath != "" {
		ns = ""
	} else {
		if ns == "" {
			ns = netlab.NewNS(t, "agent")
			netlab.IP(t, ns, "link", "set", "lo", "up")
		}
		nsPath = "/var/run/netns/" + ns
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	a := &Agent{t: t, bins: bins, Netns: ns, NetnsPath: nsPath, Dir: dir, Socket: filepath.Join(dir, "agent.sock"), Health: HealthPort, log: &SyncBuffer{}, done: make(chan struct{})}
	if opts.HealthPort != 0 {
		a.Health = opts.HealthPort
	}
	cfg := opts.Config
	for _, kv := range []struct {
		key, value string
		set        bool
	}{
		{"socket_path", fmt.Sprintf("%q", a.Socket), true},
		{"plugin_dir", fmt.Sprintf("%q", bins.PluginDir), true},
		{"health_port", fmt.Sprint(opts.HealthPort), opts.HealthPort != 0},
		{"gops_port", fmt.Sprint(opts.GopsPort), opts.GopsPort != 0},
	} {
		if kv.set && !strings.Contains(cfg, kv.key) {
			cfg = kv.key + " = " + kv.value + "\n" + cfg
		}
	}
	a.Config = cfg
	if err := os.WriteFile(filepath.Join(dir, "agent.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts.ConfYML != "" {
		if err := os.WriteFile(filepath.Join(dir, "conf.yml"), []byte(opts.ConfYML), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if ns != "" {
		args := append([]string{"netns", "exec", ns, bins.Agent, "daemon", "--config-dir", dir}, opts.Args...)
		a.Cmd = exec.Command("ip", args...)
	} else {
		a.Cmd = exec.Command(bins.Agent, append([]string{"daemon", "--config-dir", dir}, opts.Args...)...)
		// The agent dies with this process even if it is killed.
		a.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	a.Cmd.Env = append(CleanEnv(), opts.Env...)
	raceDir := ""
	if Race() {
		// Race reports of the agent and of its plugins (which inherit the
		// environment) land in files, since plugin stderr is not shown.
		raceDir = t.TempDir()
		a.Cmd.Env = append(a.Cmd.Env, "GORACE=log_path="+filepath.Join(raceDir, "race"))
	}
	a.Cmd.Stdout = a.log
	a.Cmd.Stderr = a.log
	var err error
	if ns != "" {
		a.Started, err = time.Now(), a.Cmd.Start()
	} else {
		a.Started, err = StartIn(nsPath, a.Cmd)
	}
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() {
		a.exitErr = a.Cmd.Wait()
		a.exited = Exit{Code: a.Cmd.ProcessState.ExitCode(), At: time.Now()}
		if ws, ok := a.Cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			a.exited.Signal = ws.Signal().String()
		}
		close(a.done)
	}()
	t.Cleanup(func() {
		a.Stop()
		if raceDir != "" {
			reports, _ := filepath.Glob(filepath.Join(raceDir, "race.*"))
			for _, r := range reports {
				b, _ := os.ReadFile(r)
				t.Errorf("data race in the agent or a plugin (%s):\n%s", filepath.Base(r), b)
			}
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.Log())
		}
	})
	return a
}

// StartIn starts cmd inside the network namespace at nsPath (empty: this
// process's own): it forks from an OS thread locked inside the namespace,
// so the child starts there without `ip netns exec` and its mount
// namespace. It returns the time just before the fork.
func StartIn(nsPath string, cmd *exec.Cmd) (time.Time, error) {
	var t0 time.Time
	start := func() error {
		t0 = time.Now()
		return cmd.Start()
	}
	err := netns.Do(nsPath, start) // "" runs start here
	return t0, err
}

// CleanEnv is the test's environment without SPIDERPOOL_ variables (and
// NOTIFY_SOCKET), so that an operator's shell does not leak into a test.
func CleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPIDERPOOL_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return out
}

// Stop ends the agent with SIGTERM (SIGKILL after 15s) if it still runs.
func (a *Agent) Stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.Cmd.Process.Kill()
		<-a.done
	}
}

// Done is closed when the agent process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// ExitCode waits up to timeout for the agent to exit and returns its code.
func (a *Agent) ExitCode(timeout time.Duration) (int, bool) {
	select {
	case <-a.done:
		return a.exited.Code, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Exited is how the agent ended: the zero Exit while it still runs.
func (a *Agent) Exited() Exit {
	select {
	case <-a.done:
		return a.exited
	default:
		return Exit{}
	}
}

// PID is the agent's pid (ip netns exec execs it, so it is the same process).
func (a *Agent) PID() int { return a.Cmd.Process.Pid }

// Log is everything the agent wrote so far.
func (a *Agent) Log() string { return a.log.String() }

// HTTPClient returns a client whose connections are opened inside the
// agent's namespace.
func (a *Agent) HTTPClient() *http.Client {
	return netlab.HTTPClient(a.NetnsPath, 30*time.Second)
}

// Get fetches http://127.0.0.1:port/path inside the agent's namespace.
func (a *Agent) Get(port int, path string) (int, []byte, error) {
	resp, err := a.HTTPClient().Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// WaitFor polls the health endpoint path until it answers want, or fails
// the test after timeout (at once if the agent exits). It returns how long
// that took.
func (a *Agent) WaitFor(path string, want int, timeout time.Duration) time.Duration {
	a.t.Helper()
	start := time.Now()
	last := ""
	// poll.Until fails with runtime.Goexit (or the bench's panic), which
	// runs this: the last answer is what says why.
	defer func() {
		if a.t.Failed() && last != "" {
			a.t.Logf("%s last answered: %s", path, last)
		}
	}()
	poll.Until(a.t, timeout, fmt.Sprintf("%s to answer %d", path, want), func() (bool, error) {
		code, body, err := a.Get(a.Health, path)
		if err == nil && code == want {
			return true, nil
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		select {
		case <-a.done:
			return false, fmt.Errorf("agent exited (%v); last answer: %s\nlog:\n%s", a.exitErr, last, a.Log())
		default:
			return false, nil
		}
	})
	return time.Since(start)
}

// WaitReady waits for readiness 200.
func (a *Agent) WaitReady(timeout time.Duration) time.Duration {
	a.t.Helper()
	return a.WaitFor("/v1/runtime/readiness", http.StatusOK, timeout)
}

// CLI runs the agent binary with args (a client command) in the agent's
// namespace and returns its output and exit code.
func (a *Agent) CLI(args ...string) (stdout, stderr string, code int) {
	if a.Netns == "" {
		cmd := exec.Command(a.bins.Agent, args...)
		cmd.Env = CleanEnv()
		return run(cmd, func() error {
			_, err := StartIn(a.NetnsPath, cmd)
			return err
		})
	}
	return RunCLI(a.bins, a.Netns, args...)
}

// Status is `status --json` of the agent at a.Socket, through its CLI: the
// operator's view, not the API client's.
func (a *Agent) Status() (api.Agent, error) {
	out, errOut, code := a.CLI("status", "--json", "--socket", a.Socket)
	if code != 0 {
		return api.Agent{}, fmt.Errorf("status --json: exit %d: %s", code, errOut)
	}
	var st api.Agent
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return api.Agent{}, fmt.Errorf("status --json: %v\n%s", err, out)
	}
	return st, nil
}

// StatusOf is the status of the agent at socket through the API client,
// failing t when it does not answer within 30s.
func StatusOf(t testing.TB, socket string) api.Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := (&api.Client{SocketPath: socket}).Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// PluginOf is the status of plugin name of the agent at socket; t fails
// when the agent has no such plugin.
func PluginOf(t testing.TB, socket, name string) api.Plugin {
	t.Helper()
	st := StatusOf(t, socket)
	for _, p := range st.Plugins {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no plugin %q in %+v", name, st.Plugins)
	return api.Plugin{}
}

// RunCLI runs the agent binary with args, inside namespace ns when not
// empty.
func RunCLI(bins Binaries, ns string, args ...string) (stdout, stderr string, code int) {
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bins.Agent}, args...)...)
	} else {
		cmd = exec.Command(bins.Agent, args...)
	}
	cmd.Env = CleanEnv()
	return run(cmd, cmd.Start)
}

// RunCLIEnv runs the agent binary with args and exactly the environment env.
func RunCLIEnv(bins Binaries, env []string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(bins.Agent, args...)
	cmd.Env = env
	return run(cmd, cmd.Start)
}

// run starts cmd with start (cmd.Start, or a start inside a namespace)
// and waits for it.
func run(cmd *exec.Cmd, start func() error) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := start()
	if err == nil {
		err = cmd.Wait()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		return out.String(), errb.String() + err.Error(), -1
	}
	return out.String(), errb.String(), 0
}

// SyncBuffer is a bytes.Buffer that a process's output and a test may use
// at once.
type SyncBuffer struct {
	// Max, when above 0, bounds what a chatty process can make the test
	// hold: a write that finds more than Max bytes held drops them first.
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && s.b.Len() > s.Max {
		s.b.Reset()
	}
	return s.b.Write(p)
}

// String is everything written since the last drop (all of it, without
// Max).
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Main is a test package's TestMain for tests that run the agent: it
// removes namespaces earlier runs left, builds the binaries into *bins,
// runs the tests, removes the binaries and returns the exit code.
//
//	func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, &bins)) }
func Main(m *testing.M, bins *Binaries) int { return MainWith(m, bins, nil) }

// MainWith is Main with setup run once the binaries are built, before any
// test: the CNI plugins built beside them, say. An error from setup ends
// the run before any test; the function it returns, when not nil, runs
// after the tests (before the binaries go).
func MainWith(m *testing.M, bins *Binaries, setup func(Binaries) (teardown func(), err error)) int {
	netlab.Sweep()
	defer Cleanup()
	b, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*bins = b
	if setup != nil {
		teardown, err := setup(b)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if teardown != nil {
			defer teardown()
		}
	}
	return m.Run()
}

// MainLazy is the TestMain of packages whose tests build the binaries on
// first use (Build), if at all: namespaces earlier runs left are removed
// first and whatever Build made is removed last.
func MainLazy(m *testing.M) int {
	netlab.Sweep()
	defer Cleanup()
	return m.Run()
}

// Race reports whether RaceEnv asks for race-enabled builds, of the agent
// here and of whatever a test builds beside it (the CNI plugin).
func Race() bool { return os.Getenv(RaceEnv) != "" }
