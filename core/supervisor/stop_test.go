package supervisor

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// TestStoppedPluginIsRestarted: a SIGSTOPped plugin misses its health
// checks; it must be taken out of service at once, killed, and replaced by
// a new process. (go-plugin's Kill made a Shutdown call without a deadline
// into the stopped process: the supervisor hung there for ever and the
// plugin stayed "ready".)
func TestStoppedPluginIsRestarted(t *testing.T) {
	rec := newRecorder()
	s := start(t, rec, spec("a", "ok"))
	old := pluginState(t, s, "a")
	agenttest.SIGSTOP(t, old.PID)
	// 3 health checks of 2s each are missed first.
	waitFor(t, 30*time.Second, "the stopped plugin to be taken out of service", func() bool {
		st := pluginState(t, s, "a").State
		return st != api.Ready && st != api.Degraded
	})
	if _, err := s.Check(context.Background(), "a", sdk.CheckRequest{}); err == nil {
		t.Error("a check went to a plugin that is being replaced")
	}
	waitFor(t, 30*time.Second, "a new plugin process to be ready", func() bool {
		p := pluginState(t, s, "a")
		return p.State == api.Ready && p.PID != old.PID && p.PID != 0
	})
	waitFor(t, 5*time.Second, "the stopped process to be gone", func() bool { return gone(old.PID) })
	if p := pluginState(t, s, "a"); !strings.Contains(p.LastError, "missed 3 health checks") {
		t.Errorf("last error %q does not say why it was restarted", p.LastError)
	}
	if res, err := s.Check(context.Background(), "a", sdk.CheckRequest{}); err != nil || res.Verdict != sdk.VerdictPass {
		t.Errorf("Check after the restart = %+v, %v; want pass", res, err)
	}
}

// TestStopWithAStoppedPluginIsBounded: Stop must end in SIGKILL of a
// stopped plugin within its context plus a bounded kill.
func TestStopWithAStoppedPluginIsBounded(t *testing.T) {
	s := start(t, nil, spec("a", "ok"))
	p := pluginState(t, s, "a")
	agenttest.SIGSTOP(t, p.PID)
	const grace = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	begin := time.Now()
	done := make(chan struct{})
	go func() {
		s.Stop(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop with a SIGSTOPped plugin did not return within 30s")
	}
	// The grace, then the tree kill: room for a loaded machine.
	if took := time.Since(begin); took > grace+killWait+2*time.Second {
		t.Errorf("Stop took %v, want about %v", took, grace)
	}
	waitFor(t, 5*time.Second, "the stopped plugin to be gone", func() bool { return gone(p.PID) })
}

// treeProcs lists the live (not zombie) processes whose environment holds
// entry.
func treeProcs(entry string) []int {
	var out []int
	for _, pid := range procPIDs() {
		if !carries(pid, entry) {
			continue
		}
		if _, st, ok := procStat(pid); ok && st != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// zombieChildren lists exited children of this process nobody reaped.
func zombieChildren() []int {
	var out []int
	for _, pid := range procPIDs() {
		if ppid, st, ok := procStat(pid); ok && ppid == os.Getpid() && st == 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// TestOrphansDoNotOutliveTheirPlugin: a plugin that starts a setsid child
// and dies must not leave the child behind, on any of its restarts nor when
// the supervisor stops; nor may zombies pile up. (Killing the process group
// missed the child, which left its group: one orphan per restart.)
func TestOrphansDoNotOutliveTheirPlugin(t *testing.T) {
	token := fmt.Sprintf("FAULTY_TEST_TOKEN=%d-%d", os.Getpid(), time.Now().UnixNano())
	k, v, _ := strings.Cut(token, "=")
	t.Setenv(k, v) // the plugins inherit the agent's environment
	rec := newRecorder()
	s := New(testOptions(t, rec))
	s.Apply(context.Background(), []Spec{spec("o", "orphan")}, s.opts.Agent)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.Stop(context.Background())
		}
		for _, pid := range treeProcs(token) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	most := 0
	waitFor(t, 60*time.Second, "the plugin to spend its restart budget", func() bool {
		most = max(most, len(treeProcs(token)))
		return pluginState(t, s, "o").State == api.Disabled
	})
	rec.mu.Lock()
	restarts := rec.restarts["o"]
	rec.mu.Unlock()
	if restarts < 3 {
		t.Fatalf("%d restarts, want the budget of 3 spent", restarts)
	}
	// While an instance runs, it and its child are alive: at most 2.
	if most > 2 {
		t.Errorf("up to %d processes of the plugin's trees alive at once, want at most 2 (the plugin and its child)", most)
	}
	waitFor(t, 5*time.Second, "no process of the plugin's trees left", func() bool { return len(treeProcs(token)) == 0 })
	stopped = true
	s.Stop(context.Background())
	if left := treeProcs(token); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
	if z := zombieChildren(); len(z) > 0 {
		t.Errorf("unreaped children: %v", z)
	}
}

// lineSink is a log sink that keeps the lines holding needle, and the
// first 200 others; with t set it also logs every line to the test.
type lineSink struct {
	mu     sync.Mutex
	needle string
	t      *testing.T
	match  []string
	other  []string
}

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.Contains(l, s.needle) {
			s.match = append(s.match, l)
		} else if len(s.other) < 200 {
			s.other = append(s.other, l)
		}
	}
	if s.t != nil {
		s.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// matched returns the lines holding needle so far.
func (s *lineSink) matched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.match...)
}

// count returns how many lines held needle so far, and the others kept.
func (s *lineSink) count() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.match), append([]string(nil), s.other...)
}

