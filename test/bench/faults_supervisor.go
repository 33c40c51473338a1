package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Faults of plugin trust and the supervisor:
// unsafe plugin paths, a SIGSTOPped plugin, plugins that flood metrics or
// logs or eat memory, and a plugin that leaves orphans.
func faultSupervisor(s *scope, b *bins) []faultRow {
	var rows []faultRow
	rows = append(rows, faultUnsafePlugins(s, b)...)
	rows = append(rows, faultStoppedPlugin(s, b)...)
	rows = append(rows, faultPluginOutput(s, b)...)
	rows = append(rows, faultOrphans(s, b))
	return rows
}

// oneFaulty is the config of an agent whose one plugin, name, is the
// faulty binary exe, restarted quickly, with limit (a supervisor setting,
// or "") added.
func oneFaulty(limit, name, exe string) string {
	return agenttest.DetectorsOff + agenttest.QuickRestarts(limit) + fmt.Sprintf(`
plugin %q { path = %q }
`, name, exe)
}

// runToken is a value no other run shares, for an environment entry that
// marks one agent's process tree.
func runToken() string { return fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()) }

func copyExeMode(s *scope, from, to string, mode uint32) {
	copyExe(s, from, to)
	if err := syscall.Chmod(to, mode); err != nil {
		s.Fatal(err)
	}
}

func faultUnsafePlugins(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	dir := s.TempDir() // root's, 0700, below root's 0755 directories
	mk := func(name string, mode uint32) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			s.Fatal(err)
		}
		if err := syscall.Chmod(d, mode); err != nil {
			s.Fatal(err)
		}
		return d
	}
	safe := mk("safe", 0o755)
	good := filepath.Join(safe, "faulty-ok")
	copyExeMode(s, b.faulty["ok"], good, 0o755)
	// The attack of the issue: a symlink in a world-writable (sticky)
	// directory, which anyone can point elsewhere.
	sticky := mk("sticky", 0o1777)
	link := filepath.Join(sticky, "plugin")
	if err := os.Symlink(good, link); err != nil {
		s.Fatal(err)
	}
	world := filepath.Join(safe, "world")
	copyExeMode(s, b.faulty["ok"], world, 0o777)
	if err := os.Chown(world, 65534, 65534); err != nil {
		s.Fatal(err)
	}
	group := filepath.Join(mk("group", 0o775), "plugin")
	copyExeMode(s, b.faulty["ok"], group, 0o755)
	cases := []struct{ name, path, done, want string }{
		{"sticky", link, "plugin path is a symlink (to a good binary) in a 1777 directory", "is writable by group or others (mode 1777)"},
		{"world", world, "plugin binary mode 0777, owned by nobody", "is owned by uid 65534"},
		{"group", group, "plugin binary in a 0775 directory", "is writable by group or others (mode 0775)"},
		{"good", good, "", ""},
	}
	cfg := ""
	for _, c := range cases {
		cfg += fmt.Sprintf("plugin %q { path = %q }\n", c.name, c.path)
	}
	a := startAgent(s, b, agentOpts{name: "trust", nsPath: l.node, config: cfg})
	took := a.waitReady(30 * time.Second)
	ready := a.ready()
	goodP, _ := a.plugin("good")
	var rows []faultRow
	for _, c := range cases[:3] {
		p, _ := a.plugin(c.name)
		rows = append(rows, faultRow{
			fault:   "unsafe plugin path (" + c.name + ")",
			done:    c.done + "; a safe plugin and the built-ins beside it",
			did:     fmt.Sprintf("plugin %s, pid %d: %q; agent ready: %v; safe plugin %s", p.State, p.PID, p.LastError, ready, goodP.State),
			numbers: fmt.Sprintf("ready after %s ms", ms(took)),
			held:    p.State == "disabled" && p.PID == 0 && strings.Contains(p.LastError, c.want) && ready && goodP.State == "ready",
		})
	}
	return rows
}

