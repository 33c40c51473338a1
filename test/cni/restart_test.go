package cni

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// pluginRunning reports whether a spiderpool plugin process runs now.
func pluginRunning() bool {
	want := filepath.Join(cniBin, "spiderpool")
	return slices.ContainsFunc(agenttest.PIDs(), func(pid int) bool { return agenttest.Exe(pid) == want })
}

type outcome struct {
	res  types.Result
	err  error
	took time.Duration
}

// awayFor is how long the plugin must have run with no agent before the
// agent is started again: many times its first attempt's cost, so that it
// has certainly met the missing agent and is waiting.
const awayFor = 300 * time.Millisecond

// whileAway runs cmd through the plugin with the agent stopped, waits
// until the plugin process has run for awayFor (or ended), and starts the
// agent again when restart is set; it returns the plugin's outcome and
// when the agent was started.
func (l *lab) whileAway(ctx context.Context, list *libcni.NetworkConfigList, cmd string, w cnilab.Attachment, restart bool) (outcome, time.Time) {
	l.t.Helper()
	l.agent.Stop()
	ch := make(chan outcome, 1)
	go func() {
		t0 := time.Now()
		res, err := l.rt.IPAM(ctx, list, cmd, w)
		ch <- outcome{res, err, time.Since(t0)}
	}()
	var since time.Time
	poll.Until(l.t, 30*time.Second, "the plugin runs without an agent", poll.Bool(func() bool {
		select {
		case o := <-ch:
			ch <- o // ended already (without waiting): the caller sees it
			return true
		default:
		}
		switch {
		case !pluginRunning():
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		}
		return !since.IsZero() && time.Since(since) >= awayFor
	}))
	var started time.Time
	if restart {
		started = time.Now()
		l.startAgent()
	}
	return <-ch, started
}

