package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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

// ---- kill -9 of the agent under load --------------------------------------

func faultAgentKill(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	a := startAgent(s, b, agentOpts{name: "victim", nsPath: l.node, config: cfgDetect})
	a.waitReady(30 * time.Second)
	pids := a.pluginPIDs()
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
	l := newLab(s, b)
	a := startAgent(s, b, agentOpts{name: "term", nsPath: l.node, config: cfgDetect})
	a.waitReady(30 * time.Second)
	pids := a.pluginPIDs()
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
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t0 := time.Now()
			resp, code, err := a.check(ctx, req)
			lat = append(lat, time.Since(t0))
			cancel()
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

func faultBadInput(s *scope, b *bins, out io.Writer) []faultRow {
	var rows []faultRow
	rows = append(rows, badConfigs(s, b, out))
	l := newLab(s, b)
	// A plain switch: br_netfilter (loaded on hosts that run Docker) would
	// otherwise validate IPv6 and ARP headers in the bridge and drop the
	// very frames under test before they reach the node.
	for _, k := range []string{"net.bridge.bridge-nf-call-arptables", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err == nil {
			netlab.Sysctl(s, l.lan.Bridge, k, "0")
		}
	}
	// Jumbo frames between the evil host and the node.
	evil := l.lan.AddHost("evil", "02:00:00:00:00:66")
	for _, h := range []*netlab.Host{l.lan.Node, evil} {
		netlab.IP(s, l.lan.Bridge, "link", "set", h.Port, "mtu", "9000")
		netlab.IP(s, h.NS, "link", "set", "eth0", "mtu", "9000")
	}
	netlab.IP(s, l.lan.Bridge, "link", "set", "br0", "mtu", "9000")
	a := startAgent(s, b, agentOpts{name: "inputs", nsPath: l.node, config: cfgDetect})
	a.waitReady(30 * time.Second)
	rows = append(rows, badAPI(s, a, out))
	rows = append(rows, badCLI(s, b, a, out))
	rows = append(rows, badFrames(s, l, evil, a, out))
	return rows
}

// badConfigs starts the daemon on each bad configuration.
func badConfigs(s *scope, b *bins, out io.Writer) faultRow {
	ns := netlab.NewNS(s, "cfg")
	netlab.IP(s, ns, "link", "set", "lo", "up")
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	corpus := []struct{ name, hcl, yml string }{
		{"syntax error", "log_level = \n", ""},
		{"unknown attribute", "no_such_setting = 1\n", ""},
		{"wrong type", "health_port = \"abc\"\n", ""},
		{"port out of range", "health_port = 70000\n", ""},
		{"bad duration", "shutdown_timeout = \"soon\"\n", ""},
		{"both families off", "enable_ipv4 = false\nenable_ipv6 = false\n", ""},
		{"unknown plugin attribute", "plugin \"ip-conflict\" {\n  colour = \"red\"\n}\n", ""},
		{"plugin name with capitals", "plugin \"Bad_Name\" {\n}\n", ""},
		{"malformed checksum", "plugin \"ip-conflict\" {\n  checksum = \"md5:abc\"\n}\n", ""},
		{"bad failure_policy", "plugin \"ip-conflict\" {\n  failure_policy = \"maybe\"\n}\n", ""},
		{"plugin config against its schema", "plugin \"ip-conflict\" {\n  config {\n    window = \"-1s\"\n    colour = 1\n  }\n}\n", ""},
		{"duplicate attribute", "log_level = \"info\"\nlog_level = \"debug\"\n", ""},
		{"binary junk", string(junk(4096, 7)), ""},
		{"NUL bytes", "log_level = \"in\x00fo\"\n", ""},
		{"100,000 nested brackets", "x = " + deep + "\n", ""},
		{"1 MiB string", "log_level = \"" + strings.Repeat("a", 1<<20) + "\"\n", ""},
		{"malformed conf.yml", "", "enableIPv4: [true\n  : :\n"},
		{"conf.yml with wrong types", "", "enableIPv4: \"sometimes\"\nipamUnixSocketPath: 7\n"},
	}
	clear, panics, started := 0, 0, 0
	var worst []string
	var lat sample
	for _, c := range corpus {
		dir := s.TempDir()
		body := c.hcl
		if body == "" {
			body = "log_level = \"info\"\n"
		}
		// Every file also points the agent at a private socket and plugin dir.
		pre := fmt.Sprintf("socket_path = %q\nplugin_dir = %q\n", filepath.Join(dir, "s.sock"), b.pluginDir)
		_ = os.WriteFile(filepath.Join(dir, "00-paths.hcl"), []byte(pre), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "10-bad.hcl"), []byte(body), 0o644)
		if c.yml != "" {
			_ = os.WriteFile(filepath.Join(dir, "conf.yml"), []byte(c.yml), 0o644)
		}
		// A daemon that starts anyway is killed after 3 s.
		code, took, output := runIn("/var/run/netns/"+ns, 3*time.Second, b.agent, "daemon", "--config-dir", dir)
		first := ""
		for _, line := range strings.Split(output, "\n") {
			if strings.Contains(line, "10-bad.hcl:") || strings.Contains(line, "conf.yml") || isPanicLine(line) {
				first = strings.TrimSpace(line)
				break
			}
		}
		if first == "" {
			first = strings.SplitN(strings.TrimSpace(output), "\n", 2)[0]
		}
		if len(first) > 140 {
			first = first[:140] + "…"
		}
		// Named: file:line:col, or the file alone for what concerns the
		// whole file (the 1 MiB bound on a config file's size).
		named := strings.Contains(output, "10-bad.hcl:") || strings.Contains(output, "conf.yml") ||
			(strings.Contains(output, "10-bad.hcl is ") && strings.Contains(output, "bytes"))
		panicked := hasPanic(output)
		if panicked {
			panics++
		}
		switch {
		case panicked:
			worst = append(worst, fmt.Sprintf("%s: exit %d after %s ms: %s", c.name, code, ms(took), first))
		case code == -1 && named && strings.Contains(output, "rejected"):
			// It ran, and refused the plugin's block with its position.
			started++
			clear++
		case code == -1:
			worst = append(worst, fmt.Sprintf("%s: still running after 3 s", c.name))
		case code != 0 && named:
			clear++
			lat = append(lat, took)
		default:
			worst = append(worst, fmt.Sprintf("%s: exit %d: %s", c.name, code, first))
		}
		if *verbose {
			progress("config %q: exit %d in %v: %s", c.name, code, took, first)
		}
	}
	row := faultRow{fault: "bad configuration files",
		done: fmt.Sprintf("%d bad configs (syntax, types, ranges, unknown keys, plugin schema, junk, NUL, 100,000 nested brackets, 1 MiB string, bad conf.yml); `spiderpool-agent daemon --config-dir` on each", len(corpus)),
		did: fmt.Sprintf("%d refused to start with an error naming file:line:column; %d started and refused the plugin's config block with file:line:column (the plugin failed, the agent ran); %d other",
			clear-started, started, len(corpus)-clear),
		numbers: fmt.Sprintf("refusals within p50 %s ms, max %s ms; runs that crashed: %d", ms(lat.p50()), ms(lat.max()), panics),
		held:    panics == 0 && clear == len(corpus),
	}
	if len(worst) > 0 {
		row.numbers += "; not clear: " + strings.Join(worst, " / ")
	}
	return row
}

