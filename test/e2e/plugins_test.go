package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

func TestKilledPluginComesBack(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: agenttest.QuickRestarts()})
	a.WaitReady(agenttest.ReadyTimeout)
	victim := pluginState(t, a, "ip-conflict")
	killed := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Readiness goes 503, naming the plugin, and comes back to 200.
	a.WaitFor("/v1/runtime/readiness", http.StatusServiceUnavailable, 30*time.Second)
	code, hb := getHealth(t, a, "/v1/runtime/readiness")
	if code == http.StatusServiceUnavailable && (len(hb.WaitingFor) != 1 || hb.WaitingFor[0] != "ip-conflict") {
		t.Errorf("readiness 503 names %v, want [ip-conflict]", hb.WaitingFor)
	}
	a.WaitReady(agenttest.ReadyTimeout)
	back := time.Since(killed)
	// The first restart waits restart_initial_backoff minus up to 20% jitter.
	// The upper bound only says "restarted, not abandoned": a start of
	// -race plugins on a loaded machine takes seconds.
	if back < 240*time.Millisecond || back > 30*time.Second {
		t.Errorf("back to ready after %v; want the 300ms backoff (less jitter) plus a start", back)
	}
	after := pluginState(t, a, "ip-conflict")
	if after.PID == victim.PID || after.Restarts != 1 || after.State != api.Ready {
		t.Errorf("after the kill: %+v", after)
	}
	if agenttest.Alive(victim.PID) {
		t.Errorf("killed plugin %d is still there (a zombie?)", victim.PID)
	}
	t.Logf("ip-conflict back to ready %v after kill -9", back)
}

func TestKilledAgentLeavesNoPlugin(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: `plugin "denylist" {}`})
	a.WaitReady(agenttest.ReadyTimeout)
	plugins := agenttest.Children(a.PID())
	if len(plugins) != 4 {
		t.Fatalf("%d plugin processes, want 4", len(plugins))
	}
	if err := a.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.Done()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range plugins {
		for agenttest.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("plugin %d outlived the agent's SIGKILL by 5s", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestHangingDetectorEndsAtItsTimeout(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf(agenttest.DetectorsOff+`plugin "hang" {
  path    = %q
  timeout = "300ms"
}
plugin "hang-open" {
  path           = %q
  timeout        = "300ms"
  failure_policy = "fail-open"
}
`, bins.Faulty["hang"], bins.Faulty["hang"])})
	a.WaitReady(agenttest.ReadyTimeout)
	start := time.Now()
	resp := checkVia(t, a, "lo", "192.0.2.7/24")
	took := time.Since(start)
	// The hanging plugin never answers: without its 300ms timeout the
	// check would wait for ever. 10s leaves room for a loaded machine.
	if took > 10*time.Second {
		t.Errorf("check took %v with 300ms detector timeouts", took)
	}
	byName := map[string]string{}
	for _, d := range resp.Addresses[0].Detectors {
		byName[d.Name] = string(d.Verdict) + ": " + d.Reason
	}
	if !strings.HasPrefix(byName["hang"], "error: ") || !strings.Contains(byName["hang"], "did not answer within its timeout of 300ms") {
		t.Errorf("fail-closed hang: %q", byName["hang"])
	}
	if !strings.HasPrefix(byName["hang-open"], "skip: skipped (failure_policy fail-open)") {
		t.Errorf("fail-open hang: %q", byName["hang-open"])
	}
	if resp.Verdict != "block" {
		t.Errorf("verdict %q: a fail-closed detector that timed out must block", resp.Verdict)
	}
	if code, _, _ := a.Get(a.Health, "/v1/runtime/liveness"); code != http.StatusOK {
		t.Errorf("liveness %d after hung checks", code)
	}
}

