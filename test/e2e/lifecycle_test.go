package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// The agent's acceptance, as a new user would do it: one HCL file, ports
// and metrics from the environment, ready, metrics that parse and lint,
// shutdown within its bound with the socket gone. How fast the agent gets
// ready is measured by make bench: here three plugins built with -race on a
// busy 2-core machine once took 3s.
func TestDoneWhenCoreScenario(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{
		Config: `log_level = "debug"`,
		Env:    []string{"SPIDERPOOL_HEALTH_PORT=15710", "SPIDERPOOL_ENABLED_METRIC=true", "SPIDERPOOL_METRIC_HTTP_PORT=15711"},
	})
	a.Health = 15710
	t.Logf("ready after %v", a.WaitReady(agenttest.ReadyTimeout))
	families, out := a.Metric(t, 15711)
	for _, name := range []string{"spiderpool_build_info", "spiderpool_uptime_seconds", "spiderpool_plugin_up", "spiderpool_plugin_restarts_total", "spiderpool_config_reloads_total"} {
		if _, ok := families[name]; !ok {
			t.Errorf("metric output lacks %s", name)
		}
	}
	up := families["spiderpool_plugin_up"]
	if up == nil || len(up.GetMetric()) != 3 {
		t.Errorf("spiderpool_plugin_up has %d series, want one per built-in plugin", len(up.GetMetric()))
	}
	problems, err := promlint.New(bytes.NewReader([]byte(out))).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}

	start := time.Now()
	stdout, stderr, code := agenttest.RunCLI(bins, "", "shutdown", "--socket", a.Socket)
	if code != 0 || !strings.Contains(stdout, "has exited") {
		t.Fatalf("shutdown exit %d: %s %s", code, stdout, stderr)
	}
	exit, ok := a.ExitCode(agenttest.StopTimeout)
	if !ok || exit != 0 {
		t.Fatalf("agent exit code %d (exited %v), want 0", exit, ok)
	}
	t.Logf("shutdown took %v", time.Since(start))
	if _, err := os.Stat(a.Socket); !os.IsNotExist(err) {
		t.Errorf("socket %s still exists after shutdown: %v", a.Socket, err)
	}
}

func TestMetricWhenDisabledSaysSo(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	_, stderr, code := a.CLI("metric")
	if code != 1 || !strings.Contains(stderr, "SPIDERPOOL_ENABLED_METRIC") {
		t.Errorf("metric with metrics off: exit %d, stderr %q; want 1 naming SPIDERPOOL_ENABLED_METRIC", code, stderr)
	}
}

func TestSIGTERMStopsEverything(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	plugins := agenttest.Children(a.PID())
	if len(plugins) != 3 {
		t.Fatalf("agent has %d children, want 3 plugins", len(plugins))
	}
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exit, ok := a.ExitCode(agenttest.StopTimeout)
	if !ok || exit != 0 {
		t.Fatalf("exit %d after SIGTERM (exited %v), want 0", exit, ok)
	}
	for _, pid := range plugins {
		if agenttest.Alive(pid) {
			t.Errorf("plugin %d outlived the agent", pid)
		}
	}
	if _, err := os.Stat(a.Socket); !os.IsNotExist(err) {
		t.Errorf("socket still exists: %v", err)
	}
	if !strings.Contains(a.Log(), "stopped") {
		t.Errorf("log does not say stopped:\n%s", a.Log())
	}
}

func TestSecondDaemonOnTheSameSocket(t *testing.T) {
	first := agenttest.Start(t, bins, agenttest.Options{})
	first.WaitReady(agenttest.ReadyTimeout)
	second := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf("socket_path = %q\n", first.Socket)})
	exit, ok := second.ExitCode(agenttest.StopTimeout)
	want := fmt.Sprintf("another spiderpool-agent is running (pid %d)", first.PID())
	if !ok || exit != 1 || !strings.Contains(second.Log(), want) {
		t.Fatalf("second agent: exit %d (exited %v), log:\n%s\nwant exit 1 and %q", exit, ok, second.Log(), want)
	}
	if len(agenttest.Children(second.PID())) != 0 {
		t.Error("the second agent started plugins")
	}
	if code, _, _ := first.Get(first.Health, "/v1/runtime/liveness"); code != http.StatusOK {
		t.Errorf("first agent liveness = %d after the second tried", code)
	}
}