// TestAgentRestart: an agent restart is invisible to the runtime. ADD and
// DEL issued while the agent is stopped wait for it (ipam.agent_wait) and
// succeed once it is back; a DEL whose agent does not come back within
// the wait is spooled and exits 0, and the agent releases the address at
// its next start before serving; hostile files in the spool are refused
// without harm; a spooled DEL older than the key's allocation (the runtime
// ADDed it again) does not release it.
func TestAgentRestart(t *testing.T) {
	l := newLab(t)
	ipam := func(wait string) string {
		return fmt.Sprintf(`{"type": "spiderpool", "pools": ["gc-v4"], "socket": %q, "spool_dir": %q, "agent_wait": %q}`, l.sock, l.spool, wait)
	}
	waiting := network(t, "restart", ipam("20s"))
	short := network(t, "restart-short", ipam("1s"))
	ctx := ctxFor(t, 5*time.Minute)

	// ADD while the agent restarts.
	w1 := workload(t, "restart-add")
	o, started := l.whileAway(ctx, waiting, "ADD", w1, true)
	if o.err != nil {
		t.Fatalf("ADD while the agent restarts: %v (after %v)", o.err, o.took)
	}
	v4, _ := addrs(t, o.res)
	if att, ok := l.held(key(w1)); !ok || att.Addresses[0].Address != v4 {
		t.Fatalf("the agent holds %+v %v for the ADD that answered %v", att, ok, v4)
	}
	t.Logf("ADD with the agent stopped: succeeded after %v, the agent was started %v before the test saw it ready",
		o.took.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))

	// DEL while the agent restarts: delivered, nothing spooled.
	o, started = l.whileAway(ctx, waiting, "DEL", w1, true)
	if o.err != nil {
		t.Fatalf("DEL while the agent restarts: %v (after %v)", o.err, o.took)
	}
	if _, ok := l.held(key(w1)); ok {
		t.Fatal("the DEL that succeeded left the allocation")
	}
	if files, _ := os.ReadDir(l.spool); len(files) != 0 {
		t.Errorf("a delivered DEL left %d files in the spool", len(files))
	}
	t.Logf("DEL with the agent stopped: succeeded after %v, the agent was started %v before the test saw it ready",
		o.took.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	if o.took < awayFor {
		t.Errorf("the DEL took %v; it ran %v without an agent", o.took, awayFor)
	}

	// DEL whose agent stays away: spooled, exit 0. Hostile files wait in
	// the spool beside it.
	w2 := workload(t, "restart-spool")
	res, err := l.rt.IPAM(ctx, waiting, "ADD", w2)
	if err != nil {
		t.Fatal(err)
	}
	held, _ := addrs(t, res)
	o, _ = l.whileAway(ctx, short, "DEL", w2, false)
	if o.err != nil {
		t.Fatalf("DEL with the agent away past agent_wait: %v, want success (spooled)", o.err)
	}
	if o.took < time.Second {
		t.Errorf("the DEL returned after %v, before its agent_wait of 1s", o.took)
	}
	spooled := filepath.Join(l.spool, cnispool.FileName(w2.ContainerID, w2.IfName))
	if st, err := os.Stat(spooled); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the spooled DEL: %v %v, want a 0600 file", st, err)
	}
	outside := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostile := map[string]func(string) error{
		"symlink": func(p string) error { return os.Symlink(outside, p) },
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"huge":    func(p string) error { return os.WriteFile(p, []byte(strings.Repeat(" ", 1<<20)), 0o600) },
		"badjson": func(p string) error { return os.WriteFile(p, []byte(`{"version":1,`), 0o600) },
	}
	for id, mk := range hostile {
		if err := mk(filepath.Join(l.spool, cnispool.FileName(id, "net1"))); err != nil {
			t.Fatal(err)
		}
	}
	started = time.Now()
	l.startAgent()
	ready := time.Since(started)
	// Applied at start, before the agent served anything: the first
	// answer already has the address free (the poll bounds a loaded
	// machine, it does not wait for a pass of the loop).
	poll.Until(t, 5*time.Second, "the spooled DEL released "+held.String(), poll.Bool(func() bool {
		_, ok := l.held(key(w2))
		return !ok
	}))
	freed := time.Since(started)
	if !strings.Contains(l.agent.Log(), "spooled_dels_released=1") {
		t.Errorf("the agent did not apply the spool at start, before serving:\n%s", l.agent.Log())
	}
	if u := l.usage("gc-v4"); u.Allocated != 0 {
		t.Errorf("pool gc-v4 after the spooled DEL: %+v, want nothing allocated", u)
	}
	if files, _ := os.ReadDir(l.spool); len(files) != 0 {
		t.Errorf("the spool holds %v after the agent applied it; want it empty", files)
	}
	if data, err := os.ReadFile(outside); err != nil || string(data) != "keep" {
		t.Errorf("the symlink's target was harmed: %q %v", data, err)
	}
	if log := l.agent.Log(); strings.Count(log, "refused a file in the CNI spool") != len(hostile) || !strings.Contains(log, "result=released") {
		t.Errorf("the agent's log does not report the %d refused files and the release:\n%s", len(hostile), log)
	}
	t.Logf("DEL with the agent away: spooled after %v (agent_wait 1s); %s free %v after the agent was started (ready after %v)",
		o.took.Round(time.Millisecond), held, freed.Round(time.Millisecond), ready.Round(time.Millisecond))

	// A DEL spooled before the key's current allocation was made (the
	// runtime ADDed the same container and interface again): it is
	// dropped and the allocation stays.
	res, err = l.rt.IPAM(ctx, waiting, "ADD", w2)
	if err != nil {
		t.Fatal(err)
	}
	att, _ := l.held(key(w2))
	if err := cnispool.Write(l.spool, cnispool.Record{Version: 1, ContainerID: w2.ContainerID, Interface: w2.IfName, DeletedAt: att.Created.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the agent takes the stale spooled DEL", poll.Bool(func() bool {
		_, err := os.Lstat(spooled)
		return os.IsNotExist(err)
	}))
	if _, ok := l.held(key(w2)); !ok {
		t.Fatal("a DEL spooled before the allocation was made released it")
	}
	if !strings.Contains(l.agent.Log(), "result=newer") {
		t.Error("the agent's log does not say the newer allocation won")
	}
}

// TestSpoolDirDefault: the plugin's default spool is the agent's.
func TestSpoolDirDefault(t *testing.T) {
	if cnispool.DefaultDir != config.DefaultIPAMCNISpoolDir {
		t.Errorf("the plugin's default spool %s is not the agent's %s", cnispool.DefaultDir, config.DefaultIPAMCNISpoolDir)
	}
}
