package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ---- memory and leaks ----------------------------------------------------

// procSnap is one process's memory and handles. rss/anon/file are VmRSS,
// RssAnon and RssFile of /proc/PID/status; pss* are Pss, Pss_Anon and
// Pss_File of /proc/PID/smaps_rollup: a page shared by n processes counts
// 1/n in each, so the sum over processes is what they cost the machine
// together - which is what a plugin set changes (three processes of one
// binary share its text).
type procSnap struct {
	rss, anon, file, pss, pssAnon, pssFile, fds, thr, gor int
}

func snapshot(a *agent) map[string]procSnap {
	out := map[string]procSnap{}
	g, err := a.goroutines()
	if err != nil {
		g = -1
	}
	snap := func(pid, g int) procSnap {
		r := smapsRollup(pid)
		return procSnap{rssKiB(pid), anonKiB(pid), fileKiB(pid), r["Pss"], r["Pss_Anon"], r["Pss_File"], fds(pid), threads(pid), g}
	}
	out["agent"] = snap(a.pid(), g)
	for name, pid := range a.pluginPIDs() {
		out[name] = snap(pid, -1)
	}
	return out
}

// smapsRollup reads /proc/PID/smaps_rollup's kB fields.
func smapsRollup(pid int) map[string]int {
	out := map[string]int{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.Atoi(f[0]); err == nil {
			out[k] = n
		}
	}
	return out
}

// memRun is one layout's measurement.
type memRun struct {
	layout              string
	idle, before, after map[string]procSnap
	took                time.Duration
	failed              int
	heap                string
	totIdle, totAfter   procSnap // sums; fds/thr/gor unused
	grew                []string
}

var memProcs = []string{"agent", "sysctl-tuner", "ip-conflict", "gateway-detector"}

// measureMemory runs a fresh agent with the built-ins from pluginDir:
// idle, a 500-check warm-up, 10,000 checks, each followed by 2 s of rest.
func measureMemory(s *scope, l *lab, layout, pluginDir string) memRun {
	progress("memory (%s): fresh agent, idle", layout)
	a := startAgent(s, l.b, agentOpts{name: "memory-" + layout, nsPath: l.node, config: fmt.Sprintf("plugin_dir = %q\n", pluginDir) + cfgDetect})
	defer a.stop()
	a.waitReady(30 * time.Second)
	time.Sleep(2 * time.Second)
	r := memRun{layout: layout, idle: snapshot(a)}
	// The warm-up uses the load's concurrency, so that the threads the Go
	// runtime adds once for 128 concurrent blocking calls (and keeps) are
	// there before "before": growth after it is a leak, not a plateau.
	progress("memory (%s): warm-up 500 checks", layout)
	r.failed = load(a, 500, 128, mixReq)
	time.Sleep(2 * time.Second)
	r.before = snapshot(a)
	progress("memory (%s): 10,000 checks", layout)
	t0 := time.Now()
	r.failed += load(a, 10000, 128, mixReq)
	r.took = time.Since(t0)
	time.Sleep(2 * time.Second)
	r.after = snapshot(a)
	if m, err := a.gops(gopsMemStats); err == nil {
		r.heap = fmt.Sprintf("sys %s, heap in use %s, heap idle %s of which released %s, stacks %s",
			m["sys"], m["heap-in-use"], m["heap-idle"], m["heap-released"], m["stack-sys"])
	}
	for _, n := range memProcs {
		i, b, af := r.idle[n], r.before[n], r.after[n]
		r.totIdle.rss += i.rss
		r.totIdle.pss += i.pss
		r.totIdle.pssAnon += i.pssAnon
		r.totIdle.pssFile += i.pssFile
		r.totAfter.rss += af.rss
		r.totAfter.anon += af.anon
		r.totAfter.file += af.file
		r.totAfter.pss += af.pss
		r.totAfter.pssAnon += af.pssAnon
		r.totAfter.pssFile += af.pssFile
		if n == "agent" && af.gor > b.gor {
			r.grew = append(r.grew, fmt.Sprintf("%s: agent goroutines %d → %d", layout, b.gor, af.gor))
		}
		if af.fds > b.fds {
			r.grew = append(r.grew, fmt.Sprintf("%s: %s fds %d → %d", layout, n, b.fds, af.fds))
		}
		if af.thr > b.thr {
			r.grew = append(r.grew, fmt.Sprintf("%s: %s threads %d → %d", layout, n, b.thr, af.thr))
		}
	}
	return r
}

// cniSizeMB is the CNI plugin's size when BIN has none (not built): its
// stripped size since ipamapi speaks HTTP/1.0 without net/http (it was 6.7
// MB with net/http). Issue 16 counts it in the deb's budget.
const cniSizeMB = 3.2

// executables sums the sizes of the files that would be in the deb.
func executables(paths ...string) (total int64, parts []string) {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		total += fi.Size()
		parts = append(parts, fmt.Sprintf("%s %.1f MB", filepath.Base(p), float64(fi.Size())/1e6))
	}
	return total, parts
}

