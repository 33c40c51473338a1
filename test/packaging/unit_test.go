package packaging

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

const unitName = "spiderpool-agent.service"

// maxExposure is the overall exposure level `systemd-analyze security
// --offline=true packaging/spiderpool-agent.service` reported for the unit
// as committed (systemd 252, Debian 12). A change that raises it fails
// TestUnitSecurityExposure; one that lowers it should lower this too.
// 2.6 became 2.8 with Delegate=yes and ProtectControlGroups=no (0.1 each,
// rounded): the plugins' cgroups, which bound their processes and memory
// and end their trees, need a writable, delegated service cgroup.
const maxExposure = 2.8

// unit is a parsed unit file: section -> key -> values, in file order.
type unit map[string]map[string][]string

func parseUnit(t testing.TB, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get is the last value of key in section (the one systemd uses for
// single-valued settings), or "".
func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// words is every space-separated word of every value of key.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// systemdDuration parses a systemd time span of the forms this unit uses:
// "20s", "1min", "500ms" or a bare number of seconds.
func systemdDuration(t testing.TB, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(strings.NewReplacer("min", "m").Replace(s))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

// TestUnitVerify runs `systemd-analyze verify` on the unit in a scratch
// root that holds the host's units and stand-ins for the unit's commands,
// so that it needs no installed package. verify exits 0 even on warnings
// (unknown keys, bad values): any output fails the test.
func TestUnitVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(filepath.Dir(unitDir), 0o755); err != nil {
		t.Fatal(err)
	}
	// The targets the unit refers to (network.target, multi-user.target,
	// sysinit.target by default dependency) come from the host.
	run(t, "", "cp", "-a", "/usr/lib/systemd/system", unitDir)
	data := readRepoFile(t, "packaging/"+unitName)
	if err := os.WriteFile(filepath.Join(unitDir, unitName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, exe := range []string{"/usr/bin/spiderpool-agent", "/bin/kill"} {
		p := filepath.Join(root, exe)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, unitName).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify --root=%s %s: %v\n%s", root, unitName, err, out)
	}
}

// TestUnitSecurityExposure keeps the hardening from regressing: the
// overall exposure level must not rise above maxExposure.
func TestUnitSecurityExposure(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	path := repoFile(t, "packaging/"+unitName)
	limit := maxExposure
	threshold := strconv.Itoa(int(math.Round(limit * 10))) // systemd counts tenths
	cmd := exec.Command(analyze, "security", "--no-pager", "--offline=true", "--threshold="+threshold, path)
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(unitName) + `: ([0-9]+\.[0-9])`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security --offline=true %s printed no exposure level (%v):\n%s", path, err, out)
	}
	score, perr := strconv.ParseFloat(string(m[1]), 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("exposure level %.1f (at most %.1f)", score, maxExposure)
	if score > maxExposure+1e-9 || err != nil {
		var open []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "✗") {
				open = append(open, line)
			}
		}
		t.Fatalf("exposure level %.1f, want at most %.1f (exit: %v); settings still open:\n%s", score, maxExposure, err, strings.Join(open, "\n"))
	}
}

// TestUnitSettings pins what the agent and the package rely on.
func TestUnitSettings(t *testing.T) {
	u := parseUnit(t, repoFile(t, "packaging/"+unitName))
	svc := "Service"
	want := map[string]string{
		"Type":            "notify",
		"NotifyAccess":    "main",
		"ExecStart":       "/usr/bin/spiderpool-agent daemon --config-dir /etc/spiderpool --ipam-config-dir /etc/spiderpool/ipam.d",
		"StateDirectory":  "spiderpool",
		"ExecReload":      "/usr/bin/spiderpool-agent reload",
		"EnvironmentFile": "-/etc/default/spiderpool-agent",
		"KillMode":        "mixed",
		"Restart":         "on-failure",
		"DynamicUser":     "yes",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		// Plugin cgroups: the service's cgroup is the agent's to divide,
		// and writable.
		"Delegate":             "yes",
		"ProtectControlGroups": "no",
	}
	for k, v := range want {
		if got := u.get(svc, k); got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q, want multi-user.target", got)
	}

	// The agent stops its plugins within shutdown_timeout; systemd must
	// wait longer before it kills the cgroup.
	if stop := systemdDuration(t, u.get(svc, "TimeoutStopSec")); stop <= config.DefaultShutdownTimeout {
		t.Errorf("TimeoutStopSec=%v is not longer than the agent's shutdown_timeout %v", stop, config.DefaultShutdownTimeout)
	}
	// TasksMax= is a backstop over the agent and all its plugins: it must
	// leave room for the built-in plugins at their default pids limit.
	if tm, err := strconv.Atoi(u.get(svc, "TasksMax")); err != nil || tm < 4*config.DefaultPluginPidsMax {
		t.Errorf("TasksMax=%q, want a number >= %d (the agent and 3 plugins at plugin_pids_max %d)", u.get(svc, "TasksMax"), 4*config.DefaultPluginPidsMax, config.DefaultPluginPidsMax)
	}
	if wd := u.get(svc, "WatchdogSec"); wd == "" || systemdDuration(t, wd) <= 0 {
		t.Errorf("WatchdogSec=%q: the agent sends WATCHDOG=1 and the unit must ask for it", wd)
	}

	// The default control socket lives in the RuntimeDirectory.
	sockDir := filepath.Dir(strings.Replace(api.DefaultSocketPath, "/var/run/", "/run/", 1))
	if rd := u.get(svc, "RuntimeDirectory"); "/run/"+rd != sockDir {
		t.Errorf("RuntimeDirectory=%q, but the default socket %s lives in %s", rd, api.DefaultSocketPath, sockDir)
	}
	if env := u[svc]["Environment"]; !slices.Contains(env, "GOPS_CONFIG_DIR="+sockDir+"/gops") {
		t.Errorf("Environment=%q: gops needs GOPS_CONFIG_DIR in the RuntimeDirectory (ProtectHome= hides $HOME)", env)
	}

	// What would break a feature.
	for k, bad := range map[string][]string{
		"ProtectKernelTunables": {"yes", "true", "on", "1"}, // the sysctl-tuner writes /proc/sys/net
		"ProcSubset":            {"pid"},                    // hides /proc/sys
		"ProtectProc":           {"invisible", "noaccess"},  // hides /proc/PID/ns/net of workloads
		"PrivateNetwork":        {"yes", "true", "on", "1"}, // the agent works on the host's network
		"PrivateUsers":          {"yes", "true", "on", "1"}, // capabilities would not reach the host
	} {
		if v := u.get(svc, k); slices.Contains(bad, v) {
			t.Errorf("%s=%s breaks the agent", k, v)
		}
	}
	ns := u.get(svc, "RestrictNamespaces")
	if ns != "net" && !(strings.HasPrefix(ns, "~") && !strings.Contains(ns, "net")) && ns != "" && ns != "no" {
		t.Errorf("RestrictNamespaces=%q must allow net: the detectors setns() into workload namespaces", ns)
	}
	families := u.words(svc, "RestrictAddressFamilies")
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"} {
		if !slices.Contains(families, f) {
			t.Errorf("RestrictAddressFamilies=%v lacks %s", families, f)
		}
	}

	// Capabilities: the ambient set is what a non-root agent has; the
	// bounding set must hold it. Every capability a built-in plugin
	// declares must be there.
	bounding, ambient := u.words(svc, "CapabilityBoundingSet"), u.words(svc, "AmbientCapabilities")
	wantCaps := []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}
	slices.Sort(bounding)
	slices.Sort(ambient)
	if !slices.Equal(bounding, wantCaps) || !slices.Equal(ambient, wantCaps) {
		t.Errorf("CapabilityBoundingSet=%v AmbientCapabilities=%v, want both %v", bounding, ambient, wantCaps)
	}
	for _, p := range []interface{ Info() sdk.Info }{sysctltuner.New(nil), ipconflict.New(nil), gatewaydetector.New(nil)} {
		info := p.Info()
		for _, c := range info.Capabilities {
			if !slices.Contains(ambient, c) {
				t.Errorf("plugin %s declares %s, which the unit does not grant", info.Name, c)
			}
		}
	}
}