func TestBadConfigExitsWithPosition(t *testing.T) {
	tests := []struct {
		name, config string
		env          []string
		want         string
	}{
		{"unknown attribute", "metrics {\n  enabled = true\n  prot = 1\n}\n", nil, `agent.hcl:5:3: Unsupported argument`},
		{"did you mean", "helth_port = 1\n", nil, `Did you mean "health_port"?`},
		{"bad env", "", []string{"SPIDERPOOL_HEALTH_PORT=abc"}, `SPIDERPOOL_HEALTH_PORT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := agenttest.Start(t, bins, agenttest.Options{Config: tt.config, Env: tt.env})
			exit, ok := a.ExitCode(agenttest.StopTimeout)
			if !ok || exit != 1 || !strings.Contains(a.Log(), tt.want) {
				t.Fatalf("exit %d (exited %v), log:\n%s\nwant exit 1 and %q", exit, ok, a.Log(), tt.want)
			}
			if strings.Contains(a.Log(), "plugin started") {
				t.Error("plugins started on a bad config")
			}
		})
	}
}

func TestSIGHUPReload(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: `
metrics { enabled = true }
plugin "denylist" {
  config { deny = ["192.0.2.0/30"] }
}
`})
	a.WaitReady(agenttest.ReadyTimeout)
	pidOf := func(name string) int {
		for _, p := range status(t, a).Plugins {
			if p.Name == name {
				return p.PID
			}
		}
		return 0
	}
	before := pidOf("denylist")
	cfg := filepath.Join(a.Dir, "agent.hcl")
	orig, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A good change: log level and the plugin's config, applied without a
	// restart of the plugin.
	good := strings.Replace(string(orig), `"192.0.2.0/30"`, `"192.0.2.0/29"`, 1) + "log_level = \"debug\"\n"
	if err := os.WriteFile(cfg, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "configuration reloaded")
	if after := pidOf("denylist"); after != before || after == 0 {
		t.Errorf("denylist pid %d -> %d: a config change must not restart the plugin", before, after)
	}
	resp := checkVia(t, a, "lo", "192.0.2.6/24")
	if resp.Addresses[0].Verdict != "block" {
		t.Errorf("after the reload 192.0.2.6 must be denied: %+v", resp)
	}
	if !strings.Contains(a.Log(), "log level changed") {
		t.Error("the log level change was not applied")
	}
	// A bad file: the running configuration stays.
	if err := os.WriteFile(cfg, []byte(good+"bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "reload failed; the running configuration stays")
	if !strings.Contains(a.Log(), `Unsupported argument; An argument named "bogus"`) && !strings.Contains(a.Log(), `An argument named \"bogus\"`) {
		t.Errorf("the reload error does not name the bad argument:\n%s", a.Log())
	}
	if code, _, _ := a.Get(a.Health, "/v1/runtime/readiness"); code != http.StatusOK {
		t.Errorf("readiness %d after a bad reload", code)
	}
	_, body, _ := a.Get(5711, "/metrics")
	if !strings.Contains(string(body), `spiderpool_config_reloads_total{result="failure"} 1`) || !strings.Contains(string(body), `spiderpool_config_reloads_total{result="success"} 1`) {
		t.Errorf("reload counters wrong:\n%s", grep(string(body), "reloads"))
	}
}

func waitLog(t *testing.T, a *agenttest.Agent, want string) {
	t.Helper()
	poll.Until(t, 30*time.Second, fmt.Sprintf("the log to say %q", want), poll.Bool(func() bool { return strings.Contains(a.Log(), want) }))
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// SIGTERM while checks are in flight: they are answered with their real
// verdicts before the plugins stop.
func TestSIGTERMAnswersInFlightChecks(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf(agenttest.DetectorsOff+`plugin "slow" {
  path = %q
  config {
    delay   = "500ms"
    verdict = "block"
  }
}
`, bins.Faulty["ok"])})
	a.WaitReady(agenttest.ReadyTimeout)
	const n = 8
	type answer struct {
		verdict string
		err     error
	}
	answers := make(chan answer, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, code, err := (&api.Client{SocketPath: a.Socket}).Check(context.Background(),
				api.CheckRequest{Interface: "lo", Addresses: []api.AddressRequest{{Address: fmt.Sprintf("192.0.2.%d/24", i+1)}}})
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d", code)
			}
			verdict := ""
			if err == nil && len(resp.Addresses) == 1 && len(resp.Addresses[0].Detectors) == 1 {
				d := resp.Addresses[0].Detectors[0]
				verdict = string(d.Verdict) + ": " + d.Reason
			}
			answers <- answer{verdict, err}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(a.Log(), "check started") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the checks never reached the plugin:\n%s", a.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if ans := <-answers; ans.err != nil || ans.verdict != "block: faulty says block" {
			t.Errorf("in-flight check: verdict %q, error %v; want the plugin's block", ans.verdict, ans.err)
		}
	}
	if exit, ok := a.ExitCode(agenttest.StopTimeout); !ok || exit != 0 {
		t.Errorf("exit %d (exited %v), want 0", exit, ok)
	}
}