// badAPI sends malformed requests to the control socket.
func badAPI(s *scope, a *agent, out io.Writer) faultRow {
	addrs := func(n int) string {
		var p []string
		for i := 0; i < n; i++ {
			p = append(p, fmt.Sprintf(`{"address":"10.5.%d.%d/16"}`, i/250, i%250+1))
		}
		return "[" + strings.Join(p, ",") + "]"
	}
	type req struct {
		name, method, path, ctype, body string
		want                            int // 0: any 4xx
	}
	corpus := []req{
		{"empty body", "POST", "/v1/check", "application/json", "", 400},
		{"truncated JSON", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"`, 400},
		{"JSON array", "POST", "/v1/check", "application/json", `[]`, 400},
		{"JSON null", "POST", "/v1/check", "application/json", `null`, 400},
		{"JSON string", "POST", "/v1/check", "application/json", `"check"`, 400},
		{"interface is a number", "POST", "/v1/check", "application/json", `{"interface":5,"addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"no interface", "POST", "/v1/check", "application/json", `{"addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"interface of 16 bytes", "POST", "/v1/check", "application/json", `{"interface":"abcdefghijklmnop","addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"interface with a slash", "POST", "/v1/check", "application/json", `{"interface":"../eth0","addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"no addresses", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[]}`, 400},
		{"257 addresses", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":` + addrs(257) + `}`, 400},
		{"bare IP", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5"}]}`, 400},
		{"IPv4-mapped IPv6", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"::ffff:10.0.0.5/120"}]}`, 400},
		{"multicast", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"224.0.0.1/24"}]}`, 400},
		{"loopback", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"127.0.0.1/8"}]}`, 400},
		{"unspecified", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"0.0.0.0/0"}]}`, 400},
		{"gateway of the other family", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24","gateway":"fd00::1"}]}`, 400},
		{"gateway is the address", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24","gateway":"10.0.0.5"}]}`, 400},
		{"same address twice", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"},{"address":"10.0.0.5/24"}]}`, 400},
		{"unknown field", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"}],"colour":"red"}`, 400},
		{"two JSON documents", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"}]}{"x":1}`, 400},
		{"relative netns", "POST", "/v1/check", "application/json", `{"interface":"eth0","netns":"netns/x","addresses":[{"address":"10.0.0.5/24"}]}`, 400},

		{"100,000 nested arrays", "POST", "/v1/check", "application/json", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 400},
		{"GET /v1/check", "GET", "/v1/check", "", "", 405},
		{"unknown path", "POST", "/v1/nope", "application/json", "{}", 404},
		{"text/plain body", "POST", "/v1/check", "text/plain", "check 10.0.0.5 please", 400},
	}
	clear, fiveXX := 0, 0
	corpusN := len(corpus)
	var notClear []string
	for _, r := range corpus {
		code, body, err := a.rawRequest(r.method, r.path, r.ctype, []byte(r.body))
		var eb api.ErrorBody
		jsonErr := json.Unmarshal(body, &eb)
		ok := err == nil && code >= 400 && code < 500 && jsonErr == nil && eb.Error != "" && (r.want == 0 || code == r.want)
		if code >= 500 {
			fiveXX++
		}
		if ok {
			clear++
		} else {
			notClear = append(notClear, fmt.Sprintf("%s: %d %v %.100s", r.name, code, err, body))
		}
		if *verbose {
			progress("api %q: %d %.120s", r.name, code, body)
		}
	}
	// An oversized body, written while the answer is read: the agent answers
	// 413 and closes before the client has written it all, which a plain
	// client reports as a broken pipe instead of the answer.
	{
		big := `{"interface":"eth0","x":"` + strings.Repeat("a", 2<<20) + `"}`
		code, body := rawHTTP(a.Socket, fmt.Sprintf("POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
		var eb api.ErrorBody
		_ = json.Unmarshal(body, &eb)
		corpusN++
		if code == 413 && eb.Error != "" {
			clear++
		} else {
			notClear = append(notClear, fmt.Sprintf("2 MiB body: %d %.100s", code, body))
		}
	}
	// Valid requests the agent cannot serve: a clear error verdict, not a 5xx.
	// Invalid UTF-8 is decoded as U+FFFD by encoding/json, which makes a
	// well-formed name of an interface that does not exist.
	valid := []struct{ name, body string }{
		{"interface name with invalid UTF-8", "{\"interface\":\"eth\xff\xfe\",\"addresses\":[{\"address\":\"10.0.0.5/24\"}]}"},
		{"interface that does not exist", `{"interface":"nope0","addresses":[{"address":"10.0.0.5/24"}]}`},
		{"netns that does not exist", `{"interface":"eth0","netns":"/var/run/netns/does-not-exist","addresses":[{"address":"10.0.0.5/24"}]}`},
	}
	errVerdicts := 0
	for _, v := range valid {
		code, body, err := a.rawRequest("POST", "/v1/check", "application/json", []byte(v.body))
		var resp api.CheckResult
		if err == nil && code == 200 && json.Unmarshal(body, &resp) == nil && len(resp.Addresses) == 1 && resp.Addresses[0].Verdict == "error" {
			if *verbose {
				progress("api %q: %.300s", v.name, body)
			}
			errVerdicts++
		} else {
			notClear = append(notClear, fmt.Sprintf("%s: %d %v %.160s", v.name, code, err, body))
		}
	}
	// Bytes that are not HTTP at all.
	rawOK := 0
	rawJunk := [][]byte{junk(512, 9), []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), []byte("POST /v1/check HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), []byte("GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 20000) + "\r\n")}
	for _, j := range rawJunk {
		c, err := net.DialTimeout("unix", a.Socket, 2*time.Second)
		if err != nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write(j)
		resp, _ := io.ReadAll(io.LimitReader(c, 4096))
		c.Close()
		if strings.HasPrefix(string(resp), "HTTP/1.1 4") || len(resp) == 0 {
			rawOK++
		} else {
			notClear = append(notClear, fmt.Sprintf("raw junk: %.80q", resp))
		}
	}
	ready := a.ready()
	row := faultRow{fault: "bad API bodies on the control socket",
		done: fmt.Sprintf("%d malformed requests (bad JSON, wrong types, bad names and addresses, 257 addresses, 100,000 nested arrays, 2 MiB body, wrong method/path/type), %d well-formed requests naming a missing interface (one spelled in invalid UTF-8) or netns, %d non-HTTP byte streams", corpusN, len(valid), len(rawJunk)),
		did: fmt.Sprintf("%d/%d answered 4xx with a JSON error naming the problem; %d/%d answered 200 with verdict error and the reason; %d/%d junk streams answered 400 or closed; readiness after: %v",
			clear, corpusN, errVerdicts, len(valid), rawOK, len(rawJunk), ready),
		numbers: fmt.Sprintf("5xx: %d; panics in log: %d", fiveXX, a.panics()),
		held:    clear == corpusN && errVerdicts == len(valid) && rawOK == len(rawJunk) && fiveXX == 0 && ready && a.panics() == 0,
	}
	if len(notClear) > 0 {
		row.numbers += "; not clear: " + strings.Join(notClear, " / ")
	}
	return row
}

// rawHTTP writes req to the unix socket while reading the answer, and
// returns the status code and body of the answer.
func rawHTTP(socket, req string) (int, []byte) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, body
}

// badCLI runs the CLI with bad arguments.
func badCLI(s *scope, b *bins, a *agent, out io.Writer) faultRow {
	sock := a.Socket
	corpus := [][]string{
		{},
		{"frobnicate"},
		{"check"},
		{"check", "--socket", sock, "--interface", "eth0"},
		{"check", "--socket", sock, "--ip", "10.0.0.5/24"},
		{"check", "--socket", sock, "--interface"},
		{"check", "--socket", sock, "--gateway", "10.0.0.1", "--interface", "eth0"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "not-an-ip"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--gateway", "fd00::1"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--gateway", "10.0.0.1", "--gateway", "10.0.0.2"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--timeout", "banana"},
		{"check", "--socket", "/nonexistent/agent.sock", "--interface", "eth0", "--ip", "10.0.0.5/24"},
		{"check", "--socket", "/dev/null", "--interface", "eth0", "--ip", "10.0.0.5/24"},
		{"check", "--socket", sock, "--interface", strings.Repeat("x", 100000), "--ip", "10.0.0.5/24"},
		{"check", "--bogus"},
		{"daemon", "--config-dir", "/nonexistent"},
		{"daemon", "--bogus"},
		{"status", "--socket", "/nonexistent/agent.sock"},
		{"shutdown", "--socket", "/nonexistent/agent.sock"},
		{"metric", "--port", "0"},
		{"metric", "--port", "99999"},
		{"config", "validate", "--config-dir", "/nonexistent"},
		{"version", "extra", "args"},
	}
	clear, panics := 0, 0
	var notClear []string
	var lat sample
	for _, args := range corpus {
		code, took, output := runIn(a.NetnsPath, 20*time.Second, append([]string{b.agent}, args...)...)
		lat = append(lat, took)
		if hasPanic(output) {
			panics++
		}
		if code > 0 && strings.TrimSpace(output) != "" {
			clear++
		} else {
			first := strings.SplitN(strings.TrimSpace(output), "\n", 2)[0]
			notClear = append(notClear, fmt.Sprintf("`%.60s`: exit %d %.100s", strings.Join(args, " "), code, first))
		}
		if *verbose {
			progress("cli %.80q: exit %d: %.160s", args, code, output)
		}
	}
	row := faultRow{fault: "bad CLI arguments",
		done:    fmt.Sprintf("%d bad command lines (missing and unknown flags, bad addresses, gateway order, no agent, 100,000-byte interface, bad ports)", len(corpus)),
		did:     fmt.Sprintf("%d/%d exited non-zero with a message", clear, len(corpus)),
		numbers: fmt.Sprintf("exit within p50 %s ms, max %s ms; panics: %d; agent ready after: %v", ms(lat.p50()), ms(lat.max()), panics, a.ready()),
		held:    clear == len(corpus) && panics == 0,
	}
	if len(notClear) > 0 {
		row.numbers += "; not clear: " + strings.Join(notClear, " / ")
	}
	return row
}

// badFrames sends the frame corpus from the evil host while the node checks
// a fresh candidate for each frame.
func badFrames(s *scope, l *lab, evilHost *netlab.Host, a *agent, out io.Writer) faultRow {
	evil := openRaw(s, evilHost.Path)
	node := openRaw(s, l.node)
	seen := countFrom(node, evil.mac)
	defer seen.close()
	corpus := frameCorpus()
	t := newTable("Bad frames from a host on the LAN, sent during a check of the candidate they name",
		"frame", "bytes", "sent", "reached the node", "candidate's verdict", "want", "ok")
	right, delivered := 0, 0
	for i, c := range corpus {
		var cand netip.Addr
		var prefix string
		if c.family == 4 {
			cand = netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 200+i))
			prefix = "/24"
		} else {
			cand = netip.MustParseAddr(fmt.Sprintf("fd00::6:%x", i+1))
			prefix = "/64"
		}
		frame := c.build(evil.mac, cand)
		before := seen.count(len(frame))
		done := make(chan struct{})
		var resp api.CheckResult
		var code int
		var err error
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, code, err = a.check(ctx, req1(cand.String()+prefix, ""))
		}()
		time.Sleep(15 * time.Millisecond) // the check's window is open
		sendErr := sendSpread(evil, frame, 3, 10*time.Millisecond)
		<-done
		time.Sleep(20 * time.Millisecond)
		got := seen.count(len(frame)) - before
		verdict := "?"
		if err == nil && code == 200 && len(resp.Addresses) == 1 {
			verdict = string(resp.Addresses[0].Verdict)
		} else {
			verdict = fmt.Sprintf("%d %v", code, err)
		}
		ok := verdict == c.want
		if ok {
			right++
		}
		if got >= 3 {
			delivered++
		}
		sent := "3"
		if sendErr != nil {
			sent = sendErr.Error()
		}
		t.add(c.String(), len(frame), sent, got, verdict, c.want, map[bool]string{true: "yes", false: "**no**"}[ok])
	}
	ready := a.ready()
	t.note("Each frame names its own fresh candidate and is sent 3 times, 10 ms apart, 15 ms into that candidate's check. \"reached the node\" counts the copies a packet socket on the node's eth0 saw (proof that the frame was on the wire where the ip-conflict plugin listens). The controls show that a well-formed claim from the same host is caught.")
	t.write(out)
	return faultRow{fault: "truncated, oversized and malformed frames from a host on the LAN",
		done:    fmt.Sprintf("%d kinds of frame (ARP cut short, bad sizes and operation, 9000-byte junk, NA/NS with bad length, checksum, hop limit and options; 2 well-formed controls) from a raw socket on a LAN host, MTU 9000", len(corpus)),
		did:     fmt.Sprintf("ignored every malformed frame (the candidate stayed free) and caught both controls: %d/%d verdicts as they should be; readiness after: %v", right, len(corpus), ready),
		numbers: fmt.Sprintf("%d/%d kinds reached the node; panics in log: %d; see the table above", delivered, len(corpus), a.panics()),
		held:    right == len(corpus) && delivered == len(corpus) && ready && a.panics() == 0,
	}
}
