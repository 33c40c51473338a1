package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The storm rows of the CNI section: a node's reboot, cniBurst dual-stack
// workloads started at once through libcni and macvlan, with both
// detections on, with detection off, and with host-local, on the same
// chains in the same run; and where the detecting storm's time goes, from
// the agent's own debug line per allocation ("allocation steps": its start
// on the wall clock and the time of each step) lined up with each ADD's
// start and end as libcni saw them.

// stormRun is one storm of cniBurst ADDs.
type stormRun struct {
	label    string
	start    time.Time // the release
	all      time.Duration
	took     sample
	errs     int
	dups     int
	firstErr string
	load     string
	ids      []string
	netns    []string
	addStart []time.Time
	addEnd   []time.Time
	failed   []bool
	// ours and agentCPU are the CPU time of this program's tree (libcni,
	// the plugins it execs, the agent) and of the agent and its plugins
	// alone, over the storm.
	ours, agentCPU time.Duration
}

// stormStep is an allocation's "allocation steps" line, with its
// "allocation check" line when it checked.
type stormStep struct {
	start                                           time.Time
	total, reserve, linkUp, linkDown, check, commit time.Duration
	// agentCheck is the check as the agent's orchestration timed it;
	// detector the slowest detector call, plugin its time inside the
	// plugin.
	agentCheck, detector, plugin time.Duration
}

// other is the allocation's time outside its timed steps.
func (st stormStep) other() time.Duration {
	return st.total - st.reserve - st.linkUp - st.linkDown - st.check - st.commit
}

// benchCNIStorm runs the storm rows -storm-repeat times, the three IPAMs
// in turn each time, and writes the storm table and the breakdown of the
// detecting storms. a is the agent behind the spiderpool lists; its log
// must be JSON at debug level.
func benchCNIStorm(s *scope, rt *cnilab.Runtime, a *agent, dir string, lists map[string]*libcni.NetworkConfigList, out io.Writer) target {
	t := newTable(fmt.Sprintf("CNI IPAM: a node's reboot storm, %d dual-stack workloads started at once through macvlan, the workload's own DAD off", cniBurst),
		"IPAM", "round", "ADDs", "errors", "duplicate addresses", "all done ms", "ADD p50 ms", "ADD p99 ms", "ADD max ms", "target", "met", "others' CPU")
	var ons, offs []stormRun
	allMet, worst := true, ""
	for r := 1; r <= *stormRepeat; r++ {
		on := runStorm(s, rt, a, lists["dual-on"], "`spiderpool` dual stack, both detections on", fmt.Sprintf("storm-on-%d", r))
		off := runStorm(s, rt, a, lists["dual-off"], "`spiderpool` dual stack, detection off", fmt.Sprintf("storm-off-%d", r))
		hl := runStorm(s, rt, nil, lists["hl-dual"], "`host-local` "+cnilab.PluginsVersion+" dual stack", fmt.Sprintf("storm-hl-%d", r))
		want := hl.all + 2*window
		met := on.errs == 0 && on.dups == 0 && on.all <= want
		allMet = allMet && met
		goal := fmt.Sprintf("all within host-local's %s + 2 windows = %s ms, 0 errors, 0 duplicates", ms(hl.all), ms(want))
		t.add(on.label, r, cniBurst, on.errs, on.dups, on.all, on.took.p50(), on.took.p99(), on.took.max(), goal, metStr(met), on.load)
		t.add(off.label, r, cniBurst, off.errs, off.dups, off.all, off.took.p50(), off.took.p99(), off.took.max(), "(comparison)", "", off.load)
		t.add(hl.label, r, cniBurst, hl.errs, hl.dups, hl.all, hl.took.p50(), hl.took.p99(), hl.took.max(), "(comparison)", "", hl.load)
		worst += fmt.Sprintf("%sround %d: %s ms against %s ms (%d errors, %d duplicates)", map[bool]string{true: "", false: "; "}[worst == ""], r, ms(on.all), ms(want), on.errs, on.dups)
		for _, sr := range []stormRun{on, off, hl} {
			if sr.firstErr != "" {
				t.note("First error of %s, round %d: %s", sr.label, r, sr.firstErr)
			}
		}
		ons, offs = append(ons, on), append(offs, off)
	}
	t.note("Each ADD is libcni execing macvlan, which makes the interface, moves it into the workload's namespace and execs the IPAM plugin; %d such chains released at once, each workload in a namespace of its own with its own DAD off (`accept_dad = 0`: macvlan otherwise waits 1-2 s for the kernel's DAD of the workload's new IPv6 address, which is no part of IPAM and would drown what is compared here, as in the sequential dual-stack rows). Both detections are the built-ins as shipped: an ARP probe and a DAD probe from `::` for the candidates, an ARP request and a neighbour solicitation for the gateways, one reply window (%v) for all four. host-local gets the same two families (10.0.2.0/24 and fd00:3::/64). Duplicates count an address given twice in one family. The target: all done within host-local's time for the same chains plus two reply windows.", cniBurst, window)
	t.write(out)
	progress("cni: %d process starts at once, for the breakdown", 2*cniBurst)
	starts := concurrentStarts(s, dir)
	writeStormBreakdown(a, ons, offs, starts, out)
	return target{what: fmt.Sprintf("%d dual-stack CNI ADDs at once, both detections on (the workload's own DAD off)", cniBurst),
		want: "all within host-local's time for the same chains + 2 windows, 0 errors, 0 duplicates", got: worst, met: allMet,
		why: "see the breakdown under the storm table: the chain's process starts and interface work on 2 CPUs come before the agent sees a request"}
}

