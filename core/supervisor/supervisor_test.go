package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// binaries holds the fixture plugins built once for the package.
var binaries = map[string]string{}

func TestMain(m *testing.M) {
	// Plugin binaries must sit where only root can write (StrictModes).
	dir, err := agenttest.TrustedDir("supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, mode := range []string{"ok", "hang", "crash", "apiv2", "proto2", "mute", "orphan", "logflood", "memhog", "metricflood", "forkbomb", "escape", "childhog"} {
			out := filepath.Join(dir, "faulty-"+mode)
			cmd := exec.Command("go", "build", "-ldflags", "-X main.mode="+mode, "-o", out, "../../test/plugins/faulty")
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build faulty %s: %v\n%s", mode, err, b)
				return 1
			}
			binaries[mode] = out
		}
		return m.Run()
	}()
	os.Exit(code)
}

// recorder is an Observer that remembers what it saw.
type recorder struct {
	mu         sync.Mutex
	restarts   map[string]int
	calls      map[string]int
	samples    map[string][]sdk.Sample
	suppressed map[string]int
}

func newRecorder() *recorder {
	return &recorder{restarts: map[string]int{}, calls: map[string]int{}, samples: map[string][]sdk.Sample{}, suppressed: map[string]int{}}
}

func (r *recorder) PluginState(string, api.PluginState, int) {}
func (r *recorder) PluginRestarted(p string) {
	r.mu.Lock()
	r.restarts[p]++
	r.mu.Unlock()
}
func (r *recorder) PluginCall(p, method string, _ float64, _ error) {
	r.mu.Lock()
	r.calls[p+"/"+method]++
	r.mu.Unlock()
}
func (r *recorder) PluginLogSuppressed(p string, n int) {
	r.mu.Lock()
	r.suppressed[p] += n
	r.mu.Unlock()
}
func (r *recorder) PluginSamples(p string, s []sdk.Sample) {
	r.mu.Lock()
	r.samples[p] = s
	r.mu.Unlock()
}

