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
	layout                      string
	idle, before, after, again  map[string]procSnap
	took                        time.Duration
	failed                      int
	heap                        string
	totIdle, totAfter, totAgain procSnap // sums; fds/thr/gor unused
	grew                        []string // growth over the second round: a leak
	plateau                     []string // growth over the first round only
}

var memProcs = []string{"agent", "sysctl-tuner", "ip-conflict", "gateway-detector"}

// measureMemory runs a fresh agent with the built-ins from pluginDir:
// idle, a 500-check warm-up, 10,000 checks, and 10,000 more, each followed
// by 2 s of rest. Memory is judged after the first 10,000; handles over the
// second: fds and goroutines must not grow at all, threads by at most one
// per process (the Go runtime keeps the threads it once needed: an M is
// never freed, so the count is a high-water mark).
func measureMemory(s *scope, l *lab, layout, pluginDir string) memRun {
	progress("memory (%s): fresh agent, idle", layout)
	a := startAgent(s, l.b, agentOpts{name: "memory-" + layout, nsPath: l.node, config: fmt.Sprintf("plugin_dir = %q\n", pluginDir) + cfgDetect})
	defer a.stop()
	a.waitReady(30 * time.Second)
	time.Sleep(2 * time.Second)
	r := memRun{layout: layout, idle: snapshot(a)}
	// The warm-up uses the load's concurrency, so that most threads the Go
	// runtime adds for 128 concurrent blocking calls are there before
	// "before".
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
	progress("memory (%s): 10,000 checks more", layout)
	r.failed += load(a, 10000, 128, mixReq)
	time.Sleep(2 * time.Second)
	r.again = snapshot(a)
	add := func(t *procSnap, p procSnap) {
		t.rss += p.rss
		t.anon += p.anon
		t.file += p.file
		t.pss += p.pss
		t.pssAnon += p.pssAnon
		t.pssFile += p.pssFile
	}
	for _, n := range memProcs {
		b, af, ag := r.before[n], r.after[n], r.again[n]
		add(&r.totIdle, r.idle[n])
		add(&r.totAfter, af)
		add(&r.totAgain, ag)
		grow := func(what string, b, af, ag int) {
			// A thread is the exception: the runtime never frees an M, so
			// its count is the high-water mark of blocking calls at once,
			// which a second round on a loaded machine may raise by one.
			// A leaked thread (a locked thread per check, say) would
			// raise it by thousands.
			slack := 0
			if what == "threads" {
				slack = 1
			}
			if ag > af+slack {
				r.grew = append(r.grew, fmt.Sprintf("%s: %s %s %d → %d → %d", layout, n, what, b, af, ag))
			} else if ag > b {
				r.plateau = append(r.plateau, fmt.Sprintf("%s: %s %s %d → %d → %d", layout, n, what, b, af, ag))
			}
		}
		if n == "agent" {
			grow("goroutines", b.gor, af.gor, ag.gor)
		}
		grow("fds", b.fds, af.fds, ag.fds)
		grow("threads", b.thr, af.thr, ag.thr)
	}
	return r
}