// runStorm starts cniBurst dual-stack workloads at once on list and
// deletes them after. a is the agent (nil for host-local), whose CPU the
// run counts.
func runStorm(s *scope, rt *cnilab.Runtime, a *agent, list *libcni.NetworkConfigList, label, prefix string) stormRun {
	progress("cni: storm of %d dual-stack ADDs, %s", cniBurst, label)
	ws := make([]cnilab.Attachment, cniBurst)
	for i := range ws {
		ns := netlab.NewNS(s, "s")
		netlab.Sysctl(s, ns, "net.ipv6.conf.all.accept_dad", "0", "net.ipv6.conf.default.accept_dad", "0")
		ws[i] = cnilab.Attachment{ContainerID: fmt.Sprintf("%s-%d", prefix, i), Netns: "/var/run/netns/" + ns, IfName: "net1"}
	}
	r := stormRun{label: label, ids: make([]string, cniBurst), netns: make([]string, cniBurst), addStart: make([]time.Time, cniBurst), addEnd: make([]time.Time, cniBurst), failed: make([]bool, cniBurst)}
	addrs := make([][]netip.Addr, cniBurst)
	errs := make([]error, cniBurst)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var agentCPU0 time.Duration
	if a != nil {
		agentCPU0, _ = a.cpu()
	}
	ours0 := treeTicks(os.Getpid())
	m := markCPU()
	release := make(chan struct{})
	var ready, wg sync.WaitGroup
	ready.Add(cniBurst)
	for i := range ws {
		r.ids[i], r.netns[i] = ws[i].ContainerID, ws[i].Netns
		wg.Go(func() {
			ready.Done()
			<-release
			r.addStart[i] = time.Now()
			res, err := rt.Add(ctx, list, ws[i])
			r.addEnd[i] = time.Now()
			if err == nil {
				var cr *current.Result
				if cr, err = current.NewResultFromResult(res); err == nil {
					for _, ip := range cr.IPs {
						if ad, ok := netip.AddrFromSlice(ip.Address.IP); ok {
							addrs[i] = append(addrs[i], ad.Unmap())
						}
					}
					if len(addrs[i]) != 2 {
						err = fmt.Errorf("result has %d addresses, want one per family: %v", len(addrs[i]), res)
					}
				}
			}
			errs[i] = err
		})
	}
	ready.Wait()
	r.start = time.Now()
	close(release)
	wg.Wait()
	r.all = time.Since(r.start)
	r.load = m.otherLoad()
	r.ours = time.Duration(treeTicks(os.Getpid())-ours0) * clockTick
	if a != nil {
		c, _ := a.cpu()
		r.agentCPU = c - agentCPU0
	}
	seen := map[netip.Addr]bool{}
	for i, err := range errs {
		if err != nil {
			r.errs++
			r.failed[i] = true
			if r.firstErr == "" {
				r.firstErr = err.Error()
			}
			continue
		}
		r.took = append(r.took, r.addEnd[i].Sub(r.addStart[i]))
		for _, ad := range addrs[i] {
			if seen[ad] {
				r.dups++
			}
			seen[ad] = true
		}
	}
	for i := range ws {
		wg.Go(func() { _ = rt.Del(ctx, list, ws[i]) })
	}
	wg.Wait()
	return r
}

// concurrentStarts is the time 2*cniBurst process starts take at once on
// this machine, half macvlan and half the IPAM plugin (CNI_COMMAND=VERSION,
// which does nothing else): the process starts of a storm without the rest.
func concurrentStarts(s *scope, dir string) time.Duration {
	var wg sync.WaitGroup
	release := make(chan struct{})
	var failed sync.Once
	var ferr error
	for i := 0; i < 2*cniBurst; i++ {
		bin := filepath.Join(dir, "macvlan")
		if i%2 == 1 {
			bin = filepath.Join(dir, "spiderpool")
		}
		wg.Go(func() {
			cmd := exec.Command(bin)
			cmd.Env = append(agenttest.CleanEnv(), "CNI_COMMAND=VERSION")
			<-release
			if err := cmd.Run(); err != nil {
				failed.Do(func() { ferr = fmt.Errorf("%s VERSION: %w", bin, err) })
			}
		})
	}
	t0 := time.Now()
	close(release)
	wg.Wait()
	if ferr != nil {
		s.Fatal(ferr)
	}
	return time.Since(t0)
}