func TestBrokenThirdPartyPluginsLeaveTheRestRunning(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := agenttest.Start(t, bins, agenttest.Options{Config: agenttest.QuickRestarts() + fmt.Sprintf(`
plugin "crash"    { path = %q }
plugin "pinned"   {
  path     = %q
  checksum = "sha256:%s"
}
plugin "newer"    { path = %q }
plugin "missing"  { path = %q }
plugin "notexec"  { path = %q }
plugin "badconf"  {
  path = %q
  config {
    verdict = "pass"
    delay   = "soon"
  }
}
`, bins.Faulty["crash"], bins.Faulty["ok"], strings.Repeat("ab", 32), bins.Faulty["apiv2"], filepath.Join(dir, "nope"), notExec, bins.Faulty["ok"])})
	a.WaitFor("/v1/runtime/startup", http.StatusOK, agenttest.ReadyTimeout)
	// The built-ins are ready; the broken plugins end disabled or failed.
	deadline := time.Now().Add(60 * time.Second)
	want := map[string]struct {
		state api.PluginState
		text  string
	}{
		"crash":   {api.Disabled, "restart budget of 3 spent"},
		"pinned":  {api.Disabled, "checksum mismatch for " + bins.Faulty["ok"] + ": expected sha256:abab"},
		"newer":   {api.Disabled, "upgrade the agent"},
		"missing": {api.Disabled, "does not exist"},
		"notexec": {api.Disabled, "is not executable"},
		"badconf": {api.Failed, "agent.hcl:23:15: Invalid value for \"delay\""},
	}
	for name, w := range want {
		for {
			p := pluginState(t, a, name)
			if p.State == w.state {
				if !strings.Contains(p.LastError+" "+p.Message, w.text) {
					t.Errorf("%s: %s with %q / %q, want it to say %q", name, p.State, p.Message, p.LastError, w.text)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s (%s %s), want %s", name, p.State, p.Message, p.LastError, w.state)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, name := range []string{"sysctl-tuner", "ip-conflict", "gateway-detector"} {
		if p := pluginState(t, a, name); p.State != api.Ready {
			t.Errorf("built-in %s is %s", name, p.State)
		}
	}
	// The failed one holds readiness back and is named; disabled ones do not.
	code, hb := getHealth(t, a, "/v1/runtime/readiness")
	if code != http.StatusServiceUnavailable || strings.Join(hb.WaitingFor, ",") != "badconf" {
		t.Errorf("readiness %d waiting for %v, want 503 naming badconf only", code, hb.WaitingFor)
	}
	stdout, _, _ := a.CLI("status", "--socket", a.Socket)
	for name := range want {
		if !strings.Contains(stdout, name) {
			t.Errorf("status does not list %s:\n%s", name, stdout)
		}
	}
}

func TestExamplePluginInTheRealAgent(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: `
metrics { enabled = true }
plugin "denylist" {
  config {
    deny   = ["192.0.2.0/29"]
    reason = "BMC range"
  }
}
`})
	a.WaitReady(agenttest.ReadyTimeout)
	resp := checkVia(t, a, "lo", "192.0.2.5/24")
	var found bool
	for _, d := range resp.Addresses[0].Detectors {
		if d.Name == "denylist" {
			found = true
			if d.Verdict != "block" || !strings.Contains(d.Reason, "192.0.2.5 is inside 192.0.2.0/29: BMC range") {
				t.Errorf("denylist said %s: %s", d.Verdict, d.Reason)
			}
		}
	}
	if !found {
		t.Fatalf("no denylist result in %+v", resp)
	}
	// Its metrics reach the metrics port under the agent's namespace...
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body, _ := a.Get(5711, "/metrics")
		if strings.Contains(string(body), `spiderpool_denylist_blocked_total{plugin="denylist"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("denylist metrics never arrived:\n%s", grep(string(body), "denylist"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ...and its log lines appear under its name.
	if !strings.Contains(a.Log(), "spiderpool-agent.plugin.denylist: configured") {
		t.Errorf("the plugin's log line is not under its name:\n%s", grep(a.Log(), "denylist"))
	}
}

// A plugin author with only sdk/ and the example writes a detector in a
// module of their own, builds it, drops it into plugin_dir and pins it.
func TestThirdPartyPluginFromASeparateModule(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimSpace(string(root))
	mod := t.TempDir()
	files := map[string]string{
		// One require line: the sdk module (the replace stands in for a
		// published sdk/vX.Y.Z tag).
		"go.mod": fmt.Sprintf("module example.com/rackguard\n\ngo 1.26.0\n\nrequire github.com/spiderpool-agent/spiderpool-agent/sdk v0.0.0\n\nreplace github.com/spiderpool-agent/spiderpool-agent/sdk => %s\n", filepath.Join(repo, "sdk")),
		"main.go": `package main

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

type config struct {
	Last string ` + "`hcl:\"last_octet,optional\"`" + `
}

type guard struct {
	sdk.Base
	cfg config
}

func (g *guard) Info() sdk.Info {
	return sdk.Info{Name: "rackguard", Kind: sdk.KindDetector, Version: "1.0.0", APIVersion: sdk.APIVersion}
}
func (g *guard) ConfigSchema() sdk.Schema { return sdk.MustSchemaOf(&config{}) }
func (g *guard) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	return req.Config.Decode(&g.cfg)
}
func (g *guard) Check(_ context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	a := req.Address.Addr().As4()
	if fmt.Sprint(a[3]) == g.cfg.Last {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: "reserved last octet"}, nil
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass}, nil
}

func main() { sdk.Serve(func(hclog.Logger) sdk.Plugin { return &guard{} }) }
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := os.ReadFile(filepath.Join(repo, "sdk", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	pluginDir := agenttest.TrustedTempDir(t)
	if err := os.Symlink(filepath.Join(bins.PluginDir, "spiderpool-plugins"), filepath.Join(pluginDir, "spiderpool-plugins")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(pluginDir, "spiderpool-plugin-rackguard")
	build := exec.Command("go", "build", "-mod=mod", "-o", out, ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the third-party plugin: %v\n%s", err, b)
	}
	digest := fileDigest(t, out)
	a := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf(`
plugin_dir = %q
metrics { enabled = true }
plugin "rackguard" {
  checksum = %q
  config { last_octet = "254" }
}
`, pluginDir, digest)})
	a.WaitReady(agenttest.ReadyTimeout)
	if p := pluginState(t, a, "rackguard"); p.State != api.Ready || p.Version != "1.0.0" {
		t.Fatalf("rackguard: %+v", p)
	}
	if resp := checkVia(t, a, "lo", "192.0.2.254/24"); resp.Verdict != "block" {
		t.Errorf("rackguard did not block .254: %+v", resp)
	}
	_, body, _ := a.Get(a.Health, "/v1/runtime/readiness")
	if !strings.Contains(string(body), `"name": "rackguard"`) && !strings.Contains(string(body), `"name":"rackguard"`) {
		t.Errorf("readiness does not name rackguard:\n%s", body)
	}
	// kill -9 brings it back.
	pid := pluginState(t, a, "rackguard").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.WaitFor("/v1/runtime/readiness", http.StatusServiceUnavailable, 30*time.Second)
	a.WaitReady(agenttest.ReadyTimeout)
	if p := pluginState(t, a, "rackguard"); p.PID == pid || p.Restarts != 1 {
		t.Errorf("after kill -9: %+v", p)
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func TestPluginWritingToStdoutIsReported(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf(agenttest.DetectorsOff+`plugin "loud" { path = %q }
`, bins.Faulty["stdout"])})
	a.WaitReady(agenttest.ReadyTimeout)
	waitLog(t, a, `spiderpool-agent.plugin.loud: plugin wrote to stdout, which is reserved; use the logger: output="hello from a plugin that should not print"`)
	if p := pluginState(t, a, "loud"); p.State != api.Ready {
		t.Errorf("loud is %s; a stray print must not break the plugin", p.State)
	}
}