func testOptions(t *testing.T, obs Observer) Options {
	return Options{
		Logger:         hclog.New(&hclog.LoggerOptions{Name: "agent", Output: testWriter{t}, Level: hclog.Debug}),
		Agent:          sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "debug"},
		HealthInterval: 100 * time.Millisecond,
		Restart:        RestartPolicy{InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Second, StableAfter: time.Minute, Budget: 3},
		Observer:       obs,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func spec(name, mode string) Spec {
	return Spec{Name: name, Enabled: true, Path: binaries[mode], Timeout: 2 * time.Second, FailurePolicy: "fail-closed", Kind: sdk.KindDetector}
}

// start runs specs under testOptions with obs (a fresh recorder when nil).
func start(t *testing.T, obs Observer, specs ...Spec) *Supervisor {
	t.Helper()
	if obs == nil {
		obs = newRecorder()
	}
	return startWith(t, testOptions(t, obs), specs...)
}

// startWith runs specs under opts and stops the supervisor when the test
// ends.
func startWith(t *testing.T, opts Options, specs ...Spec) *Supervisor {
	t.Helper()
	s := New(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.Apply(ctx, specs, s.opts.Agent)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

func pluginState(t *testing.T, s *Supervisor, name string) api.Plugin {
	t.Helper()
	for _, p := range s.Snapshot() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no plugin %q in %+v", name, s.Snapshot())
	return api.Plugin{}
}

// waitFor polls cond until it holds or the timeout passes (test/poll).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, poll.Bool(cond))
}

// gone reports whether pid no longer exists, not even as a zombie.
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func TestStartCheckAndStop(t *testing.T) {
	rec := newRecorder()
	s := start(t, rec, spec("a", "ok"))
	p := pluginState(t, s, "a")
	if p.State != api.Ready || p.PID == 0 || p.Version != "0.0.1-ok" || p.Kind != "detector" {
		t.Fatalf("after Apply: %+v, want ready with pid, version and kind", p)
	}
	res, err := s.Check(context.Background(), "a", sdk.CheckRequest{Interface: "lo"})
	if err != nil || res.Verdict != sdk.VerdictPass {
		t.Fatalf("Check = %+v, %v; want pass", res, err)
	}
	waitFor(t, 2*time.Second, "metrics to be collected", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.samples["a"]) == 1 && rec.samples["a"][0].Name == "faulty_up"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(ctx)
	if !gone(p.PID) {
		t.Errorf("plugin pid %d still exists after Stop", p.PID)
	}
	if _, err := s.Check(context.Background(), "a", sdk.CheckRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Check after Stop = %v, want ErrUnavailable", err)
	}
}

func TestKilledPluginComesBackAfterBackoff(t *testing.T) {
	rec := newRecorder()
	s := start(t, rec, spec("a", "ok"))
	before := pluginState(t, s, "a")
	killed := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the plugin to leave ready", func() bool { return pluginState(t, s, "a").State != api.Ready })
	waitFor(t, 5*time.Second, "the plugin to be ready again", func() bool {
		p := pluginState(t, s, "a")
		return p.State == api.Ready && p.PID != before.PID
	})
	took := time.Since(killed)
	// Jitter is off in testOptions: the first restart waits exactly
	// InitialBackoff, and a start takes well under a second here.
	if took < 200*time.Millisecond || took > 200*time.Millisecond+3*time.Second {
		t.Errorf("back to ready after %v, want InitialBackoff (200ms) plus a start", took)
	}
	after := pluginState(t, s, "a")
	if after.Restarts != 1 || !strings.Contains(after.LastError, "exited") {
		t.Errorf("after restart: %+v, want 1 restart and the exit as last error", after)
	}
	if !gone(before.PID) {
		t.Errorf("the killed plugin %d was not reaped", before.PID)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.restarts["a"] != 1 {
		t.Errorf("observer saw %d restarts, want 1", rec.restarts["a"])
	}
}

func TestHangingCheckEndsAtItsDeadline(t *testing.T) {
	sp := spec("h", "hang")
	sp.Timeout = 300 * time.Millisecond
	s := start(t, nil, sp)
	begin := time.Now()
	_, err := s.Check(context.Background(), "h", sdk.CheckRequest{Interface: "lo"})
	took := time.Since(begin)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "did not answer within its timeout of 300ms") {
		t.Fatalf("Check = %v, want a timeout naming 300ms", err)
	}
	if took < 300*time.Millisecond || took > time.Second {
		t.Errorf("Check returned after %v, want about 300ms", took)
	}
	if p := pluginState(t, s, "h"); p.State != api.Ready {
		t.Errorf("after a hung check the plugin is %s, want ready (its health still answers)", p.State)
	}
}

func TestCrashOnStartSpendsTheBudget(t *testing.T) {
	sp := spec("c", "crash")
	s := New(testOptions(t, nil))
	s.opts.Restart = RestartPolicy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, StableAfter: time.Minute, Budget: 2}
	s.Apply(context.Background(), []Spec{sp}, s.opts.Agent)
	t.Cleanup(func() { s.Stop(context.Background()) })
	waitFor(t, 10*time.Second, "the plugin to be disabled", func() bool { return pluginState(t, s, "c").State == api.Disabled })
	p := pluginState(t, s, "c")
	if p.Restarts != 2 || !strings.Contains(p.Message, "restart budget of 2 spent") || p.LastError == "" {
		t.Errorf("after crashes: %+v, want 2 restarts, budget message and a last error", p)
	}
}

func TestPermanentFailuresDisableOnlyThatPlugin(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(binaries["ok"])
	if err != nil {
		t.Fatal(err)
	}
	wrongSum := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name  string
		spec  Spec
		state api.PluginState
		want  string
	}{
		{"checksum mismatch", Spec{Path: binaries["ok"], Checksum: wrongSum}, api.Disabled, "checksum mismatch for " + binaries["ok"] + ": expected " + wrongSum + ", actual " + sum},
		{"api version", Spec{Path: binaries["apiv2"]}, api.Disabled, "plugin API version 2.0 is newer than the agent's " + sdk.APIVersion + ": upgrade the agent"},
		{"wire protocol", Spec{Path: binaries["proto2"]}, api.Disabled, "speaks another wire protocol (version 2) than this agent (version 1): upgrade the agent"},
		{"missing binary", Spec{Path: filepath.Join(dir, "nope")}, api.Disabled, "does not exist"},
		{"not executable", Spec{Path: notExec}, api.Disabled, "is not executable"},
		{"bad config", Spec{Path: binaries["ok"], Config: sdk.RawConfig{Filename: "/etc/spiderpool/agent.hcl", Body: []byte("\n  delay = \"soon\"\n"), Start: hclPos(12, 20)}}, api.Failed, `/etc/spiderpool/agent.hcl:13:11: Invalid value for "delay"`},
		{"unknown config attribute", Spec{Path: binaries["ok"], Config: sdk.RawConfig{Filename: "a.hcl", Body: []byte("verdct = \"pass\"\n"), Start: hclPos(3, 10)}}, api.Failed, `a.hcl:3:10: Unsupported argument: An argument named "verdct" is not expected here. Did you mean "verdict"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.spec
			bad.Name, bad.Enabled, bad.Timeout, bad.Kind = "bad", true, 2*time.Second, sdk.KindDetector
			s := start(t, nil, bad, spec("good", "ok"))
			p := pluginState(t, s, "bad")
			if p.State != tt.state || !strings.Contains(p.LastError, tt.want) {
				t.Errorf("bad plugin: state %s, last error %q; want %s with %q", p.State, p.LastError, tt.state, tt.want)
			}
			if p.Restarts != 0 {
				t.Errorf("a permanent failure must not be retried, got %d restarts", p.Restarts)
			}
			if g := pluginState(t, s, "good"); g.State != api.Ready {
				t.Errorf("the other plugin is %s, want ready", g.State)
			}
		})
	}
}

func TestApplyReconfiguresWithoutRestart(t *testing.T) {
	s := start(t, nil, spec("a", "ok"), Spec{Name: "b", Path: binaries["ok"], Timeout: time.Second})
	a := pluginState(t, s, "a")
	if b := pluginState(t, s, "b"); b.State != api.Disabled {
		t.Fatalf("b is %s, want disabled", b.State)
	}
	changed := spec("a", "ok")
	changed.Config = sdk.RawConfig{Filename: "x.hcl", Body: []byte(`verdict = "block"`)}
	enabledB := spec("b", "ok")
	s.Apply(context.Background(), []Spec{changed, enabledB}, s.opts.Agent)
	if got := pluginState(t, s, "a"); got.PID != a.PID || got.State != api.Ready {
		t.Errorf("a after a config change: %+v, want the same pid %d and ready", got, a.PID)
	}
	res, err := s.Check(context.Background(), "a", sdk.CheckRequest{})
	if err != nil || res.Verdict != sdk.VerdictBlock {
		t.Errorf("Check after reconfigure = %+v, %v; want block", res, err)
	}
	if b := pluginState(t, s, "b"); b.State != api.Ready {
		t.Errorf("b after enabling: %s, want ready", b.State)
	}
	// A bad config on reload keeps the running process and its old config.
	bad := changed
	bad.Config = sdk.RawConfig{Filename: "x.hcl", Body: []byte(`verdict = 7
delay = "x"`)}
	s.Apply(context.Background(), []Spec{bad}, s.opts.Agent)
	if got := pluginState(t, s, "a"); got.PID != a.PID || !strings.Contains(got.LastError, "x.hcl:2:9") {
		t.Errorf("a after a bad reload: %+v, want same pid and the error", got)
	}
	if res, _ := s.Check(context.Background(), "a", sdk.CheckRequest{}); res.Verdict != sdk.VerdictBlock {
		t.Errorf("after a bad reload the old config must stay, got %v", res.Verdict)
	}
	if _, err := s.get("b"); !errors.Is(err, ErrUnknownPlugin) {
		t.Errorf("b was removed from the specs but is still known: %v", err)
	}
}

func TestDegradedHealthIsReported(t *testing.T) {
	sp := spec("d", "ok")
	sp.Config = sdk.RawConfig{Body: []byte(`health = "degraded"`)}
	s := start(t, nil, sp)
	waitFor(t, 2*time.Second, "degraded", func() bool { return pluginState(t, s, "d").State == api.Degraded })
	p := pluginState(t, s, "d")
	if p.Message != "configured to be degraded" || string(p.Detail) != `{"mode":"ok"}` {
		t.Errorf("degraded plugin: %+v", p)
	}
	if ds := s.Detectors(); len(ds) != 1 || !ds[0].Available {
		t.Errorf("Detectors() = %+v, want d available while degraded", ds)
	}
}

func TestValidateConfigs(t *testing.T) {
	good := spec("good", "ok")
	bad := spec("bad", "ok")
	bad.Config = sdk.RawConfig{Filename: "v.hcl", Body: []byte(`health = 1
verdikt = "x"`), Start: hclPos(5, 3)}
	missing := spec("missing", "ok")
	missing.Path = "/nonexistent/plugin"
	off := spec("off", "ok")
	off.Enabled, off.Path = false, "/nonexistent/too"
	wrong := spec("wrong", "ok")
	wrong.Config = sdk.RawConfig{Filename: "v.hcl", Body: []byte(`verdict = "maybe"`), Start: hclPos(9, 3)}
	res := ValidateConfigs(context.Background(), []Spec{good, bad, missing, off, wrong}, testOptions(t, nil))
	errs := res.Errors
	if len(errs) != 3 {
		t.Fatalf("ValidateConfigs = %v, want errors for bad and missing only", errs)
	}
	if err := errs["bad"]; err == nil || !strings.Contains(err.Error(), `v.hcl:6:1: Unsupported argument: An argument named "verdikt" is not expected here. Did you mean "verdict"?`) {
		t.Errorf("bad: %v", err)
	}
	if err := errs["missing"]; err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing: %v", err)
	}
	// A value that parses but is wrong is found by the plugin's dry run,
	// at its position.
	if err := errs["wrong"]; err == nil || err.Error() != `v.hcl:9:13: Invalid value for "verdict": "maybe" is none of pass, block, skip, error` {
		t.Errorf("wrong: %v", err)
	}
	// The fixture calls itself "faulty": every block is told so.
	if w := res.Warnings["good"]; len(w) != 1 || !strings.Contains(w[0], `calls itself "faulty", but its block is plugin "good"`) {
		t.Errorf("name warnings = %v", res.Warnings)
	}
}

// A reload is checked by every plugin before any changes; a block that a
// plugin refuses at apply time anyway leaves the running config in force,
// also for the process started after a kill -9.
func TestRefusedConfigNeverReachesARestart(t *testing.T) {
	s := start(t, nil)
	good := spec("a", "ok")
	good.Config = sdk.RawConfig{Filename: "x.hcl", Body: []byte(`verdict = "block"`)}
	good.Generation = 1
	s.Apply(context.Background(), []Spec{good}, s.opts.Agent)
	first := pluginState(t, s, "a")
	if first.State != api.Ready || first.ConfigGeneration != 1 {
		t.Fatalf("a: %+v", first)
	}
	bad := good
	bad.Config = sdk.RawConfig{Filename: "x.hcl", Body: []byte(`verdict = "maybe"`), Start: hclPos(4, 1)}
	bad.Generation = 2
	v := s.Validate(context.Background(), []Spec{bad}, s.opts.Agent)
	if err := v.Errors["a"]; err == nil || !strings.HasPrefix(err.Error(), `x.hcl:4:11: Invalid value for "verdict"`) {
		t.Fatalf("Validate = %v, want the refusal at its position", v.Err())
	}
	if got := pluginState(t, s, "a"); got.PID != first.PID {
		t.Fatalf("the dry run on a running plugin restarted it: %+v", got)
	}
	// Applied regardless (as a caller that ignored Validate would): the
	// plugin refuses, keeps generation 1, and so does its restart.
	s.Apply(context.Background(), []Spec{bad}, s.opts.Agent)
	if got := pluginState(t, s, "a"); got.ConfigGeneration != 1 || !strings.Contains(got.LastError, "x.hcl:4:11") {
		t.Errorf("after a refused apply: %+v", got)
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a restarted and ready", func() bool {
		p := pluginState(t, s, "a")
		return p.PID != 0 && p.PID != first.PID && p.State == api.Ready
	})
	res, err := s.Check(context.Background(), "a", sdk.CheckRequest{})
	if err != nil || res.Verdict != sdk.VerdictBlock {
		t.Errorf("after kill -9 the plugin runs %+v, %v; want the running config's block", res, err)
	}
	if got := pluginState(t, s, "a"); got.ConfigGeneration != 1 {
		t.Errorf("generation after restart = %d, want 1", got.ConfigGeneration)
	}
}

func TestPluginThatStopsAnsweringIsRestarted(t *testing.T) {
	sp := spec("m", "mute")
	sp.Timeout = 200 * time.Millisecond
	rec := newRecorder()
	s := New(testOptions(t, rec))
	s.opts.Restart.Budget = 1
	s.Apply(context.Background(), []Spec{sp}, s.opts.Agent)
	t.Cleanup(func() { s.Stop(context.Background()) })
	first := pluginState(t, s, "m").PID
	// The first health poll right after start hangs too, so the plugin never
	// gets past three missed polls (100ms apart, 200ms timeout each).
	waitFor(t, 10*time.Second, "a restart after missed health checks", func() bool {
		p := pluginState(t, s, "m")
		return p.Restarts >= 1 && strings.Contains(p.LastError, "missed 3 health checks in a row")
	})
	if !gone(first) {
		t.Errorf("the wedged plugin %d was not killed", first)
	}
}