// agentSteps reads the agent's "allocation steps" lines (JSON log) by
// container id, each with its "allocation check" line (by namespace path:
// each workload of a storm has its own).
func agentSteps(log string, netnsOf map[string]string) map[string]stormStep {
	out := map[string]stormStep{}
	checks := map[string]stormStep{}
	d := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"allocation `) {
			continue
		}
		var v map[string]any
		if json.Unmarshal(line, &v) != nil {
			continue
		}
		num := func(k string) time.Duration { f, _ := v[k].(float64); return d(f) }
		str := func(k string) string { x, _ := v[k].(string); return x }
		switch str("@message") {
		case "allocation steps":
			st, err := time.Parse(time.RFC3339Nano, str("start"))
			if err != nil {
				continue
			}
			out[str("container_id")] = stormStep{start: st, total: num("total_ms"), reserve: num("reserve_ms"), linkUp: num("link_up_ms"),
				linkDown: num("link_down_ms"), check: num("check_ms"), commit: num("commit_ms")}
		case "allocation check":
			c := stormStep{agentCheck: num("duration_ms")}
			for k := range v {
				if name, ok := strings.CutSuffix(k, "_plugin_ms"); ok {
					if det := num(name + "_ms"); det > c.detector {
						c.detector, c.plugin = det, num(k)
					}
				}
			}
			checks[str("netns")] = c
		}
	}
	for id, st := range out {
		if c, ok := checks[netnsOf[id]]; ok {
			st.agentCheck, st.detector, st.plugin = c.agentCheck, c.detector, c.plugin
			out[id] = st
		}
	}
	return out
}