func benchMemory(s *scope, l *lab, out io.Writer) []target {
	mOther := markCPU()
	runs := []memRun{
		measureMemory(s, l, "separate", l.b.separateDir),
		measureMemory(s, l, "set", l.b.pluginDir),
	}
	t := newTable("Memory and leaks: agent + built-ins at idle and after 10,000 checks, the built-ins as three binaries (separate, the old layout) and as one set binary (set, as shipped); PSS from smaps_rollup",
		"layout / process", "RSS idle MiB", "RSS after MiB (anon / file)", "PSS idle MiB", "PSS after MiB (anon / file)", "fds before → after", "threads before → after", "goroutines before → after")
	for _, r := range runs {
		for _, n := range memProcs {
			i, b, af := r.idle[n], r.before[n], r.after[n]
			gor := "n/a"
			if n == "agent" {
				gor = fmt.Sprintf("%d → %d", b.gor, af.gor)
			}
			t.add(r.layout+" / "+n, mib(i.rss), fmt.Sprintf("%s (%s / %s)", mib(af.rss), mib(af.anon), mib(af.file)),
				mib(i.pss), fmt.Sprintf("%s (%s / %s)", mib(af.pss), mib(af.pssAnon), mib(af.pssFile)),
				fmt.Sprintf("%d → %d", b.fds, af.fds), fmt.Sprintf("%d → %d", b.thr, af.thr), gor)
		}
		t.add("**"+r.layout+" total**", mib(r.totIdle.rss), fmt.Sprintf("%s (%s / %s)", mib(r.totAfter.rss), mib(r.totAfter.anon), mib(r.totAfter.file)),
			mib(r.totIdle.pss), fmt.Sprintf("%s (%s / %s)", mib(r.totAfter.pss), mib(r.totAfter.pssAnon), mib(r.totAfter.pssFile)), "", "", "")
	}
	var failed int
	var grew []string
	for _, r := range runs {
		failed += r.failed
		grew = append(grew, r.grew...)
		t.note("%s: 10,000 checks took %v, %d failed; the agent's Go runtime after them (gops memstats): %s.", r.layout, r.took.Round(time.Millisecond), r.failed, r.heap)
	}
	t.note("Checks: IPv4 free, IPv6 free, IPv4 busy, IPv6 busy, dual stack with gateways, in turn, by 128 clients. \"before\" is after a 500-check warm-up by as many clients and 2 s of rest, \"after\" 2 s after the last check. RSS counts a shared page in full in every process; PSS divides it among the processes that map it, so the PSS total is what agent + plugins cost the machine together. Plugins serve no gops: their goroutines are not counted, their threads are. Others' CPU during this table: %s.", mOther.otherLoad())
	t.write(out)

	// Package size: the executables the deb carries.
	cni := filepath.Join(*binDir, "cni", "spiderpool")
	sepTotal, sepParts := executables(append([]string{l.b.agent}, builtinPaths(l.b.separateDir)...)...)
	setTotal, setParts := executables(l.b.agent, filepath.Join(l.b.pluginDir, setBinary))
	cniBytes, _ := executables(cni)
	cniNote := fmt.Sprintf("The CNI plugin %s, %.1f MB", cni, float64(cniBytes)/1e6)
	if cniBytes == 0 {
		cniBytes = int64(cniSizeMB * 1e6)
		cniNote = fmt.Sprintf("The CNI plugin spiderpool, not built in this tree yet: counted as %.1f MB", cniSizeMB)
	}
	pt := newTable("Package size: executables in the deb", "layout", "executables", "total MB", "with the CNI plugin MB")
	pt.add("separate", strings.Join(sepParts, ", "), fmt.Sprintf("%.1f", float64(sepTotal)/1e6), fmt.Sprintf("%.1f", float64(sepTotal+cniBytes)/1e6))
	pt.add("set (shipped)", strings.Join(setParts, ", "), fmt.Sprintf("%.1f", float64(setTotal)/1e6), fmt.Sprintf("%.1f", float64(setTotal+cniBytes)/1e6))
	pt.note("Built with make build's flags (-trimpath -s -w, CGO_ENABLED=0); MB = 10^6 bytes. %s.", cniNote)
	pt.write(out)

	set := runs[1]
	peak := max(set.totIdle.pss, set.totAfter.pss)
	memT := target{what: "memory, agent + built-ins (set), PSS", want: "< 60 MiB after 10k checks",
		got: fmt.Sprintf("%s MiB idle, %s MiB after 10k checks (separate binaries: %s, %s)", mib(set.totIdle.pss), mib(set.totAfter.pss), mib(runs[0].totIdle.pss), mib(runs[0].totAfter.pss)),
		met: peak < 60*1024}
	if !memT.met {
		memT.why = fmt.Sprintf("after the load the anonymous part (Go heaps and stacks the runtime keeps for reuse, four runtimes) is %s MiB of PSS and the file part %s MiB; see README",
			mib(set.totAfter.pssAnon), mib(set.totAfter.pssFile))
	}
	pkgT := target{what: "executables in the deb, with the CNI plugin", want: "< 30 MB",
		got: fmt.Sprintf("%.1f MB (separate binaries: %.1f MB)", float64(setTotal+cniBytes)/1e6, float64(sepTotal+cniBytes)/1e6), met: setTotal+cniBytes < 30e6}
	if !pkgT.met {
		pkgT.why = "the agent and the set each link their own Go runtime, gRPC, protobuf and go-plugin; see README"
	}
	return []target{
		memT,
		pkgT,
		{what: "fds, threads and goroutines after 10k checks", want: "no growth", got: map[bool]string{true: "no growth", false: strings.Join(grew, "; ")}[len(grew) == 0], met: len(grew) == 0 && failed == 0},
	}
}

func builtinPaths(dir string) []string {
	var out []string
	for _, p := range builtins {
		out = append(out, filepath.Join(dir, "spiderpool-plugin-"+p))
	}
	return out
}

func mib(kib int) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
