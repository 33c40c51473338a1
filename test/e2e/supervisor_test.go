package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// waitGone fails the test unless the stopped plugin pid has ended within
// 5s; when says after what.
func waitGone(t *testing.T, pid int, when string) {
	t.Helper()
	poll.Until(t, 5*time.Second, fmt.Sprintf("the stopped plugin %d to end %s", pid, when), poll.Bool(func() bool { return !agenttest.Alive(pid) }))
}

// stoppedConflictPlugin starts an agent on config, waits until it is
// ready, and SIGSTOPs its ip-conflict plugin, as a hung plugin: it returns
// the agent and the plugin's state from just before the stop.
func stoppedConflictPlugin(t *testing.T, config string) (*agenttest.Agent, api.Plugin) {
	t.Helper()
	a := agenttest.Start(t, bins, agenttest.Options{Config: config})
	a.WaitReady(agenttest.ReadyTimeout)
	victim := pluginState(t, a, "ip-conflict")
	agenttest.SIGSTOP(t, victim.PID)
	return a, victim
}

// TestStoppedPluginIsReplaced: SIGSTOP of a real plugin under the real
// agent takes the node out of readiness while the plugin is replaced, then
// the agent is ready again with a new process. (The agent used to hang in
// go-plugin's Kill: the plugin stayed "ready" for ever.)
func TestStoppedPluginIsReplaced(t *testing.T) {
	a, victim := stoppedConflictPlugin(t, agenttest.QuickRestarts()+`
plugin "ip-conflict" { timeout = "500ms" }
`)
	stopped := time.Now()
	// 3 health checks of 500ms each, 200ms apart, are missed first.
	a.WaitFor("/v1/runtime/readiness", http.StatusServiceUnavailable, 15*time.Second)
	notReady := time.Since(stopped)
	a.WaitReady(15 * time.Second)
	back := time.Since(stopped)
	after := pluginState(t, a, "ip-conflict")
	if after.PID == victim.PID || after.PID == 0 {
		t.Errorf("ip-conflict still runs pid %d, want a new process", after.PID)
	}
	if !strings.Contains(after.LastError, "missed 3 health checks") {
		t.Errorf("last error %q does not say why", after.LastError)
	}
	waitGone(t, victim.PID, "after its replacement")
	// status says which limits the plugins run under.
	// Plugin cgroups are in force where the agent sees a cgroup file
	// system. `ip netns exec`, which starts the agent here, mounts a
	// fresh /sys without them: then the line must say so.
	want := "memory 1024 MiB (RLIMIT_DATA per process; GOMEMLIMIT 921 MiB); processes unlimited (256 wanted, no pids cgroup); tree kill by process group and environment mark [no cgroup ("
	if mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", a.PID())); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(mi), " - cgroup2 ") || strings.Contains(string(mi), " - cgroup ") {
		want = "memory 1024 MiB (cgroup, whole tree; RLIMIT_DATA per process; GOMEMLIMIT 921 MiB); processes 256 (cgroup pids.max); tree kill by cgroup [cgroup v"
	}
	if !strings.HasPrefix(after.Limits, want) || !strings.HasSuffix(after.Limits, "]; log 100 lines/s, burst 500") {
		t.Errorf("plugin limits %q, want the defaults: %s...", after.Limits, want)
	}
	if out, errOut, _ := a.CLI("status", "--socket", a.Socket); !strings.Contains(out, "plugin limits: memory 1024 MiB") {
		t.Errorf("status does not show the plugin limits:\n%s%s", out, errOut)
	}
	t.Logf("readiness 503 %v after SIGSTOP, ready again after %v", notReady, back)
}

// TestSIGTERMWithAStoppedPlugin: the agent stops within shutdown_timeout
// (plus the bounded tree kill) even when a plugin cannot answer, and the
// stopped plugin is killed.
func TestSIGTERMWithAStoppedPlugin(t *testing.T) {
	a, victim := stoppedConflictPlugin(t, `
shutdown_timeout = "2s"
plugin "ip-conflict" { timeout = "10s" }
`)
	begin := time.Now()
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, exited := a.ExitCode(12 * time.Second)
	took := time.Since(begin)
	if !exited {
		t.Fatalf("the agent did not exit 12s after SIGTERM with shutdown_timeout 2s")
	}
	if code != 0 {
		t.Errorf("exit code %d", code)
	}
	// shutdown_timeout, then the tree kill; room for a loaded machine.
	if took > 5*time.Second {
		t.Errorf("stopped in %v, want shutdown_timeout (2s) plus a little", took)
	}
	waitGone(t, victim.PID, "after the agent exited")
	t.Logf("agent exited %v after SIGTERM with a stopped plugin", took)
}

