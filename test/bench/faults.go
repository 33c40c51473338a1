package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// faultRow is one row of the fault table.
type faultRow struct {
	fault, done, did, numbers string
	held                      bool
}

func runFaults(s *scope, out io.Writer) {
	fmt.Fprintf(out, "## spiderpool-agent fault suite\n\n%s\n\n", machine())
	progress("building test plugins and copying %s", *binDir)
	b := prepareBins(s, *binDir)
	var rows []faultRow
	section := func(name string, fn func(s *scope) []faultRow) {
		if !selected(name) {
			return
		}
		progress("faults: %s", name)
		err := run(name, func(s *scope) { rows = append(rows, fn(s)...) })
		if err != nil {
			rows = append(rows, faultRow{fault: name, done: "(the harness failed)", did: err.Error(), held: false})
		}
	}
	section("plugin-kill", func(s *scope) []faultRow { return faultPluginKill(s, b) })
	section("agent-kill", func(s *scope) []faultRow { return faultAgentKill(s, b) })
	section("sigterm", func(s *scope) []faultRow { return faultSigterm(s, b) })
	section("third-party", func(s *scope) []faultRow { return faultThirdParty(s, b) })
	section("sysctl", func(s *scope) []faultRow { return faultSysctl(s, b) })
	section("bad-input", func(s *scope) []faultRow { return faultBadInput(s, b, out) })
	section("supervisor", func(s *scope) []faultRow { return faultSupervisor(s, b) })
	section("burst", func(s *scope) []faultRow { return faultBurst(s, b) })
	section("surfaces", func(s *scope) []faultRow { return faultSurfaces(s, b) })
	section("cgroup", func(s *scope) []faultRow { return faultCgroups(s, b) })
	section("ipam-kill", func(s *scope) []faultRow { return faultIPAMKill(s, b) })
	section("ipam-trust", func(s *scope) []faultRow { return faultIPAMTrust(s, b, out) })
	section("ipam-etcd", faultEtcd)
	section("ipam-etcd-agents", func(s *scope) []faultRow { return faultIPAMEtcdAgents(s, b) })
	section("watch-flood", func(s *scope) []faultRow { return faultWatchFlood(s, b) })

	t := newTable("Faults", "fault", "what was done", "what the agent did", "numbers", "held")
	held := 0
	for _, r := range rows {
		t.add(r.fault, r.done, r.did, r.numbers, map[bool]string{true: "yes", false: "**no**"}[r.held])
		if r.held {
			held++
		}
	}
	t.note("%d of %d rows held. \"held\" means: no wrong verdict, the agent answered what it promises (errors, or fail-open passes where configured), and it was ready again afterwards where it should be.", held, len(rows))
	t.write(out)
}

// ---- load with verdict bookkeeping ----------------------------------------

// loadKind is one request and the verdict each of its addresses deserves.
type loadKind struct {
	name string
	req  api.CheckRequest
	want []string // per address: pass or block
}

// Outcomes of one check under load.
const (
	outRight    = "right"    // every address got the verdict it deserves
	outError    = "error"    // no answer, or an address could not be decided
	outFailOpen = "failopen" // a pass that a fail-open detector's absence allowed
	outWrong    = "wrong"    // pass for an address that deserves block, or the reverse
)

type result struct {
	start, end time.Time
	kind       string
	outcome    string
	detail     string
	answered   bool // HTTP 200
}

// classify compares an answer with what the request deserves.
func classify(k loadKind, resp api.CheckResult, code int, err error) (string, string) {
	if err != nil || code != 200 {
		return outError, fmt.Sprintf("%d %v", code, err)
	}
	if len(resp.Addresses) != len(k.want) {
		return outWrong, fmt.Sprintf("%d addresses answered, %d asked", len(resp.Addresses), len(k.want))
	}
	worst := outRight
	rank := map[string]int{outRight: 0, outError: 1, outFailOpen: 2, outWrong: 3}
	detail := ""
	for i, a := range resp.Addresses {
		o := outRight
		switch {
		case string(a.Verdict) == k.want[i]:
		case a.Verdict == "error":
			o = outError
		case a.Verdict == "pass" && k.want[i] == "block":
			o = outWrong
			for _, d := range a.Detectors {
				if d.Verdict == api.VerdictSkip && strings.Contains(d.Reason, "fail-open") {
					o = outFailOpen
				}
			}
		default:
			o = outWrong
		}
		if rank[o] > rank[worst] {
			worst = o
			b, _ := json.Marshal(a)
			detail = string(b)
		}
	}
	return worst, detail
}