// writeStormBreakdown lines each ADD of the spiderpool storms up with the
// agent's steps of its allocation and writes where the time went.
func writeStormBreakdown(a *agent, ons, offs []stormRun, starts time.Duration, out io.Writer) {
	netnsOf := map[string]string{}
	for _, r := range append(append([]stormRun(nil), ons...), offs...) {
		for i, id := range r.ids {
			netnsOf[id] = r.netns[i]
		}
	}
	steps := agentSteps(a.Log(), netnsOf)
	type cols struct {
		before, agent, other, reserve, linkUp, linkDown, check, beyond, commit, after, whole sample
		around, hop, plugin                                                                  sample
		arrivalFirst, arrivalLast                                                            sample
		last                                                                                 []time.Duration // the steps of the last ADD to finish, per round
		missing                                                                              int
		cpuAgent, cpuOurs, wall                                                              time.Duration
		worst                                                                                time.Duration // the round whose last ADD is in last
	}
	collect := func(runs []stormRun) *cols {
		c := &cols{}
		for _, r := range runs {
			first, lastArr := time.Duration(-1), time.Duration(0)
			lastEnd, lastIdx := time.Time{}, -1
			for i, id := range r.ids {
				st, ok := steps[id]
				if r.failed[i] || !ok {
					if !r.failed[i] {
						c.missing++
					}
					continue
				}
				before := st.start.Sub(r.addStart[i])
				after := r.addEnd[i].Sub(st.start.Add(st.total))
				c.before = append(c.before, before)
				c.agent = append(c.agent, st.total)
				c.other = append(c.other, st.other())
				c.reserve = append(c.reserve, st.reserve)
				c.linkUp = append(c.linkUp, st.linkUp)
				c.linkDown = append(c.linkDown, st.linkDown)
				c.check = append(c.check, st.check)
				if st.check > 0 {
					c.beyond = append(c.beyond, st.check-window)
					c.around = append(c.around, st.check-st.detector)
					c.hop = append(c.hop, st.detector-st.plugin)
					c.plugin = append(c.plugin, st.plugin)
				}
				c.commit = append(c.commit, st.commit)
				c.after = append(c.after, after)
				c.whole = append(c.whole, r.addEnd[i].Sub(r.addStart[i]))
				arr := st.start.Sub(r.start)
				if first < 0 || arr < first {
					first = arr
				}
				lastArr = max(lastArr, arr)
				if r.addEnd[i].After(lastEnd) {
					lastEnd, lastIdx = r.addEnd[i], i
				}
			}
			if first >= 0 {
				c.arrivalFirst = append(c.arrivalFirst, first)
				c.arrivalLast = append(c.arrivalLast, lastArr)
			}
			if lastIdx >= 0 && r.all >= c.worst {
				c.worst = r.all
				st := steps[r.ids[lastIdx]]
				c.last = []time.Duration{st.start.Sub(r.addStart[lastIdx]), st.other(), st.reserve, st.linkUp, st.check, st.check - window,
					st.check - st.detector, st.detector - st.plugin, st.plugin, st.linkDown, st.commit,
					r.addEnd[lastIdx].Sub(st.start.Add(st.total)), r.addEnd[lastIdx].Sub(r.addStart[lastIdx])}
			}
			c.cpuAgent += r.agentCPU
			c.cpuOurs += r.ours
			c.wall += r.all
		}
		return c
	}
	on, off := collect(ons), collect(offs)
	t := newTable(fmt.Sprintf("Where the storm's time goes: each of the %d ADDs of every round lined up with the agent's steps of its allocation", cniBurst),
		"part of an ADD", "both on: p50 ms", "both on: max ms", "both on: the last ADD to finish, ms", "detection off: p50 ms", "detection off: max ms")
	row := func(what string, idx int, son, soff sample) {
		last := "-"
		if len(on.last) > 0 && idx >= 0 {
			last = ms(on.last[idx])
		}
		if soff == nil {
			t.add(what, son.p50(), son.max(), last, "-", "-")
			return
		}
		t.add(what, son.p50(), son.max(), last, soff.p50(), soff.max())
	}
	row("before the agent: libcni execs macvlan, which makes the interface, moves it into the namespace and execs `spiderpool`, which connects and sends its request", 0, on.before, off.before)
	row("in the agent: reads, flights, and any wait for a lock or a lost race (the allocation's total minus the steps below)", 1, on.other, off.other)
	row("in the agent: reservation commits (fsync'd bbolt)", 2, on.reserve, nil)
	row("in the agent: raising the interface in the workload's namespace (enter it, link up, carrier)", 3, on.linkUp, nil)
	row("in the agent: the check, both detectors, both families", 4, on.check, nil)
	row("... of it beyond the one reply window", 5, on.beyond, nil)
	row("... of it around the detectors (the allocator's call, the orchestration)", 6, on.around, nil)
	row("... of it the call to the slowest detector's plugin and back (gRPC, the plugin's scheduling)", 7, on.hop, nil)
	row("... of it the slowest detector inside its plugin (entering the namespace for the socket, pacing, the window, any extra window)", 8, on.plugin, nil)
	row("in the agent: putting the interface down again", 9, on.linkDown, nil)
	row("in the agent: the final commit (detection off: the one commit)", 10, on.commit, off.commit)
	row("after the agent: the plugin answers and exits, macvlan sets the addresses and routes and raises the link, exits; libcni caches the result", 11, on.after, off.after)
	row("the whole ADD", 12, on.whole, off.whole)
	t.note("From the agent's debug line per allocation (`allocation steps`: its start on the wall clock, total, and the time of each step) and each ADD's start and end in libcni, over %d round(s); the last column is the one ADD whose end ended the round (the worst round's, when several). Arrivals: the first allocation of a detecting storm began %s ms after the release (p50 over rounds) and the last %s ms after it (worst round %s ms); with detection off %s and %s ms.",
		len(ons), ms(on.arrivalFirst.p50()), ms(on.arrivalLast.p50()), ms(on.arrivalLast.max()), ms(off.arrivalFirst.p50()), ms(off.arrivalLast.p50()))
	cpuShare := func(c *cols) string {
		if c.wall <= 0 {
			return "?"
		}
		capacity := c.wall * time.Duration(runtime.NumCPU())
		return fmt.Sprintf("this program's tree used %s ms of CPU over %s ms of storms (%.0f%% of %d CPUs), the agent and its plugins %s ms of it (%.0f%%)",
			ms(c.cpuOurs), ms(c.wall), 100*float64(c.cpuOurs)/float64(capacity), runtime.NumCPU(), ms(c.cpuAgent), 100*float64(c.cpuAgent)/float64(max(c.cpuOurs, 1)))
	}
	t.note("CPU, both detections on: %s; detection off: %s. %d process starts at once (half macvlan, half `spiderpool`, CNI_COMMAND=VERSION, nothing else) take %s ms on this machine: the storm's process starts alone.", cpuShare(on), cpuShare(off), 2*cniBurst, ms(starts))
	t.note("Probe pacing (`probe_rate`, 4000/s per socket in buckets of 80) is per socket, and each workload's interface has sockets of its own, which send a handful of probes: it cannot hold a storm of separate workloads back, and any wait for tokens would show in the check beyond the window. The control socket admits 512 connections and no semaphore stands between a request and its allocation; flights are per container and interface.")
	if on.missing+off.missing > 0 {
		t.note("%d successful ADD(s) had no `allocation steps` line in the agent's log and are left out.", on.missing+off.missing)
	}
	t.write(out)
}
