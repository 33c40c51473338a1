package e2e

import (
	"context"
	"fmt"
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
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// A plugin author's acceptance: a new author runs `plugin new mtu-guard`, fills in
// Check and the config struct (the repository's sdk/examples/mtuguard is
// that filled-in file), passes go test with sdktest, gets a bad value at its
// file:line:col from `config validate`, and a reload with that value is
// refused as a whole and leaves the plugin on its old config, even after a
// kill -9 of the plugin.
func TestNewAuthorMTUGuard(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimSpace(string(root))
	mod := filepath.Join(t.TempDir(), "mtu-guard")
	if out, errOut, code := agenttest.RunCLI(bins, "", "plugin", "new", "mtu-guard", "--dir", mod, "--sdk-dir", filepath.Join(repo, "sdk")); code != 0 {
		t.Fatalf("plugin new: exit %d\n%s%s", code, out, errOut)
	}
	skeleton, err := os.ReadFile(filepath.Join(mod, "mtuguard.go"))
	if err != nil {
		t.Fatal(err)
	}
	filled, err := os.ReadFile(filepath.Join(repo, "sdk", "examples", "mtuguard", "mtuguard.go"))
	if err != nil {
		t.Fatal(err)
	}
	if n := newLines(string(skeleton), string(filled)); n >= 50 {
		t.Errorf("the author wrote %d lines into the skeleton; the goal is under 50", n)
	}
	if err := os.WriteFile(filepath.Join(mod, "mtuguard.go"), filled, 0o644); err != nil {
		t.Fatal(err)
	}
	gocmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gocmd("mod", "tidy")
	gocmd("test", "-count=1", "./...")
	pluginDir := agenttest.TrustedTempDir(t) // the agent refuses plugins under /tmp
	gocmd("build", "-o", filepath.Join(pluginDir, "spiderpool-plugin-mtu-guard"), "./cmd/spiderpool-plugin-mtu-guard")

	config := func(minMTU int) string {
		return fmt.Sprintf(`plugin_dir = %q
plugin "sysctl-tuner" { enabled = false }
plugin "ip-conflict" { enabled = false }
plugin "gateway-detector" { enabled = false }
plugin "mtu-guard" {
  config {
    min_mtu = %d
  }
}
`, pluginDir, minMTU)
	}
	// config validate: the plugin's dry run names the attribute's place.
	bad := filepath.Join(t.TempDir(), "agent.hcl")
	if err := os.WriteFile(bad, []byte(config(70000)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := `agent.hcl:7:15: Invalid value for "min_mtu": 70000 is out of range: 68 to 65535`
	if out, errOut, code := agenttest.RunCLI(bins, "", "config", "validate", "--config-dir", bad); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("config validate with min_mtu = 70000: exit %d\n%s%s\nwant exit 1 and %q", code, out, errOut, want)
	}

	// The agent runs with 1280; a workload interface of MTU 1400 passes.
	work := netlab.NewNS(t, "work")
	netlab.IP(t, work, "link", "add", "w0", "mtu", "1400", "type", "veth", "peer", "name", "w1")
	a := agenttest.Start(t, bins, agenttest.Options{Config: config(1280)})
	a.WaitReady(15 * time.Second)
	verdict := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, code, err := (&api.Client{SocketPath: a.Socket}).Check(ctx, api.CheckRequest{
			Interface: "w0", Netns: "/var/run/netns/" + work, Addresses: []api.AddressRequest{{Address: "10.0.0.7/24"}},
		})
		if err != nil || code != http.StatusOK {
			t.Fatalf("check: %d %v", code, err)
		}
		return string(resp.Verdict)
	}
	if v := verdict(); v != "pass" {
		t.Fatalf("min_mtu 1280, w0 at 1400: %s, want pass", v)
	}
	first := pluginState(t, a, "mtu-guard")

	// SIGHUP and `reload` with 70000: refused as a whole, with the place.
	cfgFile := filepath.Join(a.Dir, "agent.hcl")
	orig, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(strings.Replace(string(orig), "min_mtu = 1280", "min_mtu = 70000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "reload failed; the running configuration stays")
	if !strings.Contains(a.Log(), "reload refused: nothing was changed") || !strings.Contains(a.Log(), `agent.hcl:`) {
		t.Errorf("the refused SIGHUP does not say why and where:\n%s", grep(a.Log(), "reload"))
	}
	out, errOut, code := a.CLI("reload", "--socket", a.Socket)
	if code != 1 || !strings.Contains(errOut, `Invalid value for \"min_mtu\"`) && !strings.Contains(errOut, `Invalid value for "min_mtu"`) {
		t.Errorf("reload with min_mtu = 70000: exit %d\n%s%s", code, out, errOut)
	}
	st := status(t, a)
	if st.ConfigGeneration != 1 {
		t.Errorf("agent config generation %d after refused reloads, want 1", st.ConfigGeneration)
	}
	if p := pluginState(t, a, "mtu-guard"); p.PID != first.PID || p.ConfigGeneration != 1 || p.State != api.Ready {
		t.Errorf("after refused reloads: %+v, want the same process on generation 1", p)
	}

	// kill -9: the plugin comes back with the running config, not 70000.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	netlab.WaitFor(t, "mtu-guard restarted", func() (bool, error) {
		p := pluginState(t, a, "mtu-guard")
		return p.PID != 0 && p.PID != first.PID && p.State == api.Ready, nil
	})
	if v := verdict(); v != "pass" {
		t.Errorf("after kill -9: %s, want pass on the running config", v)
	}
	if p := pluginState(t, a, "mtu-guard"); p.ConfigGeneration != 1 {
		t.Errorf("after kill -9 the plugin runs generation %d, want 1", p.ConfigGeneration)
	}

	// A good reload still works: 1500 blocks w0.
	if err := os.WriteFile(cfgFile, []byte(strings.Replace(string(orig), "min_mtu = 1280", "min_mtu = 1500", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := a.CLI("reload", "--socket", a.Socket); code != 0 || !strings.Contains(out, "generation 2") {
		t.Fatalf("reload with min_mtu = 1500: exit %d\n%s%s", code, out, errOut)
	}
	if v := verdict(); v != "block" {
		t.Errorf("min_mtu 1500, w0 at 1400: %s, want block", v)
	}
}

// newLines counts the lines of filled that the skeleton does not have.
func newLines(skeleton, filled string) int {
	have := map[string]int{}
	for _, l := range strings.Split(skeleton, "\n") {
		have[strings.TrimSpace(l)]++
	}
	n := 0
	for _, l := range strings.Split(filled, "\n") {
		l = strings.TrimSpace(l)
		if have[l] > 0 {
			have[l]--
			continue
		}
		if l != "" {
			n++
		}
	}
	return n
}

// plugin new writes modules that build and pass their test as generated,
// for both kinds.
func TestPluginNewSkeletonsPassAsGenerated(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	sdkDir := filepath.Join(strings.TrimSpace(string(root)), "sdk")
	for _, kind := range []string{"detector", "tuner"} {
		t.Run(kind, func(t *testing.T) {
			mod := filepath.Join(t.TempDir(), "my-"+kind)
			if out, errOut, code := agenttest.RunCLI(bins, "", "plugin", "new", "my-"+kind, "--kind", kind, "--dir", mod, "--sdk-dir", sdkDir); code != 0 {
				t.Fatalf("plugin new: exit %d\n%s%s", code, out, errOut)
			}
			for _, args := range [][]string{{"mod", "tidy"}, {"vet", "./..."}, {"test", "-count=1", "./..."}} {
				cmd := exec.Command("go", args...)
				cmd.Dir = mod
				cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			// plugin docs reads the built binary's schema.
			bin := filepath.Join(agenttest.TrustedTempDir(t), "spiderpool-plugin-my-"+kind)
			build := exec.Command("go", "build", "-o", bin, "./cmd/spiderpool-plugin-my-"+kind)
			build.Dir = mod
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			if out, errOut, code := agenttest.RunCLI(bins, "", "plugin", "docs", bin); code != 0 || !strings.Contains(out, "# my-"+kind) || !strings.Contains(out, "Kind "+kind) {
				t.Errorf("plugin docs: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}
