package command

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(args, Env{Stdout: &out, Stderr: &errb, Lookup: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return out.String(), errb.String(), code
}

func TestExitCodesAndMessages(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no.sock")
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, "helth_port = 1\n")
	good := filepath.Join(dir, "good.hcl")
	writeFile(t, good, "health_port = 6000\n")
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		contains string
	}{
		{"no command", nil, nil, ExitUsage, ""},
		{"unknown command", nil, []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{"help of a command", nil, []string{"check", "-h"}, ExitOK, "Usage: spiderpool-agent check"},
		{"unknown flag", nil, []string{"status", "--bogus"}, ExitUsage, "flag provided but not defined: -bogus"},
		{"stray argument", nil, []string{"version", "extra"}, ExitUsage, `unexpected argument "extra"`},
		{"version", nil, []string{"version"}, ExitOK, "plugin API 1.2"},
		{"shutdown without daemon", nil, []string{"shutdown", "--socket", missing}, ExitFail, "no spiderpool-agent answers on " + missing},
		{"status without daemon", nil, []string{"status", "--socket", missing}, ExitFail, "is it running?"},
		{"socket from the environment", map[string]string{"SPIDERPOOL_SOCKET_PATH": missing}, []string{"status"}, ExitFail, missing},
		{"check needs an interface", nil, []string{"check", "--ip", "10.0.0.1/24"}, ExitUsage, "check needs --interface"},
		{"gateway before ip", nil, []string{"check", "--interface", "eth0", "--gateway", "10.0.0.1"}, ExitUsage, "--gateway must follow the --ip"},
		{"two gateways", nil, []string{"check", "--interface", "eth0", "--ip", "10.0.0.5/24", "--gateway", "10.0.0.1", "--gateway", "10.0.0.2"}, ExitUsage, "already has --gateway"},
		{"check without daemon", nil, []string{"check", "--socket", missing, "--interface", "eth0", "--ip", "10.0.0.5/24"}, ExitUsage, "no spiderpool-agent answers"},
		{"metric bad port", nil, []string{"metric", "--port", "70000"}, ExitUsage, "--port 70000 is not a port number"},
		{"metric port 0 is a usage error", nil, []string{"metric", "--port", "0"}, ExitUsage, "--port 0 is not a port number"},
		{"config validate bad file", nil, []string{"config", "validate", "--config-dir", bad}, ExitFail, `bad.hcl:1:1: Unsupported argument: An argument named "helth_port" is not expected here. Did you mean "health_port"?`},
		{"config show with sources", map[string]string{"SPIDERPOOL_LOG_LEVEL": "debug"}, []string{"config", "show", "--config-dir", good}, ExitOK, "good.hcl:1:1"},
		{"config show bad env", map[string]string{"SPIDERPOOL_HEALTH_PORT": "abc"}, []string{"config", "show", "--config-dir", good}, ExitFail, "SPIDERPOOL_HEALTH_PORT"},
		{"daemon bad config", nil, []string{"daemon", "--config-dir", bad}, ExitFail, "Did you mean \"health_port\""},
		{"daemon missing ipam dir", nil, []string{"daemon", "--config-dir", good, "--ipam-config-dir", filepath.Join(dir, "nope")}, ExitFail, "ipam-config-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.contains) {
				t.Errorf("exit %d, want %d; output does not contain %q:\n%s%s", code, tt.code, tt.contains, out, errOut)
			}
		})
	}
}

func TestConfigShowNamesEverySource(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.hcl"), "log_level = \"warn\"\n")
	writeFile(t, filepath.Join(dir, "conf.yml"), "enableGatewayDetection: false\n")
	out, errOut, code := runCLI(t, map[string]string{"SPIDERPOOL_HEALTH_PORT": "6001"}, "config", "show", "--config-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"a.hcl:1:1", "SPIDERPOOL_HEALTH_PORT", "conf.yml:1", "default"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckExit(t *testing.T) {
	tests := []struct {
		verdicts []string
		want     int
	}{
		{[]string{"pass", "pass"}, ExitOK},
		{[]string{"pass", "block"}, ExitFail},
		{[]string{"error", "pass"}, ExitUsage},
		{[]string{"error", "block"}, ExitFail},
	}
	for _, tt := range tests {
		var resp state.CheckResult
		for _, v := range tt.verdicts {
			resp.Addresses = append(resp.Addresses, state.AddressResult{Verdict: state.Verdict(v)})
		}
		if got := checkExit(resp); got != tt.want {
			t.Errorf("checkExit(%v) = %d, want %d", tt.verdicts, got, tt.want)
		}
	}
}