// cniSizeMB is the CNI plugin's size when BIN has none (not built): its
// stripped size since ipamapi speaks HTTP/1.0 without net/http (it was 6.7
// MB with net/http). It counts in the deb's 30 MB budget.
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
		measureMemory(s, l, "set", l.b.setDir),
		measureMemory(s, l, "one executable", l.b.pluginDir),
	}
	t := newTable("Memory and leaks: agent + built-ins at idle and after 10,000 checks, the built-ins as three binaries (separate), as one set binary beside the agent (set), and inside the agent's executable (one executable, as shipped); PSS from smaps_rollup",
		"layout / process", "RSS idle MiB", "RSS after MiB (anon / file)", "PSS idle MiB", "PSS after MiB (anon / file)", "PSS after 20k MiB", "fds before → 10k → 20k", "threads before → 10k → 20k", "goroutines before → 10k → 20k")
	for _, r := range runs {
		for _, n := range memProcs {
			i, b, af, ag := r.idle[n], r.before[n], r.after[n], r.again[n]
			gor := "n/a"
			if n == "agent" {
				gor = fmt.Sprintf("%d → %d → %d", b.gor, af.gor, ag.gor)
			}
			t.add(r.layout+" / "+n, mib(i.rss), fmt.Sprintf("%s (%s / %s)", mib(af.rss), mib(af.anon), mib(af.file)),
				mib(i.pss), fmt.Sprintf("%s (%s / %s)", mib(af.pss), mib(af.pssAnon), mib(af.pssFile)), mib(ag.pss),
				fmt.Sprintf("%d → %d → %d", b.fds, af.fds, ag.fds), fmt.Sprintf("%d → %d → %d", b.thr, af.thr, ag.thr), gor)
		}
		t.add("**"+r.layout+" total**", mib(r.totIdle.rss), fmt.Sprintf("%s (%s / %s)", mib(r.totAfter.rss), mib(r.totAfter.anon), mib(r.totAfter.file)),
			mib(r.totIdle.pss), fmt.Sprintf("%s (%s / %s)", mib(r.totAfter.pss), mib(r.totAfter.pssAnon), mib(r.totAfter.pssFile)), mib(r.totAgain.pss), "", "", "")
	}
	var failed int
	var grew, plateau []string
	for _, r := range runs {
		failed += r.failed
		grew = append(grew, r.grew...)
		plateau = append(plateau, r.plateau...)
		t.note("%s: the first 10,000 checks took %v; %d of all checks failed; the agent's Go runtime after the first 10,000 (gops memstats): %s.", r.layout, r.took.Round(time.Millisecond), r.failed, r.heap)
	}
	if len(plateau) > 0 {
		t.note("Added in the first 10,000 checks and not again in the second, or one thread more in the second (the runtime's high-water mark, not a leak): %s.", strings.Join(plateau, "; "))
	}
	t.note("Checks: IPv4 free, IPv6 free, IPv4 busy, IPv6 busy, dual stack with gateways, in turn, by 128 clients. \"before\" is after a 500-check warm-up by as many clients and 2 s of rest, \"10k\" 2 s after the first 10,000 checks, \"20k\" 2 s after 10,000 more. RSS counts a shared page in full in every process; PSS divides it among the processes that map it, so the PSS total is what agent + plugins cost the machine together. Plugins serve no gops: their goroutines are not counted, their threads are. Others' CPU during this table: %s.", mOther.otherLoad())
	t.write(out)

	// Package size: the executables the deb carries.
	cni := filepath.Join(*binDir, "cni", "spiderpool")
	sepTotal, sepParts := executables(append([]string{l.b.agent}, builtinPaths(l.b.separateDir)...)...)
	setTotal, setParts := executables(l.b.agent, filepath.Join(l.b.setDir, setBinary))
	oneTotal, oneParts := executables(l.b.agent)
	cniBytes, _ := executables(cni)
	cniNote := fmt.Sprintf("The CNI plugin %s, %.1f MB", cni, float64(cniBytes)/1e6)
	if cniBytes == 0 {
		cniBytes = int64(cniSizeMB * 1e6)
		cniNote = fmt.Sprintf("The CNI plugin spiderpool, not built in this tree yet: counted as %.1f MB", cniSizeMB)
	}
	pt := newTable("Package size: executables in the deb", "layout", "executables", "total MB", "with the CNI plugin MB")
	pt.add("separate", strings.Join(sepParts, ", "), fmt.Sprintf("%.1f", float64(sepTotal)/1e6), fmt.Sprintf("%.1f", float64(sepTotal+cniBytes)/1e6))
	pt.add("set", strings.Join(setParts, ", "), fmt.Sprintf("%.1f", float64(setTotal)/1e6), fmt.Sprintf("%.1f", float64(setTotal+cniBytes)/1e6))
	pt.add("one executable (shipped)", strings.Join(oneParts, ", ")+" (plugins/spiderpool-plugins is a symlink to it)", fmt.Sprintf("%.1f", float64(oneTotal)/1e6), fmt.Sprintf("%.1f", float64(oneTotal+cniBytes)/1e6))
	pt.note("Built with make build's flags (-trimpath -s -w, CGO_ENABLED=0); MB = 10^6 bytes. %s.", cniNote)
	pt.write(out)

	sep, set, one := runs[0], runs[1], runs[2]
	memT := target{what: "memory, agent + built-ins (one executable, as shipped), PSS", want: "< 60 MiB after 10k checks",
		got: fmt.Sprintf("%s MiB idle, %s MiB after 10k checks (set: %s, %s; separate binaries: %s, %s)", mib(one.totIdle.pss), mib(one.totAfter.pss),
			mib(set.totIdle.pss), mib(set.totAfter.pss), mib(sep.totIdle.pss), mib(sep.totAfter.pss)),
		met: max(one.totIdle.pss, one.totAfter.pss) < 60*1024}
	if !memT.met {
		memT.why = fmt.Sprintf("after the load the anonymous part (Go heaps and stacks the runtime keeps for reuse, four runtimes) is %s MiB of PSS and the file part %s MiB; see README",
			mib(one.totAfter.pssAnon), mib(one.totAfter.pssFile))
	}
	pkgT := target{what: "executables in the deb, with the CNI plugin", want: "< 30 MB",
		got: fmt.Sprintf("%.1f MB (set: %.1f MB; separate binaries: %.1f MB)", float64(oneTotal+cniBytes)/1e6, float64(setTotal+cniBytes)/1e6, float64(sepTotal+cniBytes)/1e6), met: oneTotal+cniBytes < 30e6}
	if !pkgT.met {
		pkgT.why = "the agent links the Go runtime, gRPC, protobuf, go-plugin, HCL and the etcd client; see README"
	}
	handles := target{what: "fds, threads and goroutines over a second 10k checks", want: "no growth (threads: at most +1, the runtime's high-water mark)",
		got: map[bool]string{true: "no growth", false: strings.Join(grew, "; ")}[len(grew) == 0], met: len(grew) == 0 && failed == 0}
	if failed > 0 {
		handles.got += fmt.Sprintf(" (%d checks failed)", failed)
	}
	return []target{memT, pkgT, handles}
}

func builtinPaths(dir string) []string {
	var out []string
	for _, p := range builtins {
		out = append(out, filepath.Join(dir, "spiderpool-plugin-"+p))
	}
	return out
}

func mib(kib int) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