// TestOrphansEndWithTheirPlugin: a plugin that starts a setsid child and
// dies leaves no process behind, over its restarts and after the agent
// stops. (One orphan per restart survived.)
func TestOrphansEndWithTheirPlugin(t *testing.T) {
	token := fmt.Sprintf("FAULTY_TEST_TOKEN=orphan-%d-%d", os.Getpid(), time.Now().UnixNano())
	exe := bins.Faulty["orphan"]
	a := agenttest.Start(t, bins, agenttest.Options{Env: []string{token}, Config: agenttest.QuickRestarts() + fmt.Sprintf(agenttest.DetectorsOff+`plugin "orphan" { path = %q }
`, bins.Faulty["orphan"])})
	t.Cleanup(func() {
		for _, pid := range agenttest.Marked(exe, token) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	a.WaitFor("/v1/runtime/startup", http.StatusOK, agenttest.ReadyTimeout)
	most := 0
	deadline := time.Now().Add(60 * time.Second)
	for pluginState(t, a, "orphan").State != "disabled" {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan plugin did not spend its restart budget in 60s: %+v", pluginState(t, a, "orphan"))
		}
		most = max(most, len(agenttest.Marked(exe, token)))
		time.Sleep(20 * time.Millisecond)
	}
	if most > 2 {
		t.Errorf("up to %d processes of the plugin alive at once, want at most 2 (the plugin and its child)", most)
	}
	if p := pluginState(t, a, "orphan"); p.Restarts != 3 {
		t.Errorf("%d restarts, want 3", p.Restarts)
	}
	end := time.Now().Add(5 * time.Second)
	for len(agenttest.Marked(exe, token)) > 0 {
		if time.Now().After(end) {
			t.Fatalf("orphans alive 5s after the plugin was disabled: %v", agenttest.Marked(exe, token))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Stop()
	if left := agenttest.Marked(exe, token); len(left) > 0 {
		t.Errorf("processes left after the agent stopped: %v", left)
	}
}

// socketDirs returns the socket directory go-plugin gave each live plugin
// of the agent with pid agent (PLUGIN_UNIX_SOCKET_DIR in its environment).
func socketDirs(t *testing.T, agent int) (plugins []int, dirs []string) {
	t.Helper()
	plugins, dirs = agenttest.PluginSocketDirs(agent)
	if len(dirs) == 0 {
		t.Fatalf("no plugin of agent %d has a socket directory", agent)
	}
	return plugins, dirs
}

// TestKilledAgentsPluginSocketsAreSwept: kill -9 of an agent and its
// plugins left their socket directories in the temporary directory for
// ever; the next agent removes them, and leaves a live agent's alone.
func TestKilledAgentsPluginSocketsAreSwept(t *testing.T) {
	// A short path of its own: a unix socket path has at most 107 bytes,
	// and t.TempDir()'s would leave go-plugin no room.
	tmp, err := os.MkdirTemp("/tmp", "t22f-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	env := []string{"TMPDIR=" + tmp}
	live := agenttest.Start(t, bins, agenttest.Options{Env: env})
	doomed := agenttest.Start(t, bins, agenttest.Options{Env: env})
	live.WaitReady(agenttest.ReadyTimeout)
	doomed.WaitReady(agenttest.ReadyTimeout)
	_, liveDirs := socketDirs(t, live.PID())
	plugins, doomedDirs := socketDirs(t, doomed.PID())

	for _, pid := range append(plugins, doomed.PID()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-doomed.Done()
	for _, pid := range plugins {
		waitGone(t, pid, "after kill -9")
	}
	for _, d := range doomedDirs {
		if _, err := os.Lstat(d); err != nil {
			t.Fatalf("the killed plugin's socket directory %s is gone before any sweep (%v): the test proves nothing", d, err)
		}
	}

	next := agenttest.Start(t, bins, agenttest.Options{Env: env})
	next.WaitReady(agenttest.ReadyTimeout)
	for _, d := range doomedDirs {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("the killed agent's plugin socket directory %s is still there after the next start (%v)", d, err)
		}
	}
	for _, d := range liveDirs {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			t.Errorf("the live agent's plugin socket directory %s was touched: %v", d, err)
		}
	}
	if ok, why := status(t, live).Ready(); !ok {
		t.Errorf("the live agent is not ready after the other's start: %v", why)
	}
	// A plugin killed alone is replaced; its directory goes with it.
	victims, before := socketDirs(t, next.PID())
	_ = syscall.Kill(victims[0], syscall.SIGKILL)
	waitGone(t, victims[0], "after kill -9")
	poll.Until(t, 30*time.Second, "the killed plugin's socket directory to be removed", poll.Bool(func() bool {
		_, err := os.Lstat(before[0])
		return os.IsNotExist(err)
	}))
}