type loadGen struct {
	a       *agent
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []result
}

// startLoad runs workers that send kinds in turn until stopLoad (at most
// 60 s and 200,000 checks).
func startLoad(a *agent, workers int, kinds []loadKind) *loadGen {
	g := &loadGen{a: a, stop: make(chan struct{})}
	var issued atomic.Int64
	deadline := time.Now().Add(60 * time.Second)
	for w := 0; w < workers; w++ {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for i := w; ; i++ {
				select {
				case <-g.stop:
					return
				default:
				}
				if time.Now().After(deadline) || issued.Add(1) > 200000 {
					return
				}
				k := kinds[i%len(kinds)]
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				t0 := time.Now()
				resp, code, err := a.check(ctx, k.req)
				t1 := time.Now()
				cancel()
				o, d := classify(k, resp, code, err)
				g.mu.Lock()
				g.results = append(g.results, result{t0, t1, k.name, o, d, err == nil && code == 200})
				g.mu.Unlock()
				if err != nil && code == 0 {
					time.Sleep(5 * time.Millisecond) // no agent: do not spin
				}
			}
		}()
	}
	return g
}

func (g *loadGen) stopLoad() []result {
	close(g.stop)
	g.wg.Wait()
	return g.results
}

// tally counts outcomes of the results whose interval meets [from, to]
// (from zero: any).
type tally map[string]int

func count(rs []result, from, to time.Time) tally {
	t := tally{}
	for _, r := range rs {
		if !from.IsZero() && (r.end.Before(from) || r.start.After(to)) {
			continue
		}
		t[r.outcome]++
		t["all"]++
	}
	return t
}

func (t tally) String() string {
	return fmt.Sprintf("%d checks: %d right, %d errors, %d fail-open passes, %d wrong", t["all"], t[outRight], t[outError], t[outFailOpen], t[outWrong])
}

func firstWrong(rs []result) string {
	for _, r := range rs {
		if r.outcome == outWrong {
			return r.kind + ": " + r.detail
		}
	}
	return ""
}

// lanKinds are the checks the kill faults run: each deserves a known
// verdict on the StdLAN.
func lanKinds() []loadKind {
	return []loadKind{
		{"busy IPv4", req1(netlab.Busy4+"/24", ""), []string{"block"}},
		{"busy IPv6", req1(netlab.Busy6+"/64", ""), []string{"block"}},
		{"free IPv4, absent gateway", req1("10.0.0.61/24", "10.0.0.2"), []string{"block"}},
		{"free IPv4, gateway", req1("10.0.0.62/24", netlab.GW4), []string{"pass"}},
		{"free IPv6, gateway", req1("fd00::62/64", netlab.GW6), []string{"pass"}},
	}
}

// ---- kill -9 of each plugin under load -------------------------------------

