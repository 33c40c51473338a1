package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func TestParseProcCgroupAndMounts(t *testing.T) {
	own := parseProcCgroup([]byte("9:name=systemd:/system.slice/a.service\n8:pids:/system.slice/a.service\n4:memory,foo:/x\n0::/system.slice/a.service\n"))
	if own["pids"] != "/system.slice/a.service" || own["memory"] != "/x" || own["foo"] != "/x" || own[""] != "/system.slice/a.service" {
		t.Errorf("parseProcCgroup = %v", own)
	}
	ms := parseCgroupMounts([]byte(`30 25 0:26 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids
31 25 0:27 /lxc/c1 /sys/fs/cgroup/my\040memory rw - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 25 0:29 / /elsewhere/pids rw - cgroup cgroup rw,pids
`))
	if got := ms["pids"].dir("/system.slice/a.service"); got != "/sys/fs/cgroup/pids/system.slice/a.service" {
		t.Errorf("pids dir = %q (the first mount of a hierarchy wins)", got)
	}
	// A mount of a sub-tree (a container's view): the path is relative
	// to the mount's root.
	if got := ms["memory"].dir("/lxc/c1/agent"); got != "/sys/fs/cgroup/my memory/agent" {
		t.Errorf("memory dir = %q", got)
	}
	if ms["cgroup2"].point != "/sys/fs/cgroup/unified" {
		t.Errorf("cgroup2 mount = %+v", ms["cgroup2"])
	}
}

// TestCgroupCreateLeavesNothingOnError: a cgroup whose limit cannot be
// set (here: a plain directory, with no controller files) is an error
// naming the file, and no directory is left behind.
func TestCgroupCreateLeavesNothingOnError(t *testing.T) {
	pids, mem := t.TempDir(), t.TempDir()
	c := &cgroupSetup{kind: cgroupV1, pids: pids, memory: mem}
	_, err := c.create("p", "1-1", Limits{PidsMax: 10, MemoryMax: 256 << 20})
	if err == nil || !strings.Contains(err.Error(), "pids.max") {
		t.Fatalf("create = %v, want an error naming pids.max", err)
	}
	for _, d := range []string{pids, mem} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s holds %v after a failed create", d, ents)
		}
	}
	// No limits asked: the directories are all it takes, one per
	// hierarchy, and remove takes them away again.
	pc, err := c.create("p", "1-2", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(pids, "spiderpool-plugin-p-1-2"), filepath.Join(mem, "spiderpool-plugin-p-1-2")}
	if !slices.Equal(pc.dirs, want) {
		t.Errorf("cgroup dirs = %v, want %v", pc.dirs, want)
	}
	for _, d := range want {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s after create: %v", d, err)
		}
	}
	if err := pc.remove(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{pids, mem} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s holds %v after remove", d, ents)
		}
	}
}

