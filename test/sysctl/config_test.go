package sysctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// configureInProcess configures an in-process plugin after checking that
// the block points proc_sys_root into a temporary directory: in this
// process /proc/sys is the host's, which no test may touch.
func configureInProcess(t *testing.T, p *sysctltuner.Plugin, raw sdk.RawConfig, agent sdk.AgentSettings) error {
	t.Helper()
	cfg := sysctltuner.Config{ProcSysRoot: "/proc/sys"}
	if err := raw.Decode(&cfg); err == nil {
		tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
		if !strings.HasPrefix(filepath.Clean(cfg.ProcSysRoot), tmp) {
			t.Fatalf("test bug: proc_sys_root %q is not under %s; refusing to configure an in-process plugin", cfg.ProcSysRoot, tmp)
		}
	}
	return p.Configure(context.Background(), sdk.ConfigureRequest{Config: raw, Agent: agent})
}

// writeFiles writes files into a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string { return tunertest.Tree(t, files) }

// sysTree is a sysctl tree like the initial namespace's.
func sysTree(t *testing.T) string {
	t.Helper()
	files := map[string]string{}
	for _, k := range hostKeys {
		files[k] = "0\n"
	}
	return writeFiles(t, files)
}

// TestAgentConfigTurnsTunerOff: the two documented ways to turn tuning
// off, read by the agent's own config loader.
func TestAgentConfigTurnsTunerOff(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"default", nil, true},
		{"hcl enabled = false", map[string]string{"agent.hcl": "plugin \"sysctl-tuner\" {\n  enabled = false\n}\n"}, false},
		{"conf.yml tuneSysctlConfig: false", map[string]string{"conf.yml": "tuneSysctlConfig: false\n"}, false},
		{"conf.yml tuneSysctlConfig: true", map[string]string{"conf.yml": "tuneSysctlConfig: true\n"}, true},
		{"hcl over conf.yml", map[string]string{"conf.yml": "tuneSysctlConfig: false\n", "agent.hcl": "plugin \"sysctl-tuner\" {\n  enabled = true\n}\n"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(config.LoadOptions{ConfigDir: writeFiles(t, tt.files)})
			if err != nil {
				t.Fatal(err)
			}
			p := c.Plugin(sysctltuner.Name)
			if p == nil || p.Enabled != tt.want {
				t.Errorf("plugin %q: %+v, want enabled=%v", sysctltuner.Name, p, tt.want)
			}
		})
	}
}

// TestAgentConfigBlock: the plugin's config { } block as the agent's loader
// extracts it from an HCL file, with the family switches of a conf.yml:
// good blocks configure the plugin, bad ones are rejected naming the
// operator's file, line and column.
func TestAgentConfigBlock(t *testing.T) {
	root := sysTree(t)
	good := fmt.Sprintf(`log_level = "info"

plugin "sysctl-tuner" {
  config {
    proc_sys_root      = %q
    reconcile_interval = "0s"
    drop               = ["net.ipv4.neigh.default.gc_thresh3"]
    set = {
      "net/ipv4/conf/eth0.100/rp_filter" = "0"
    }
  }
}
`, root)
	c, err := config.Load(config.LoadOptions{ConfigDir: writeFiles(t, map[string]string{
		"agent.hcl": good,
		"conf.yml":  "enableIPv6: false\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	p := sysctltuner.New(hclog.NewNullLogger())
	agent := sdk.AgentSettings{EnableIPv4: c.EnableIPv4, EnableIPv6: c.EnableIPv6, LogLevel: c.LogLevel}
	if err := configureInProcess(t, p, c.Plugin(sysctltuner.Name).Config, agent); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	var keys []string
	for _, k := range p.Status(context.Background()).Keys {
		keys = append(keys, k.Key)
	}
	sort.Strings(keys)
	want := []string{"net.ipv4.conf.all.arp_notify", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.all.rp_filter", "net/ipv4/conf/eth0.100/rp_filter"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("keys %v, want %v (IPv6 off by conf.yml, gc_thresh3 dropped)", keys, want)
	}

	bad := strings.Replace(good, `"net/ipv4/conf/eth0.100/rp_filter" = "0"`, `"net/ipv4/conf/eth0.100/rp_filter" = "0"
      "net/../../etc/x"                  = "1"`, 1)
	dir := writeFiles(t, map[string]string{"agent.hcl": bad})
	c, err = config.Load(config.LoadOptions{ConfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = configureInProcess(t, p, c.Plugin(sysctltuner.Name).Config, agent)
	var ce *sdk.ConfigError
	wantPos := filepath.Join(dir, "agent.hcl") + ":10:7: "
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), wantPos) || !strings.Contains(err.Error(), `"net/../../etc/x"`) {
		t.Errorf("Configure(bad) = %v, want a config error at %s", err, wantPos)
	}
	// The rejected block left the good one in force.
	if n := len(p.Status(context.Background()).Keys); n != len(want) {
		t.Errorf("%d keys after a rejected block, want %d", n, len(want))
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestServeGuardRefusesHost: the test binary in serve mode refuses to
// serve outside the namespace it was told to be in, or in the initial
// namespace, so that the plugin can never tune the host from a test.
func TestServeGuardRefusesHost(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	guardHost(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nsInode, err := nsID("/var/run/netns/" + ns.name)
	if err != nil {
		t.Fatal(err)
	}
	// /proc/thread-self, not /proc/self: see hostNS.
	runtime.LockOSThread()
	hostInode, err := nsID("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want, msg string }{
		{"host process, namespace expected", nsInode, "want " + nsInode},
		{"host process, host expected", hostInode, "looks like the initial namespace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), serveEnv+"="+tt.want)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.msg) || !strings.Contains(string(out), "refusing to serve") {
				t.Errorf("serve outside the namespace: %v: %s", err, out)
			}
		})
	}
}