func faultPluginKill(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	var rows []faultRow
	type variant struct {
		plugin, policy string
	}
	for _, v := range []variant{{"ip-conflict", ""}, {"gateway-detector", ""}, {"sysctl-tuner", ""}, {"ip-conflict", "fail-open"}, {"gateway-detector", "fail-open"}} {
		must(run("kill-"+v.plugin, func(s *scope) {
			cfg := cfgDetect
			if v.policy != "" {
				cfg = fmt.Sprintf("plugin %q {\n  failure_policy = %q\n}\n", v.plugin, v.policy)
			}
			a := startAgent(s, b, agentOpts{name: "kill", nsPath: l.node, config: cfg})
			a.waitReady(30 * time.Second)
			old, _ := a.plugin(v.plugin)
			g := startLoad(a, 16, lanKinds())
			time.Sleep(time.Second)
			tKill := time.Now()
			_ = syscall.Kill(old.PID, syscall.SIGKILL)
			// Until the plugin is ready again with a new process and the
			// agent's readiness is 200.
			var tBack, tReady time.Time
			notReadySeen := false
			deadline := tKill.Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if tBack.IsZero() {
					if p, ok := a.plugin(v.plugin); ok && p.PID != 0 && p.PID != old.PID && (p.State == "ready" || p.State == "degraded") {
						tBack = time.Now()
					}
				}
				r := a.ready()
				if !r {
					notReadySeen = true
				}
				if !tBack.IsZero() && r {
					tReady = time.Now()
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Second)
			rs := g.stopLoad()
			name := v.plugin
			if v.policy != "" {
				name += " (" + v.policy + ")"
			}
			row := faultRow{fault: "kill -9 " + name + " under load",
				done: fmt.Sprintf("16 clients checking busy, free and gateway cases in turn; SIGKILL to pid %d after 1 s", old.PID)}
			if tReady.IsZero() {
				row.did = "not ready again within 15 s"
				row.numbers = count(rs, time.Time{}, time.Time{}).String()
				rows = append(rows, row)
				return
			}
			p, _ := a.plugin(v.plugin)
			gap := count(rs, tKill, tBack)
			all := count(rs, time.Time{}, time.Time{})
			row.did = fmt.Sprintf("restarted it (restarts %d, pid %d → %d); readiness %s", p.Restarts, old.PID, p.PID,
				map[bool]string{true: "503 meanwhile, 200 again", false: "stayed 200 (no 503 seen)"}[notReadySeen])
			row.numbers = fmt.Sprintf("plugin back after %s ms, readiness 200 after %s ms; in the gap %s; whole run %s",
				ms(tBack.Sub(tKill)), ms(tReady.Sub(tKill)), gap, all)
			row.held = all[outWrong] == 0 && (v.policy == "fail-open" || all[outFailOpen] == 0)
			if w := firstWrong(rs); w != "" {
				row.numbers += "; first wrong: " + w
			}
			if n := a.panics(); n > 0 {
				row.held = false
				row.numbers += fmt.Sprintf("; %d log lines mention panic", n)
			}
			rows = append(rows, row)
		}))
	}
	return rows
}

// readyDetectAgent starts an agent with the built-in detectors in a lab of
// its own, waits until it is ready, and returns it with its plugins' pids:
// where the faults that hit the agent itself begin.
func readyDetectAgent(s *scope, b *bins, name string) (*agent, map[string]int) {
	l := newLab(s, b)
	a := startAgent(s, b, agentOpts{name: name, nsPath: l.node, config: cfgDetect})
	a.waitReady(30 * time.Second)
	return a, a.pluginPIDs()
}

// ---- kill -9 of the agent under load --------------------------------------