// busyChecks checks the busy address until stop is closed and counts the
// verdicts.
func busyChecks(a *agent, stop <-chan struct{}) <-chan map[string]int {
	out := make(chan map[string]int, 1)
	go func() {
		v := map[string]int{}
		for {
			select {
			case <-stop:
				out <- v
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, code, err := a.check(ctx, req1(netlab.Busy4+"/24", ""))
			cancel()
			switch {
			case err != nil || code != http.StatusOK:
				v["refused"]++
			default:
				v[string(resp.Verdict)]++
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return out
}

func faultStoppedPlugin(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	var rows []faultRow
	{
		a := startAgent(s, b, agentOpts{name: "sigstop", nsPath: l.node, config: agenttest.QuickRestarts() + `
plugin "ip-conflict" { timeout = "500ms" }
`})
		a.waitReady(30 * time.Second)
		old, _ := a.plugin("ip-conflict")
		if old.PID <= 0 { // kill(0) would stop this program's own group
			st, err := a.status()
			s.Fatalf("ip-conflict is not running: %+v (status %+v, %v)\n%s", old, st, err, a.Log())
		}
		stop := make(chan struct{})
		verdicts := busyChecks(a, stop)
		t0 := time.Now()
		_ = syscall.Kill(old.PID, syscall.SIGSTOP)
		var notReady, back time.Duration
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			r := a.ready()
			if !r && notReady == 0 {
				notReady = time.Since(t0)
			}
			if r && notReady != 0 {
				back = time.Since(t0)
				break
			}
		}
		close(stop)
		v := <-verdicts
		now, _ := a.plugin("ip-conflict")
		oldGone := !agenttest.Alive(old.PID)
		_ = syscall.Kill(old.PID, syscall.SIGKILL)
		a.stop() // the next agent of this lab uses the same ports
		rows = append(rows, faultRow{
			fault:   "SIGSTOP of ip-conflict",
			done:    "SIGSTOP of the ip-conflict process (timeout 500ms, health every 200ms); the busy address checked every 20 ms meanwhile",
			did:     fmt.Sprintf("readiness 503 after %s ms, 200 again after %s ms with pid %d (was %d, gone: %v); last error %q", ms(notReady), ms(back), now.PID, old.PID, oldGone, now.LastError),
			numbers: fmt.Sprintf("busy-address verdicts: %v", v),
			held:    notReady > 0 && back > 0 && now.PID != old.PID && oldGone && v["pass"] == 0,
		})
	}
	{
		a := startAgent(s, b, agentOpts{name: "sigstop-term", nsPath: l.node, config: `
shutdown_timeout = "2s"
plugin "ip-conflict" { timeout = "10s" }
`})
		a.waitReady(30 * time.Second)
		p, _ := a.plugin("ip-conflict")
		if p.PID <= 0 {
			st, err := a.status()
			s.Fatalf("ip-conflict is not running: %+v (status %+v, %v)\n%s", p, st, err, a.Log())
		}
		_ = syscall.Kill(p.PID, syscall.SIGSTOP)
		t0 := time.Now()
		_ = a.Cmd.Process.Signal(syscall.SIGTERM)
		_, exited := a.ExitCode(20 * time.Second)
		took := time.Since(t0)
		time.Sleep(100 * time.Millisecond)
		alive := agenttest.Alive(p.PID)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		rows = append(rows, faultRow{
			fault:   "SIGTERM with a SIGSTOPped plugin",
			done:    "SIGSTOP of ip-conflict (timeout 10s), then SIGTERM of the agent (shutdown_timeout 2s)",
			did:     fmt.Sprintf("exited: %v, code %d; stopped plugin alive afterwards: %v", exited, a.Exited().Code, alive),
			numbers: fmt.Sprintf("exit %s ms after SIGTERM", ms(took)),
			held:    exited && took < 5*time.Second && !alive,
		})
	}
	return rows
}

// metricsText fetches the agent's /metrics.
func metricsText(a *agent) string {
	resp, err := a.httpClient(5 * time.Second).Get("http://127.0.0.1:5711/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return string(body)
}

// metricValue sums the samples of a metric whose labels contain sel.
func metricValue(text, name, sel string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, sel) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func faultPluginOutput(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	var rows []faultRow
	const run = 10 * time.Second
	{
		a := startAgent(s, b, agentOpts{name: "metricflood", nsPath: l.node, config: agenttest.DetectorsOff + fmt.Sprintf(`
metrics { enabled = true }
supervisor { health_interval = "200ms" }
plugin "flood" { path = %q }
`, b.faulty["metricflood"])})
		a.waitReady(30 * time.Second)
		rss0 := rssKiB(a.pid())
		time.Sleep(run)
		text := metricsText(a)
		rss1 := rssKiB(a.pid())
		series := len(regexp.MustCompile(`(?m)^spiderpool_faulty_flood_\d+\{`).FindAllString(text, -1))
		byName := metricValue(text, "spiderpool_plugin_samples_rejected_total", `reason="name"`)
		byLimit := metricValue(text, "spiderpool_plugin_samples_rejected_total", `reason="limit"`)
		warnings := strings.Count(a.Log(), "dropped a plugin's metric sample")
		rows = append(rows, faultRow{
			fault:   "metric-name flood",
			done:    fmt.Sprintf("a plugin returns 500 new valid and 500 new invalid metric names from every collection (every 200 ms) for %v", run),
			did:     fmt.Sprintf("%d of its series exported; %d warning lines; rejected: %.0f by name, %.0f by the series limit", series, warnings, byName, byLimit),
			numbers: fmt.Sprintf("agent RSS %d -> %d KiB", rss0, rss1),
			held:    series <= 2000 && warnings <= 2 && byName > 0 && byLimit > 0 && rss1-rss0 < 64<<10,
		})
		a.stop()
	}
	{
		a := startAgent(s, b, agentOpts{name: "logflood", nsPath: l.node, config: agenttest.DetectorsOff + fmt.Sprintf(`
metrics { enabled = true }
plugin "flood" { path = %q }
`, b.faulty["logflood"])})
		a.waitReady(30 * time.Second)
		before := len(a.Log())
		time.Sleep(run)
		logged := a.Log()[before:]
		lines := strings.Count(logged, "\n")
		dropped := metricValue(metricsText(a), "spiderpool_plugin_log_lines_suppressed_total", `plugin="flood"`)
		bound := 500 + 100*int(run.Seconds()) + 20
		rows = append(rows, faultRow{
			fault:   "log flood",
			done:    fmt.Sprintf("a plugin logs (stderr) and prints (stdout) without pause for %v; default limits (100 lines/s, burst 500)", run),
			did:     fmt.Sprintf("%d agent log lines, %.0f plugin lines suppressed and counted", lines, dropped),
			numbers: fmt.Sprintf("%d bytes of agent log in %v (%d KiB/min)", len(logged), run, len(logged)*6/1024),
			held:    lines <= bound && dropped > 0,
		})
		a.stop()
	}
	{
		a := startAgent(s, b, agentOpts{name: "memhog", nsPath: l.node, config: oneFaulty("plugin_memory_max_mb = 256", "hog", b.faulty["memhog"])})
		peak := 0
		pids := map[int]bool{}
		for end := time.Now().Add(run); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if p, ok := a.plugin("hog"); ok && p.PID > 0 {
				pids[p.PID] = true
				peak = max(peak, rssKiB(p.PID))
			}
		}
		p, _ := a.plugin("hog")
		rows = append(rows, faultRow{
			fault:   "memory hog",
			done:    fmt.Sprintf("a plugin allocates 16 MiB every 10 ms (up to 768 MiB) for %v; plugin_memory_max_mb = 256", run),
			did:     fmt.Sprintf("%d processes in turn, %d restarts, state %s, last error %q", len(pids), p.Restarts, p.State, p.LastError),
			numbers: fmt.Sprintf("peak plugin RSS %d KiB", peak),
			held:    p.Restarts >= 1 && peak <= 280<<10,
		})
	}
	return rows
}

func faultOrphans(s *scope, b *bins) faultRow {
	l := newLab(s, b)
	token := "FAULTY_BENCH_TOKEN=" + runToken()
	exe := b.faulty["orphan"]
	a := startAgent(s, b, agentOpts{name: "orphans", nsPath: l.node, env: []string{token}, config: oneFaulty("", "orphan", exe)})
	most := 0
	var p struct {
		state    string
		restarts int
	}
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		most = max(most, len(agenttest.Marked(exe, token)))
		if st, ok := a.plugin("orphan"); ok {
			p.state, p.restarts = string(st.State), st.Restarts
			if st.State == "disabled" {
				break
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	afterDisable := len(agenttest.Marked(exe, token))
	a.stop()
	afterStop := len(agenttest.Marked(exe, token))
	return faultRow{
		fault:   "orphans",
		done:    "a plugin starts a setsid child (holding its stderr) and exits 300 ms after it is configured; restart budget 3",
		did:     fmt.Sprintf("plugin %s after %d restarts", p.state, p.restarts),
		numbers: fmt.Sprintf("most processes of the plugin alive at once: %d; left after it was disabled: %d; left after the agent stopped: %d", most, afterDisable, afterStop),
		held:    p.state == "disabled" && most <= 2 && afterDisable == 0 && afterStop == 0,
	}
}