// TestLogFloodIsBounded: a plugin that logs (stderr) and prints (stdout)
// without pause gets LogBurst lines plus LogLinesPerSecond a second into
// the agent's log, the rest counted and summarised.
func TestLogFloodIsBounded(t *testing.T) {
	rec := newRecorder()
	sink := &lineSink{needle: "flooding"}
	opts := testOptions(t, rec)
	// JSON: one line per entry, whatever newlines the plugin wrote.
	opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "agent", Output: sink, Level: hclog.Info, JSONFormat: true})
	opts.Limits = Limits{LogLinesPerSecond: 50, LogBurst: 100}
	begin := time.Now()
	s := startWith(t, opts, spec("f", "logflood"))
	if p := pluginState(t, s, "f"); p.State != api.Ready {
		t.Fatalf("plugin is %s: %s", p.State, p.LastError)
	}
	time.Sleep(2 * time.Second) // the flood runs; this is the window measured
	n, other := sink.count()
	elapsed := time.Since(begin)
	bound := 100 + int(50*elapsed.Seconds()) + 1
	if n > bound {
		t.Errorf("%d flood lines in the agent's log after %v, want at most %d", n, elapsed, bound)
	}
	if n < 100 {
		t.Errorf("only %d flood lines: the burst should pass", n)
	}
	rec.mu.Lock()
	dropped := rec.suppressed["f"]
	rec.mu.Unlock()
	if dropped < 1000 {
		t.Errorf("%d lines counted as suppressed, want the flood (thousands)", dropped)
	}
	summary := false
	for _, l := range other {
		summary = summary || strings.Contains(l, "plugin log lines suppressed")
	}
	if !summary {
		t.Errorf("no \"suppressed\" summary line among %q", other)
	}
	t.Logf("%d lines logged, %d suppressed in %v", n, dropped, elapsed)
}

// TestMemoryLimitEndsAHog: a plugin that allocates without end dies at its
// memory limit and is restarted, instead of taking the node's memory.
func TestMemoryLimitEndsAHog(t *testing.T) {
	rec := newRecorder()
	opts := testOptions(t, rec)
	opts.Limits = Limits{MemoryMax: 256 << 20}
	s := startWith(t, opts, spec("m", "memhog"))
	first := pluginState(t, s, "m").PID
	waitFor(t, 30*time.Second, "the hog to be restarted", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.restarts["m"] >= 1
	})
	// Usually "the plugin process exited" (Go's "out of memory"); on a
	// loaded machine the hog may first spend its time in GC at GOMEMLIMIT
	// and miss its health checks. Either way it was ended.
	if p := pluginState(t, s, "m"); !strings.Contains(p.LastError, "exited") && !strings.Contains(p.LastError, "health checks") {
		t.Errorf("last error %q, want the process to have exited", p.LastError)
	}
	waitFor(t, 5*time.Second, "the first hog to be gone", func() bool { return gone(first) })
}

// stopOnConfigure is an Observer that, when the plugin's Configure call
// has succeeded, stops the supervisor and returns only once the run's
// context has ended: the run then stands between a configured instance
// and serving it.
type stopOnConfigure struct {
	*recorder
	s       *Supervisor
	once    sync.Once
	stopped chan struct{}
}

func (o *stopOnConfigure) PluginCall(p, method string, secs float64, err error) {
	o.recorder.PluginCall(p, method, secs, err)
	if method != "Configure" || err != nil {
		return
	}
	o.once.Do(func() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			o.s.Stop(ctx)
			close(o.stopped)
		}()
		o.s.mu.Lock()
		m := o.s.plugins[p]
		o.s.mu.Unlock()
		for {
			m.mu.Lock()
			stopping := m.stopping
			m.mu.Unlock()
			if stopping {
				return
			}
			runtime.Gosched()
		}
	})
}

// TestStopBetweenConfigureAndServe: a Stop that lands after the plugin was
// configured but before it is served ends the plugin and everything it
// forked. (The run returned on the ended context and left the configured
// instance, and the grandchild it had forked, running.)
func TestStopBetweenConfigureAndServe(t *testing.T) {
	token := setToken(t)
	obs := &stopOnConfigure{recorder: newRecorder(), stopped: make(chan struct{})}
	s := New(testOptions(t, obs))
	obs.s = s
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Apply waits for a settle that a stopped run never reaches.
	go s.Apply(ctx, []Spec{spec("e", "escape")}, s.opts.Agent)
	select {
	case <-obs.stopped:
	case <-ctx.Done():
		t.Fatal("Stop did not return")
	}
	if left := escapedProcs(token); len(left) > 0 {
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("escaped grandchildren alive after Stop: %v", left)
	}
	if left := treeProcs("FAULTY_TEST_TOKEN=" + token); len(left) > 0 {
		t.Errorf("plugin processes alive after Stop: %v", left)
	}
}