// status shows what the agent knows of each plugin: the generation it runs
// (stale after a reload it could not take), what it says of itself, and a
// tuner's keys from its Status call.
func TestWriteStatus(t *testing.T) {
	st := state.Agent{Version: "v1", PID: 7, Started: true, ConfigGeneration: 3, StartedAt: time.Now(), ConfigLoadedAt: time.Now(),
		Plugins: []state.Plugin{
			{Name: "sysctl-tuner", Kind: "tuner", State: state.Ready, ConfigGeneration: 3, Description: "sets sysctls", Capabilities: []string{"CAP_NET_ADMIN"},
				Tuned: &state.Tuned{Keys: []state.TunedKey{{Key: "net.ipv4.conf.all.forwarding", Desired: "1", Actual: "1", State: "applied"}}}},
			{Name: "mtu-guard", Kind: "detector", State: state.Ready, ConfigGeneration: 2},
		}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"configuration generation 3, loaded ",
		"mtu-guard", "2 (stale)",
		"sysctl-tuner: sets sysctls (needs CAP_NET_ADMIN)",
		"sysctl-tuner keys:", "net.ipv4.conf.all.forwarding  1        1       applied",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

// Without --port, metric scrapes the port the configuration sets.
func TestMetricUsesTheConfiguredPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "spiderpool_test_up 1")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := filepath.Join(t.TempDir(), "agent.hcl")
	writeFile(t, cfg, fmt.Sprintf("metrics {\n  enabled = true\n  port = %d\n}\n", port))
	out, errOut, code := runCLI(t, nil, "metric", "--config-dir", cfg)
	if code != ExitOK || !strings.Contains(out, "spiderpool_test_up 1") {
		t.Errorf("metric with metrics.port = %d: exit %d\n%s%s", port, code, out, errOut)
	}
}

// A built-in missing from plugin_dir is a warning that says what it costs;
// the configuration itself is valid.
func TestConfigValidateWarnsOfAMissingBuiltin(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.hcl")
	writeFile(t, cfg, fmt.Sprintf("plugin_dir = %q\nplugin \"gateway-detector\" { enabled = false }\n", dir+":"+filepath.Join(dir, "vendor")))
	out, errOut, code := runCLI(t, nil, "config", "validate", "--config-dir", cfg)
	if code != ExitOK || !strings.Contains(errOut, `warning: plugin "ip-conflict": built-in enabled but not found in plugin_dir (`+dir+":"+filepath.Join(dir, "vendor")+`); the agent would run with it disabled, and under fail-closed every check would be blocked`) ||
		!strings.Contains(errOut, `warning: plugin "sysctl-tuner": built-in enabled but not found`) || strings.Contains(errOut, `"gateway-detector"`) {
		t.Errorf("config validate: exit %d\n%s%s", code, out, errOut)
	}
}

func TestConfigValidateIPAMPools(t *testing.T) {
	cfgDir, poolDir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(cfgDir, "a.hcl"), "plugin \"ip-conflict\" { enabled = false }\nplugin \"gateway-detector\" { enabled = false }\nplugin \"sysctl-tuner\" { enabled = false }\n")
	pools := filepath.Join(poolDir, "p.hcl")
	writeFile(t, pools, "pool \"p\" {\n  subnet = \"10.0.0.0/20\"\n}\n")
	args := []string{"config", "validate", "--config-dir", cfgDir, "--ipam-config-dir", poolDir}
	out, errOut, code := runCLI(t, map[string]string{"SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS": "100"}, args...)
	if code != ExitFail || !strings.Contains(errOut, pools+":1:1") || !strings.Contains(errOut, "4094 addresses, more than max_allocated_ips") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, nil, args...)
	if code != ExitOK || !strings.Contains(out, "1 IPAM pools") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}
