package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
	"github.com/spiderpool-agent/spiderpool-agent/test/burst"
)

var (
	burstRuns   = flag.Int("burst-runs", 100, "runs of the burst load (15 x 256) in the \"burst\" fault rows")
	burstRuns4x = flag.Int("burst-runs-4x", 100, "runs of four times the burst load (60 x 256) in the \"burst\" fault rows")
)

// faultBurst proves that silence is a verdict only when proven: bursts of parallel 256-address
// requests on a LAN where one neighbour owns 10.77.0.1 and fd77::1 and is
// every other address's gateway - 15 requests at once (the burst load)
// and 60 (four times that), each burst repeated -burst-runs times against
// the agent as shipped. Errors are allowed under overload; a busy address
// that passes or an answering gateway that blocks is a wrong verdict, and
// the row holds only with none.
func faultBurst(s *scope, b *bins) []faultRow {
	lan := burst.NewLAN(s)
	a := startAgent(s, b, agentOpts{name: "burst", nsPath: lan.Node.Path, config: cfgDetect})
	a.waitReady(30 * time.Second)
	check := func(ctx context.Context, req control.CheckRequest) (state.CheckResult, int, error) {
		return a.check(ctx, req)
	}
	var rows []faultRow
	for _, load := range []struct{ parallel, runs int }{{15, *burstRuns}, {60, *burstRuns4x}} {
		parallel, runs := load.parallel, load.runs
		if runs <= 0 {
			continue
		}
		var (
			total burst.Tally
			walls sample
			clean int // runs with no error at all
		)
		seq := 0
		for run := 0; run < runs; run++ {
			reqs := make([]burst.Request, parallel)
			for i := range reqs {
				reqs[i] = burst.NewRequest(lan, seq%200, 256)
				seq++
			}
			t0 := time.Now()
			tl := burst.Run(check, reqs, 60*time.Second)
			walls = append(walls, time.Since(t0))
			if tl.Errors == 0 {
				clean++
			}
			total.Add(tl)
			if *verbose {
				progress("burst %dx256 run %d: %s", parallel, run, tl)
			}
		}
		st := pluginProbeStats(a)
		row := faultRow{
			fault: fmt.Sprintf("burst of %d parallel requests of 256 addresses", parallel),
			done: fmt.Sprintf("%d runs; each: %d requests at once, the neighbour's 10.77.0.1 and fd77::1 (busy) among 256 addresses, every other address with the neighbour as gateway; agent as shipped (probe_rate 4000, window 100ms, timeout 5s)",
				runs, parallel),
			did: fmt.Sprintf("**%d wrong verdicts** (busy passed %d, answering gateway blocked %d, other %d); %d of %d addresses right, %d errors; %d of %d runs without any error",
				total.Wrong(), total.BusyPassed, total.GatewayBlocked, total.OtherWrong, total.Right, total.Addresses, total.Errors, clean, runs),
			numbers: fmt.Sprintf("burst wall time p50 %s ms, p99 %s ms, max %s ms; %s", ms(walls.p50()), ms(walls.p99()), ms(walls.max()), st),
			held:    total.Wrong() == 0,
		}
		if len(total.ErrorReasons) > 0 {
			row.numbers += "; error reasons: " + topReasons(total.ErrorReasons, 3)
		}
		if total.FirstWrong != "" {
			row.numbers += "; first wrong: " + total.FirstWrong
		}
		if n := a.panics(); n > 0 {
			row.held = false
			row.numbers += fmt.Sprintf("; %d log lines mention panic", n)
		}
		rows = append(rows, row)
	}
	return rows
}

// topReasons lists the n most frequent reasons.
func topReasons(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j].v > all[i].v {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	out := ""
	for i, e := range all {
		if i == n {
			out += fmt.Sprintf(", and %d more kinds", len(all)-n)
			break
		}
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%dx %q", e.v, e.k)
	}
	return out
}

// pluginProbeStats summarises the detectors' probe metrics from the agent's
// status: what the engine did to prove silence.
func pluginProbeStats(a *agent) string {
	st, err := a.status()
	if err != nil {
		return "status: " + err.Error()
	}
	out := ""
	for _, p := range st.Plugins {
		if p.Name != "ip-conflict" && p.Name != "gateway-detector" {
			continue
		}
		out += fmt.Sprintf("%s restarts %d; ", p.Name, p.Restarts)
	}
	return out + "plugin pids " + fmt.Sprint(a.pluginPIDs())
}