func faultAgentKill(s *scope, b *bins) []faultRow {
	a, pids := readyDetectAgent(s, b, "victim")
	dirs := []string{b.pluginDir, filepath.Dir(b.noop)}
	before := procsWithExeIn(dirs...)
	g := startLoad(a, 16, lanKinds())
	time.Sleep(time.Second)
	tKill := time.Now()
	_ = a.Cmd.Process.Kill()
	<-a.Done()
	var gone time.Duration = -1
	left := map[int]string{}
	for time.Since(tKill) < 5*time.Second {
		left = procsWithExeIn(dirs...)
		if len(left) == 0 {
			gone = time.Since(tKill)
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	rs := g.stopLoad()
	all := count(rs, time.Time{}, time.Time{})
	row := faultRow{fault: "kill -9 the agent under load",
		done: fmt.Sprintf("16 clients checking; SIGKILL to the agent (pid %d) with %d plugin processes (%d with a plugin binary as exe)", a.pid(), len(pids), len(before))}
	if gone >= 0 {
		row.did = "every plugin process exited"
		row.numbers = fmt.Sprintf("plugin processes left: 0, all gone %s ms after the kill; checks: %s", ms(gone), all)
	} else {
		var l []string
		for pid, exe := range left {
			l = append(l, fmt.Sprintf("%d %s", pid, filepath.Base(exe)))
		}
		row.did = "plugin processes survived the agent"
		row.numbers = fmt.Sprintf("plugin processes left after 5 s: %d (%s); checks: %s", len(left), strings.Join(l, ", "), all)
	}
	row.held = gone >= 0 && all[outWrong] == 0
	// A new agent on the same socket: the stale socket must not stop it.
	a2 := a.restart()
	took := a2.waitReady(30 * time.Second)
	row.numbers += fmt.Sprintf("; a new agent on the same (stale) socket was ready in %s ms", ms(took))
	rows := []faultRow{row}
	return rows
}

// ---- SIGTERM under load -----------------------------------------------------

func faultSigterm(s *scope, b *bins) []faultRow {
	a, pids := readyDetectAgent(s, b, "term")
	kinds := []loadKind{
		{"free IPv4", req1("10.0.0.71/24", ""), []string{"pass"}},
		{"busy IPv4", req1(netlab.Busy4+"/24", ""), []string{"block"}},
		{"free IPv6", req1("fd00::71/64", ""), []string{"pass"}},
		{"dual stack", api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "10.0.0.72/24", Gateway: netlab.GW4}, {Address: "fd00::72/64", Gateway: netlab.GW6}}}, []string{"pass", "pass"}},
	}
	g := startLoad(a, 32, kinds)
	time.Sleep(time.Second)
	tSig := time.Now()
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	_, exited := a.ExitCode(20 * time.Second)
	time.Sleep(100 * time.Millisecond)
	rs := g.stopLoad()
	var inflight, after []result
	for _, r := range rs {
		switch {
		case r.start.Before(tSig) && r.end.After(tSig):
			inflight = append(inflight, r)
		case !r.start.Before(tSig):
			after = append(after, r)
		}
	}
	in := count(inflight, time.Time{}, time.Time{})
	af := count(after, time.Time{}, time.Time{})
	left := 0
	for _, pid := range pids {
		if agenttest.Alive(pid) {
			left++
		}
	}
	row := faultRow{fault: "SIGTERM under load", done: "32 clients checking free, busy and dual-stack addresses; SIGTERM after 1 s"}
	if !exited {
		row.did = "did not exit within 20 s"
		rows := []faultRow{row}
		return rows
	}
	answered := 0
	for _, r := range inflight {
		if r.answered {
			answered++
		}
	}
	row.did = fmt.Sprintf("exit code %d%s; of %d checks in flight at the signal, %d got an HTTP answer and %d right verdicts; %d checks sent after it, %d refused",
		a.Exited().Code, map[bool]string{true: " (signal " + a.Exited().Signal + ")", false: ""}[a.Exited().Signal != ""],
		len(inflight), answered, in[outRight], af["all"], af[outError])
	row.numbers = fmt.Sprintf("exit %s ms after the signal; in flight at the signal: %s; sent after it: %d (refused: %d, answered: %d); plugin processes left: %d",
		ms(a.Exited().At.Sub(tSig)), in, af["all"], af[outError], af[outRight], left)
	for _, r := range inflight {
		if r.outcome != outRight {
			row.numbers += "; first in-flight answer that was not right: " + r.detail
			break
		}
	}
	row.held = a.Exited().Code == 0 && in[outError] == 0 && in[outWrong] == 0 && af[outWrong] == 0 && left == 0
	return []faultRow{row}
}

// ---- third-party detectors ---------------------------------------------------

