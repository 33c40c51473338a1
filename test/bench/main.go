// Command bench is spiderpool-agent's benchmark and fault suite. It runs the
// real agent and plugin binaries (from -bin, as `make build` leaves them)
// inside network namespaces on a test/netlab LAN, never on the host's
// network, and prints markdown tables:
//
//	go run ./test/bench -bin bin          # make bench
//	go run ./test/bench -bin bin -faults  # make faults
//
// It needs root. See test/bench/README.md for how to read the tables.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

var (
	binDir      = flag.String("bin", "bin", "directory with spiderpool-agent and plugins/ (as `make build` leaves it)")
	faults      = flag.Bool("faults", false, "run the fault suite instead of the benchmark")
	runs        = flag.Int("runs", 200, "runs per latency case through the control socket (the CLI and the tools get fewer, see README)")
	only        = flag.String("only", "", "comma-separated sections to run ("+strings.Join(benchSections, ",")+"; with -faults: "+strings.Join(faultSections, ",")+"); empty: all")
	probeRate   = flag.Int("probe-rate", 0, "probe_rate of both detectors for the scale and sustained sections (0: the plugins' default, 4000 per second per interface); shows how much of a burst's time is the pacing")
	arping      = flag.String("arping", "", "iputils arping binary for the IPv4 comparison (default: arping in PATH if it is iputils', else "+iputilsExtracted+", else Thomas Habets' arping -0)")
	verbose     = flag.Bool("v", false, "log progress details to stderr")
	scaleDB     = flag.String("ipam-scale-db", "", "ipam-scale: a store filled by an earlier run to copy instead of filling one (about 2 minutes); written there when the file does not exist")
	mdOut       = flag.String("o", "", "also write the markdown to this file")
	stormRepeat = flag.Int("storm-repeat", 1, "cni, cni-storm: rounds of the reboot storm (its three IPAMs in turn each round), for the spread within one run")
)

// benchSections and faultSections are the sections, in the order they
// run: the one list that -only's help, its check and the runners use (a
// runner asking for a name that is not here is a bug, and says so).
var (
	benchSections = []string{"latency", "scale", "sustained", "hop", "memory", "ipam-store", "startup", "ipam", "ipam-busy", "ipam-scale", "ipam-etcd", "cni", "cni-alone", "cni-storm", "podman"}
	faultSections = []string{"plugin-kill", "agent-kill", "sigterm", "third-party", "sysctl", "bad-input", "supervisor", "burst", "surfaces", "cgroup", "ipam-kill", "ipam-trust", "ipam-etcd", "ipam-etcd-agents", "watch-flood"}
)

// iputilsExtracted is where test/bench/README.md suggests unpacking Debian's
// iputils-arping when Habets' arping is installed (the two conflict).
const iputilsExtracted = "/opt/iputils-arping/usr/bin/arping"

func main() {
	if path := os.Getenv(squatEnv); path != "" {
		os.Exit(agenttest.Squat(path)) // the impostor of the surfaces faults
	}
	flag.Parse()
	if err := checkOnly(*only, *faults); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root: it builds network namespaces and opens packet sockets")
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: cleaning up\n", sig)
		closeAll()
		os.Exit(130)
	}()
	netlab.Sweep()

	var out io.Writer = os.Stdout
	if *mdOut != "" {
		f, err := os.Create(*mdOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}

	start := time.Now()
	var err error
	if *faults {
		err = run("faults", func(s *scope) { runFaults(s, out) })
	} else {
		err = run("bench", func(s *scope) { runBench(s, out) })
	}
	fmt.Fprintf(out, "_Whole run: %v; %s at the end._\n", time.Since(start).Round(time.Second), loadavg())
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// sections are the sections of this run's mode.
func sections() []string {
	if *faults {
		return faultSections
	}
	return benchSections
}

// checkOnly refuses an -only that names a section the mode does not have:
// a typo would otherwise run nothing and print empty tables.
func checkOnly(only string, faults bool) error {
	known := benchSections
	mode := "make bench"
	if faults {
		known, mode = faultSections, "make faults"
	}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(known, n) {
			return fmt.Errorf("-only: %s has no section %q; its sections: %s", mode, n, strings.Join(known, ","))
		}
	}
	return nil
}

// selected reports whether a section runs under -only.
func selected(name string) bool {
	if !slices.Contains(sections(), name) {
		fmt.Fprintf(os.Stderr, "bench: section %q is not in the list of sections (main.go): add it there\n", name)
		os.Exit(2)
	}
	if *only == "" {
		return true
	}
	for _, n := range strings.Split(*only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// loadavg is the 1, 5 and 15 minute load average: other work on the
// machine shows in the tails.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average ?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average ?"
	}
	return "load average " + strings.Join(f[:3], " ")
}

// stamp is the line under every table: when, what and where.
func stamp() string {
	return fmt.Sprintf("%s; %s; bench code %s; nproc %d; kernel %s; %s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), measured(), benchCommit(), runtime.NumCPU(), kernel(), loadavg())
}

// kernel is `uname -r`, read once.
var kernel = sync.OnceValue(func() string {
	out, _ := exec.Command("uname", "-r").Output()
	return strings.TrimSpace(string(out))
})

// measured is what `spiderpool-agent version` of -bin says (its version
// and commit, as make build stamps them), read once.
var measured = sync.OnceValue(func() string {
	out, err := exec.Command(filepath.Join(*binDir, "spiderpool-agent"), "version").Output()
	if err != nil {
		return "agent version unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
})

// benchCommit is the commit of the tree the bench runs from, "+dirty" when
// it has changes: the tables' code, which may differ from the agent's.
var benchCommit = sync.OnceValue(func() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "+dirty"
	}
	return c
})

// machine describes where the run happened.
func machine() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/1024/1024)
			}
		}
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s; nproc %d (%s); memory %s; kernel %s; %s; %s from %s; bench code %s; %s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), model, mem,
		kernel(), runtime.Version(), measured(), *binDir, benchCommit(), loadavg())
}
