package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// TestBuiltinsRunFromOneSetBinary: with only the set in plugin_dir (the
// layout make build and the deb ship: spiderpool-plugins, a symlink to the
// agent's executable), the three built-ins run as three processes of the
// agent's own executable, one component each; each has its own restart (a
// kill -9 brings back that one alone) and the checksum pinned in each block
// is the set's, which is the agent's.
func TestBuiltinsRunFromOneSetBinary(t *testing.T) {
	set := filepath.Join(bins.PluginDir, "spiderpool-plugins")
	sum := fileDigest(t, set)
	if agentSum := fileDigest(t, bins.Agent); sum != agentSum {
		t.Fatalf("%s is not the agent's executable: %s against %s", set, sum, agentSum)
	}
	agentExe, err := os.Stat(bins.Agent)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"sysctl-tuner", "ip-conflict", "gateway-detector"}
	cfg := agenttest.QuickRestarts()
	for _, n := range names {
		cfg += fmt.Sprintf("plugin %q {\n  checksum = %q\n}\n", n, sum)
	}
	a := agenttest.Start(t, bins, agenttest.Options{Config: cfg})
	a.WaitReady(agenttest.ReadyTimeout)

	pids := map[string]int{}
	for _, n := range names {
		p := pluginState(t, a, n)
		if p.State != api.Ready || p.Path != set || p.Component != n {
			t.Fatalf("%s: state %s, path %q, component %q; want ready, %q, %q", n, p.State, p.Path, p.Component, set, n)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "), set+" serve "+n; got != want {
			t.Errorf("%s runs as %q, want %q", n, got, want)
		}
		// The same file as the agent: its text is the same page-cache
		// pages in all four processes.
		if exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", p.PID)); err != nil || !os.SameFile(exe, agentExe) {
			t.Errorf("%s (pid %d) does not run the agent's executable %s: %v", n, p.PID, bins.Agent, err)
		}
		pids[n] = p.PID
	}
	if len(agenttest.Children(a.PID())) != 3 {
		t.Errorf("plugin processes %v, want 3", agenttest.Children(a.PID()))
	}

	// Each component restarts alone: the others keep their processes.
	for i, victim := range names {
		if err := syscall.Kill(pids[victim], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(agenttest.ReadyTimeout)
		for {
			p := pluginState(t, a, victim)
			if p.PID != pids[victim] && p.PID != 0 && p.State == api.Ready {
				if p.Restarts != 1 || p.Component != victim {
					t.Errorf("%s after kill -9: restarts %d, component %q; want 1, %q", victim, p.Restarts, p.Component, victim)
				}
				pids[victim] = p.PID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not back %v after kill -9: %+v", victim, agenttest.ReadyTimeout, p)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, other := range names {
			if other == victim {
				continue
			}
			p := pluginState(t, a, other)
			restarts := 0
			if slices.Index(names, other) < i {
				restarts = 1
			}
			if p.PID != pids[other] || p.Restarts != restarts || p.State != api.Ready {
				t.Errorf("killing %s touched %s: pid %d (was %d), restarts %d (want %d), state %s", victim, other, p.PID, pids[other], p.Restarts, restarts, p.State)
			}
		}
	}
	a.WaitReady(agenttest.ReadyTimeout)
}

// TestBuiltinFromTheAgentsPath: a plugin block may name the agent's
// executable itself with a component; it runs as "spiderpool-agent serve
// NAME", which the executable answers as the set (not as its CLI).
func TestBuiltinFromTheAgentsPath(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: fmt.Sprintf(`
plugin "ip-conflict" {
  path      = %q
  component = "ip-conflict"
}
`, bins.Agent)})
	a.WaitReady(agenttest.ReadyTimeout)
	p := pluginState(t, a, "ip-conflict")
	if p.State != api.Ready || p.Path != bins.Agent || p.Component != "ip-conflict" {
		t.Fatalf("ip-conflict: state %s, path %q, component %q; want ready, %q, ip-conflict", p.State, p.Path, p.Component, bins.Agent)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "), bins.Agent+" serve ip-conflict"; got != want {
		t.Errorf("ip-conflict runs as %q, want %q", got, want)
	}
}

// TestSetComponentChecksumMismatchDisablesOnlyThatBlock: a checksum is per
// plugin block even when blocks share the set binary.
func TestSetComponentChecksumMismatchDisablesOnlyThatBlock(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Config: `
plugin "ip-conflict" {
  checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
}
`})
	// Readiness stays 503 (a fail-closed detector is down): wait for the
	// agent itself.
	a.WaitFor("/v1/runtime/liveness", http.StatusOK, agenttest.ReadyTimeout)
	deadline := time.Now().Add(agenttest.ReadyTimeout)
	for {
		ps := pluginsNow(t, a)
		ipc, gw := ps["ip-conflict"], ps["gateway-detector"]
		if ipc.State == api.Disabled && gw.State == api.Ready {
			if !strings.Contains(ipc.LastError, "checksum") || ipc.Component != "ip-conflict" {
				t.Errorf("ip-conflict: %+v; want a checksum error", ipc)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want ip-conflict disabled on its checksum and gateway-detector ready from the same binary: %+v / %+v", ipc, gw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginDocsOfASetComponent: plugin docs (and plugin run) take
// --component to start one component of a set, as the daemon does.
func TestPluginDocsOfASetComponent(t *testing.T) {
	set := filepath.Join(bins.PluginDir, "spiderpool-plugins")
	for _, n := range []string{"ip-conflict", "gateway-detector"} {
		out, errOut, code := agenttest.RunCLI(bins, "", "plugin", "docs", set, "--component", n)
		if code != 0 || !strings.Contains(out, "# "+n) || !strings.Contains(out, "window") {
			t.Errorf("plugin docs %s --component %s: exit %d\n%s\n%s", set, n, code, out, errOut)
		}
	}
	if _, errOut, code := agenttest.RunCLI(bins, "", "plugin", "docs", set, "--component", "nope"); code == 0 {
		t.Errorf("plugin docs of an unknown component succeeded: %s", errOut)
	}
}

// TestFirstStatusListsEveryPlugin: the agent's very first status answer
// lists every configured plugin (starting, if not ready yet): a script that
// asks as soon as the socket answers sees what the agent runs, never an
// empty list.
func TestFirstStatusListsEveryPlugin(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	c := &api.Client{SocketPath: a.Socket}
	deadline := time.Now().Add(agenttest.ReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil {
			var names []string
			for _, p := range st.Plugins {
				names = append(names, p.Name)
			}
			if got, want := strings.Join(names, " "), "gateway-detector ip-conflict sysctl-tuner"; got != want {
				t.Fatalf("the first status lists plugins %q, want %q", got, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status within %v: %v", agenttest.ReadyTimeout, err)
		}
		// The socket appears when it appears: nothing to wait on but time.
		time.Sleep(time.Millisecond)
	}
}