func faultThirdParty(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	var rows []faultRow
	// checkN sends req n times: latencies, address verdicts (a pass that a
	// fail-open skip allowed counts as "fail-open pass"), and the first
	// third-party detector's answer.
	checkN := func(a *agent, n int, req api.CheckRequest) (sample, map[string]int, string) {
		var lat sample
		verdicts := map[string]int{}
		reason := ""
		for i := 0; i < n; i++ {
			resp, code, d, err := a.timedCheck(req, 10*time.Second)
			lat = append(lat, d)
			if err != nil || code != 200 {
				verdicts[fmt.Sprintf("http %d", code)]++
				continue
			}
			for _, ad := range resp.Addresses {
				v := string(ad.Verdict)
				for _, d := range ad.Detectors {
					if v == "pass" && d.Verdict == api.VerdictSkip && strings.Contains(d.Reason, "fail-open") {
						v = "fail-open pass"
					}
				}
				verdicts[v]++
				for _, d := range ad.Detectors {
					if d.Name != "ip-conflict" && d.Name != "gateway-detector" && reason == "" {
						reason = string(d.Verdict) + ": " + d.Reason
					}
				}
			}
		}
		return lat, verdicts, reason
	}
	vstr := func(m map[string]int) string {
		var k []string
		for v, n := range m {
			k = append(k, fmt.Sprintf("%s %d", v, n))
		}
		sort.Strings(k)
		return strings.Join(k, ", ")
	}
	pstate := func(a *agent, name string) string {
		p, ok := a.plugin(name)
		if !ok {
			return "absent"
		}
		s := string(p.State)
		if p.Message != "" {
			s += " (" + p.Message + ")"
		} else if p.LastError != "" {
			s += " (" + p.LastError + ")"
		}
		return s
	}
	readiness := func(a *agent) string {
		code, _, err := a.healthGet("/v1/runtime/readiness")
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(code)
	}

	// A detector whose Check hangs, ignoring its context.
	for _, policy := range []string{"fail-closed", "fail-open"} {
		must(run("hang", func(s *scope) {
			cfg := fmt.Sprintf("plugin \"hang\" {\n  path = %q\n  timeout = \"300ms\"\n  failure_policy = %q\n}\n", b.faulty["hang"], policy)
			a := startAgent(s, b, agentOpts{name: "hang", nsPath: l.node, config: cfg})
			a.waitReady(30 * time.Second)
			lat, v, reason := checkN(a, 10, req1("10.0.0.81/24", ""))
			_, busyV, _ := checkN(a, 3, req1(netlab.Busy4+"/24", ""))
			rd := readiness(a)
			rows = append(rows, faultRow{
				fault: "third-party detector hangs (" + policy + ")",
				done:  "faulty plugin built with mode=hang (Check never returns, ignores its context), timeout = \"300ms\"; 10 checks of a free address, 3 of a busy one",
				did:   fmt.Sprintf("cut each call at the timeout: %s; the plugin stays %s; readiness %s", reason, pstate(a, "hang"), rd),
				numbers: fmt.Sprintf("free address: %s; latency p50 %s ms, max %s ms; busy address: %s; panics in log: %d",
					vstr(v), ms(lat.p50()), ms(lat.max()), vstr(busyV), a.panics()),
				held: v["pass"] == 0 && busyV["pass"] == 0 && lat.max() < 2*time.Second && rd == "200" && a.panics() == 0,
			})
		}))
	}

	// A detector that exits at start.
	must(run("crash", func(s *scope) {
		cfg := fmt.Sprintf("plugin \"crash\" {\n  path = %q\n}\nsupervisor {\n  restart_initial_backoff = \"100ms\"\n  restart_max_backoff = \"200ms\"\n  restart_budget = 3\n}\n", b.faulty["crash"])
		a := startAgent(s, b, agentOpts{name: "crash", nsPath: l.node, config: cfg})
		t0 := time.Now()
		var st string
		for time.Since(t0) < 15*time.Second {
			p, ok := a.plugin("crash")
			if ok && (p.State == "failed" || p.State == "disabled") {
				st = string(p.State)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(t0)
		p, _ := a.plugin("crash")
		_, v, reason := checkN(a, 5, req1("10.0.0.82/24", ""))
		_, busyV, _ := checkN(a, 3, req1(netlab.Busy4+"/24", ""))
		rd := readiness(a)
		alive := !a.exited()
		rows = append(rows, faultRow{
			fault: "third-party detector crashes at start",
			done:  "faulty plugin built with mode=crash (exits 1 before serving); restart_initial_backoff 100ms, restart_budget 3",
			did: fmt.Sprintf("retried with backoff, then %s: %s; agent running: %v; readiness %s; checks: %s",
				st, pstate(a, "crash"), alive, rd, reason),
			numbers: fmt.Sprintf("%d restarts, gave up after %s ms; free address: %s; busy address: %s; panics in log: %d",
				p.Restarts, ms(took), vstr(v), vstr(busyV), a.panics()),
			held: alive && st != "" && v["pass"] == 0 && busyV["pass"] == 0 && a.panics() == 0,
		})
	}))

	// A detector whose binary changed after its checksum was pinned.
	must(run("checksum", func(s *scope) {
		dir := s.TempDir()
		path := filepath.Join(dir, "pinned")
		data, err := os.ReadFile(b.faulty["ok"])
		if err != nil {
			s.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			s.Fatal(err)
		}
		sum := sha256.Sum256(data)
		cfg := fmt.Sprintf("plugin \"pinned\" {\n  path = %q\n  checksum = \"sha256:%s\"\n}\n", path, hex.EncodeToString(sum[:]))
		a := startAgent(s, b, agentOpts{name: "pinned", nsPath: l.node, config: cfg})
		a.waitReady(30 * time.Second)
		before := pstate(a, "pinned")
		old, _ := a.plugin("pinned")
		// Replace the binary (a working one, 4 bytes longer), then kill
		// the plugin so that the supervisor launches it again.
		tmp := path + ".new"
		if err := os.WriteFile(tmp, append(append([]byte(nil), data...), "evil"...), 0o755); err != nil {
			s.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			s.Fatal(err)
		}
		tKill := time.Now()
		_ = syscall.Kill(old.PID, syscall.SIGKILL)
		var st string
		for time.Since(tKill) < 15*time.Second {
			if p, ok := a.plugin("pinned"); ok && p.PID != old.PID && p.State != "restarting" && p.State != "starting" {
				st = string(p.State)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(tKill)
		_, v, reason := checkN(a, 3, req1("10.0.0.83/24", ""))
		_, busyV, _ := checkN(a, 3, req1(netlab.Busy4+"/24", ""))
		rd := readiness(a)
		p, _ := a.plugin("pinned")
		rows = append(rows, faultRow{
			fault: "third-party detector's binary changed after its checksum was pinned",
			done:  "faulty mode=ok copied and pinned with checksum = sha256 of it; agent ready; binary replaced by a 4-byte longer copy; plugin killed so that it is launched again",
			did: fmt.Sprintf("before: %s; after: %s; readiness %s; a check now: %s",
				before, pstate(a, "pinned"), rd, map[bool]string{true: reason, false: "the plugin is no longer asked"}[reason != ""]),
			numbers: fmt.Sprintf("state %s %s ms after the kill (pid %d, restarts %d); free address: %s; busy address: %s",
				st, ms(took), p.PID, p.Restarts, vstr(v), vstr(busyV)),
			held: st == "disabled" && p.PID == 0 && busyV["pass"] == 0 && !a.exited(),
		})
		a.stop()

		// Pinned wrong from the start.
		a2 := startAgent(s, b, agentOpts{name: "pinned2", nsPath: l.node, config: cfg})
		took2 := a2.waitReady(30 * time.Second)
		_, v2, _ := checkN(a2, 3, req1("10.0.0.84/24", ""))
		rows = append(rows, faultRow{
			fault:   "third-party detector's checksum wrong at start",
			done:    "the agent started with the same pin and the changed binary",
			did:     fmt.Sprintf("did not run it: %s; readiness %s", pstate(a2, "pinned"), readiness(a2)),
			numbers: fmt.Sprintf("agent ready in %s ms; free address: %s", ms(took2), vstr(v2)),
			held:    strings.HasPrefix(pstate(a2, "pinned"), "disabled"),
		})
	}))
	return rows
}

// ---- sysctl keys read-only or missing -----------------------------------------

func faultSysctl(s *scope, b *bins) []faultRow {
	ns := netlab.NewNS(s, "sysctl")
	netlab.IP(s, ns, "link", "set", "lo", "up")
	cfg := `plugin "sysctl-tuner" {
  config {
    set = {
      "net.core.rmem_max" = "8388608"
      "net.ipv4.conf.all.no_such_key" = "1"
    }
  }
}
`
	a := startAgent(s, b, agentOpts{name: "sysctl", nsPath: "/var/run/netns/" + ns, config: cfg})
	took := a.waitReady(30 * time.Second)
	p, _ := a.plugin("sysctl-tuner")
	var keys []struct {
		Key, State, Error string
	}
	_ = json.Unmarshal(p.Detail, &keys)
	var parts []string
	states := map[string]string{}
	for _, k := range keys {
		states[k.Key] = k.State
		e := ""
		if k.Error != "" {
			e = " (" + k.Error + ")"
		}
		parts = append(parts, k.Key+" "+k.State+e)
	}
	ro, missing := states["net.core.rmem_max"], states["net.ipv4.conf.all.no_such_key"]
	return []faultRow{{
		fault:   "sysctl keys read-only or missing",
		done:    "agent in a fresh namespace with set = { net.core.rmem_max (0444 in a child namespace), net.ipv4.conf.all.no_such_key (does not exist) }",
		did:     fmt.Sprintf("sysctl-tuner %s: %s; readiness 200", p.State, p.Message),
		numbers: fmt.Sprintf("ready in %s ms; keys: %s; panics in log: %d", ms(took), strings.Join(parts, "; "), a.panics()),
		held:    ro == "failed" && missing == "unsupported" && a.ready() && a.panics() == 0,
	}}
}

// ---- bad inputs ---------------------------------------------------------------