// TestSweepEndsWhatADeadAgentLeft: a plugin cgroup of an agent that died
// without stopping its plugins is emptied and removed by the next one,
// the escaped process in it included; one of a live agent is left alone.
func TestSweepEndsWhatADeadAgentLeft(t *testing.T) {
	c := detectCgroups()
	if c.kind != cgroupV1 || c.pids == "" {
		t.Fatalf("no v1 pids cgroup here: %s", c.describe())
	}
	// A dead agent: a process that has exited (and been reaped).
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadDir := filepath.Join(c.pids, fmt.Sprintf("spiderpool-plugin-x-y-%d-1", dead.Process.Pid))
	liveDir := filepath.Join(c.pids, fmt.Sprintf("spiderpool-plugin-x-%d-1", os.Getppid()))
	for _, d := range []string{deadDir, liveDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	left := exec.Command("sleep", "600")
	left.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = left.Process.Kill(); _ = left.Wait() })
	if err := writeCgroupFile(deadDir, "cgroup.procs", strconv.Itoa(left.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()
	only := &cgroupSetup{kind: cgroupV1, pids: c.pids}
	if n := only.sweep(nil); n < 1 {
		t.Errorf("sweep removed %d cgroups, want the dead agent's", n)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("the process left in the dead agent's plugin cgroup is alive")
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want it removed", deadDir, err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("the live agent's cgroup: %v", err)
	}
}

// requireCgroups fails the test where this machine offers the agent no
// cgroups: the tests below are about them and must not pass without.
func requireCgroups(t *testing.T, s *Supervisor) {
	t.Helper()
	c := s.reaper.cgroups
	if c.kind == cgroupNone || (c.kind == cgroupV1 && (c.pids == "" || c.memory == "")) || (c.kind == cgroupV2 && c.v2 == "") {
		t.Fatalf("no pids and memory cgroups for plugins here: %s", c.describe())
	}
	t.Logf("cgroups: %s", c.describe())
}

// pluginCgroups lists the cgroup directories of this process's plugins.
func pluginCgroups(s *Supervisor) []string {
	c := s.reaper.cgroups
	var out []string
	for _, d := range []string{c.v2, c.pids, c.memory} {
		if d == "" {
			continue
		}
		m, _ := filepath.Glob(filepath.Join(d, fmt.Sprintf("*plugin-*-%d-*", os.Getpid())))
		out = append(out, m...)
	}
	return out
}

// setToken puts a fresh FAULTY_TEST_TOKEN into the environment the plugins
// inherit and returns its value.
func setToken(t *testing.T) string {
	v := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Setenv("FAULTY_TEST_TOKEN", v)
	return v
}

// TestForkBombIsBounded: a plugin that forks as fast as it can has at most
// PidsMax processes at any time, and the agent and its other plugins are
// unaffected. (Before plugin cgroups nothing bounded it: 2000 children.)
func TestForkBombIsBounded(t *testing.T) {
	token := setToken(t)
	rec := newRecorder()
	opts := testOptions(t, rec)
	sink := &lineSink{needle: "forkbomb done", t: t}
	opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "agent", Output: sink, Level: hclog.Info})
	const limit = 64
	opts.Limits = Limits{PidsMax: limit}
	s := startWith(t, opts, spec("b", "forkbomb"), spec("a", "ok"))
	requireCgroups(t, s)
	most := 0
	waitFor(t, 90*time.Second, "the bomb to spend its 2000 attempts (or die trying)", func() bool {
		most = max(most, len(treeProcs("FAULTY_TEST_TOKEN="+token)))
		rec.mu.Lock()
		restarted := rec.restarts["b"] > 0
		rec.mu.Unlock()
		return len(sink.matched()) > 0 || restarted
	})
	for range 20 { // what is left of it, a while longer
		most = max(most, len(treeProcs("FAULTY_TEST_TOKEN="+token)))
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("at most %d processes of the bomb's tree; %q", most, sink.matched())
	if most > limit {
		t.Errorf("%d processes of the plugin's tree alive at once, want at most plugin_pids_max = %d", most, limit)
	}
	if most < 8 {
		t.Errorf("only %d processes: the bomb did not run", most)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := s.Check(ctx, "a", sdk.CheckRequest{}); err != nil || res.Verdict != sdk.VerdictPass {
		t.Errorf("the other plugin's Check during the bomb = %+v, %v; want pass", res, err)
	}
	s.Stop(ctx)
	if left := treeProcs("FAULTY_TEST_TOKEN=" + token); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
	if cg := pluginCgroups(s); len(cg) > 0 {
		t.Errorf("plugin cgroups left after Stop: %v", cg)
	}
}

// escapedProcs lists the live processes whose argv holds "escaped" and
// token: faulty's escaped grandchildren, which carry no environment mark.
func escapedProcs(token string) []int {
	var out []int
	for _, pid := range procPIDs() {
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("\x00escaped\x00"+token+"\x00")) {
			continue
		}
		if _, st, ok := procStat(pid); ok && st != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// TestEscapedChildIsKilled: a grandchild that left the plugin's
// environment, session and process group is ended when its plugin
// restarts and when the supervisor stops. (The environment mark and the
// process group missed it: it lived on.)
func TestEscapedChildIsKilled(t *testing.T) {
	testEscapedChild(t, nil)
}

// TestEscapedChildIsKilledV2: the same with plugin cgroups on cgroup v2:
// this machine's v2 hierarchy (hybrid, at /sys/fs/cgroup/unified) has no
// pids or memory controller, but CLONE_INTO_CGROUP and cgroup.kill work
// without them.
func TestEscapedChildIsKilledV2(t *testing.T) {
	testEscapedChild(t, v2TestSetup(t, "spiderpool-test"))
}

// TestEscapedChildIsKilledV2NoClone3: the same where clone3 is refused
// (systemd's seccomp filter for RestrictNamespaces= answers ENOSYS): the
// plugin is moved into its cgroup right after it starts.
func TestEscapedChildIsKilledV2NoClone3(t *testing.T) {
	cg := v2TestSetup(t, "spiderpool-test-noclone3")
	cg.noClone3.Store(true)
	testEscapedChild(t, cg)
}

// unifiedV2 is where this machine mounts its cgroup v2 hierarchy (hybrid).
const unifiedV2 = "/sys/fs/cgroup/unified"

// v2TestSetup makes the cgroup <name>-<pid> below unifiedV2, removed when
// the test ends, and returns a v2 setup that puts plugin cgroups in it.
func v2TestSetup(t *testing.T, name string) *cgroupSetup {
	t.Helper()
	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil || !strings.Contains(string(b), " "+unifiedV2+" ") {
		t.Fatalf("no cgroup2 mount at %s: %v", unifiedV2, err)
	}
	parent := filepath.Join(unifiedV2, fmt.Sprintf("%s-%d", name, os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(parent); err != nil {
			t.Error(err)
		}
	})
	return &cgroupSetup{kind: cgroupV2, v2: parent}
}

func testEscapedChild(t *testing.T, cg *cgroupSetup) {
	token := setToken(t)
	rec := newRecorder()
	opts := testOptions(t, rec)
	s := New(opts)
	if cg != nil {
		s.reaper.cgroups = cg
	}
	ctx0, cancel0 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel0()
	s.Apply(ctx0, []Spec{spec("e", "escape")}, s.opts.Agent)
	t.Cleanup(func() { s.Stop(context.Background()) })
	requireCgroups(t, s)
	if cg != nil {
		// Born inside: the plugin process is in its cgroup already.
		pid := pluginState(t, s, "e").PID
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if !strings.Contains(string(b), "0::"+strings.TrimPrefix(cg.v2, unifiedV2)+"/plugin-e-") {
			t.Fatalf("plugin %d is not in its v2 cgroup: %s", pid, b)
		}
	}
	var first int
	waitFor(t, 20*time.Second, "the escaped grandchild", func() bool {
		e := escapedProcs(token)
		if len(e) == 1 {
			first = e[0]
		}
		return len(e) == 1
	})
	if env, _ := os.ReadFile("/proc/" + strconv.Itoa(first) + "/environ"); bytes.Contains(env, []byte(TreeEnv)) {
		t.Fatalf("the grandchild kept the mark: %q", env)
	}
	plugin := pluginState(t, s, "e").PID
	if sid, _ := syscall.Getpgid(first); sid == plugin {
		t.Fatalf("the grandchild is in the plugin's process group %d", sid)
	}
	// A restart: the plugin process dies.
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the escaped grandchild of the first instance to be gone", func() bool { return gone(first) })
	var second int
	waitFor(t, 30*time.Second, "the restarted plugin's escaped grandchild", func() bool {
		e := escapedProcs(token)
		if len(e) == 1 && e[0] != first {
			second = e[0]
		}
		return second != 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Stop(ctx)
	if !gone(second) {
		t.Errorf("escaped grandchild %d alive after Stop", second)
		_ = syscall.Kill(second, syscall.SIGKILL)
	}
	if cg := pluginCgroups(s); len(cg) > 0 {
		t.Errorf("plugin cgroups left after Stop: %v", cg)
	}
}

// anonKiB sums RssAnon of the live processes carrying entry.
func anonKiB(entry string) int {
	total := 0
	for _, pid := range treeProcs(entry) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				total += n
			}
		}
	}
	return total
}

// TestMemoryLimitCoversChildren: four children of a plugin that each stay
// under the per-process limit but together pass MemoryMax end the whole
// plugin, which is restarted and says why; the tree never holds much more
// than the limit. (RLIMIT_DATA is per process: they held 480 MiB.)
func TestMemoryLimitCoversChildren(t *testing.T) {
	token := setToken(t)
	rec := newRecorder()
	opts := testOptions(t, rec)
	const limit = 256 << 20
	opts.Limits = Limits{MemoryMax: limit}
	s := startWith(t, opts, spec("h", "childhog"))
	requireCgroups(t, s)
	most := 0
	waitFor(t, 60*time.Second, "the plugin to be ended for its children's memory", func() bool {
		most = max(most, anonKiB("FAULTY_TEST_TOKEN="+token))
		return strings.Contains(pluginState(t, s, "h").LastError, "memory limit")
	})
	t.Logf("at most %d MiB anonymous memory in the tree; last error %q", most>>10, pluginState(t, s, "h").LastError)
	// RssAnon lags the cgroup's charge a little; 16 MiB of room.
	if most > (limit>>10)+16<<10 {
		t.Errorf("the tree held %d MiB, over the limit of %d MiB", most>>10, limit>>20)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Stop(ctx)
	if left := treeProcs("FAULTY_TEST_TOKEN=" + token); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
	if cg := pluginCgroups(s); len(cg) > 0 {
		t.Errorf("plugin cgroups left after Stop: %v", cg)
	}
}
