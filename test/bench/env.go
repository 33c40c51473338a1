package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// bins are the binaries a run uses: a snapshot of -bin (so that a `make
// build` elsewhere in the tree cannot swap a binary under a running
// benchmark) and the test plugins, built here with the flags of `make
// build`.
type bins struct {
	dir       string
	agent     string
	pluginDir string // the built-ins as shipped: spiderpool-plugins, a symlink to agent
	// separateDir holds the built-ins as three separate binaries and setDir
	// as one set binary apart from the agent (plugins/cmd/spiderpool-plugins),
	// the two layouts before the built-ins moved into the agent's
	// executable, built with make build's flags: the memory table measures
	// the three side by side.
	separateDir, setDir string
	noop                string
	minicheck           string            // test/bench/minicheck
	faulty              map[string]string // mode -> binary
}

var builtins = []string{"sysctl-tuner", "ip-conflict", "gateway-detector"}

// setBinary is the name the agent runs the built-ins' set by: in make
// build's bin/ and in the deb, a symlink to the agent's executable.
const setBinary = config.PluginSetBinary

func prepareBins(s *scope, binDir string) *bins {
	dir := s.TempDir()
	b := &bins{dir: dir, agent: filepath.Join(dir, "spiderpool-agent"), pluginDir: filepath.Join(dir, "plugins"), faulty: map[string]string{}}
	if err := os.MkdirAll(b.pluginDir, 0o755); err != nil {
		s.Fatal(err)
	}
	copyExe(s, filepath.Join(binDir, "spiderpool-agent"), b.agent)
	// As make build leaves it: the set is the agent's own file (a copy
	// would be a file of its own, whose pages the plugins would not share
	// with the agent).
	if err := os.Symlink(b.agent, filepath.Join(b.pluginDir, setBinary)); err != nil {
		s.Fatal(err)
	}
	root := moduleRoot(s)
	build := func(out, pkg, ldflags string) {
		// The agent's tags for every layout: the memory table compares
		// layouts, not build flags.
		cmd := exec.Command("go", "build", "-trimpath", "-tags", agenttest.AgentTags, "-ldflags", "-s -w "+ldflags, "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			s.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	b.setDir = filepath.Join(dir, "set-plugins")
	build(filepath.Join(b.setDir, setBinary), "./plugins/cmd/spiderpool-plugins", "")
	b.separateDir = filepath.Join(dir, "separate-plugins")
	for _, p := range builtins {
		build(filepath.Join(b.separateDir, "spiderpool-plugin-"+p), "./plugins/"+p+"/cmd/spiderpool-plugin-"+p, "")
	}
	b.noop = filepath.Join(dir, "test-plugins", "noop")
	build(b.noop, "./test/plugins/noop", "")
	b.minicheck = filepath.Join(dir, "test-plugins", "minicheck")
	build(b.minicheck, "./test/bench/minicheck", "")
	for _, mode := range []string{"ok", "hang", "crash", "orphan", "logflood", "memhog", "metricflood", "forkbomb", "escape", "childhog"} {
		b.faulty[mode] = filepath.Join(dir, "test-plugins", "faulty-"+mode)
		build(b.faulty[mode], "./test/plugins/faulty", "-X main.mode="+mode)
	}
	return b
}

func copyExe(s *scope, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		s.Fatalf("%v (run `make build` first, or pass -bin)", err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		s.Fatal(err)
	}
}

func moduleRoot(s *scope) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		s.Fatalf("go env GOMOD: %v %s (run from the repository)", err, out)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// runIn runs argv inside nsPath and returns its exit code, the time from
// fork to exit, and its output.
func runIn(nsPath string, timeout time.Duration, argv ...string) (int, time.Duration, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = agenttest.CleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0, err := agenttest.StartIn(nsPath, cmd)
	if err != nil {
		return -1, 0, err.Error()
	}
	err = cmd.Wait()
	took := time.Since(t0)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), took, out.String()
		}
		return -1, took, out.String() + err.Error()
	}
	return 0, took, out.String()
}

// agentOpts describe one agent.
type agentOpts struct {
	name   string
	nsPath string // namespace to run in
	config string // HCL; socket_path, plugin_dir, health_port and gops_port are added unless set
	health int    // default 5710
	gops   int    // default 5712
	env    []string
	dir    string   // reuse this config dir (and its socket); default a new one
	args   []string // after "daemon --config-dir DIR"
}

// agent is one spiderpool-agent daemon process, forked inside a namespace
// by test/agenttest's runner (the one the e2e tests use), whose Agent has
// its socket, config dir and text, health port, command and start time.
type agent struct {
	*agenttest.Agent
	s        *scope
	name     string
	gopsPort int
	bins     *bins
	opts     agentOpts
}

func startAgent(s *scope, b *bins, o agentOpts) *agent {
	if o.health == 0 {
		o.health = 5710
	}
	if o.gops == 0 {
		o.gops = 5712
	}
	ag := agenttest.Start(s, agenttest.Binaries{Dir: b.dir, Agent: b.agent, PluginDir: b.pluginDir}, agenttest.Options{
		Config: o.config, Env: o.env, Args: o.args, NetnsPath: o.nsPath, Dir: o.dir, HealthPort: o.health, GopsPort: o.gops,
	})
	return &agent{Agent: ag, s: s, bins: b, opts: o, name: o.name, gopsPort: o.gops}
}

// restart starts a new agent process with the same config dir, socket and
// ports (the old one must have exited).
func (a *agent) restart() *agent {
	o := a.opts
	o.dir = a.Dir
	return startAgent(a.s, a.bins, o)
}

// stop ends the agent with SIGTERM, SIGKILL after 15 s.
func (a *agent) stop() { a.Stop() }

func (a *agent) pid() int { return a.Cmd.Process.Pid }

func (a *agent) exited() bool {
	select {
	case <-a.Done():
		return true
	default:
		return false
	}
}

// httpClient dials inside the agent's namespace.
func (a *agent) httpClient(timeout time.Duration) *http.Client {
	return netlab.HTTPClient(a.NetnsPath, timeout)
}

// healthGet fetches a health path: its status code and body.
func (a *agent) healthGet(path string) (int, []byte, error) {
	resp, err := a.httpClient(2 * time.Second).Get(fmt.Sprintf("http://127.0.0.1:%d%s", a.Health, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func (a *agent) ready() bool {
	code, _, err := a.healthGet("/v1/runtime/readiness")
	return err == nil && code == http.StatusOK
}

// waitReady polls readiness every millisecond and returns the time from
// the agent's fork to the first 200.
func (a *agent) waitReady(timeout time.Duration) time.Duration {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if a.ready() {
			return time.Since(a.Started)
		}
		if a.exited() {
			a.s.Fatalf("agent %s exited (code %d) before it was ready\n%s", a.name, a.Exited().Code, a.Log())
		}
		time.Sleep(time.Millisecond)
	}
	a.s.Fatalf("agent %s not ready within %v\n%s", a.name, timeout, a.Log())
	return 0
}

func (a *agent) client() *api.Client { return &api.Client{SocketPath: a.Socket} }

// status returns the agent's state over the control socket.
func (a *agent) status() (api.Agent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.client().Status(ctx)
}

// plugin returns one plugin's state.
func (a *agent) plugin(name string) (api.Plugin, bool) {
	st, err := a.status()
	if err != nil {
		return api.Plugin{}, false
	}
	for _, p := range st.Plugins {
		if p.Name == name {
			return p, true
		}
	}
	return api.Plugin{}, false
}

// pluginPIDs maps running plugins to their pids.
func (a *agent) pluginPIDs() map[string]int {
	st, err := a.status()
	if err != nil {
		a.s.Fatalf("status of %s: %v", a.name, err)
	}
	out := map[string]int{}
	for _, p := range st.Plugins {
		if p.PID != 0 {
			out[p.Name] = p.PID
		}
	}
	return out
}

// gops sends one request byte to the agent's gops agent (127.0.0.1:gops
// in its namespace) and returns the "key: value" lines of the answer.
func (a *agent) gops(sig byte) (map[string]string, error) {
	var conn net.Conn
	err := netns.Do(a.NetnsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", a.gopsPort), 2*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte{sig}); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// Request bytes of github.com/google/gops/signal.
const (
	gopsMemStats = 0x3
	gopsStats    = 0x7
)

// goroutines is runtime.NumGoroutine of the agent, through gops.
func (a *agent) goroutines() (int, error) {
	m, err := a.gops(gopsStats)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(m["goroutines"])
}

// check is one call through the control socket.
func (a *agent) check(ctx context.Context, req api.CheckRequest) (api.CheckResult, int, error) {
	return a.client().Check(ctx, req)
}

// timedCheck is one check bounded by bound, and its wall time: the sample
// every latency the benchmarks report is made of.
func (a *agent) timedCheck(req api.CheckRequest, bound time.Duration) (api.CheckResult, int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	t0 := time.Now()
	resp, code, err := a.check(ctx, req)
	return resp, code, time.Since(t0), err
}

// rawPost sends body to the control socket as is.
func (a *agent) rawRequest(method, path, contentType string, body []byte) (int, []byte, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.Socket)
		},
	}}
	req, err := http.NewRequest(method, "http://spiderpool-agent"+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}

// panics counts lines of the agent's log (plugins log through it) that
// show a Go panic or fatal runtime error.
func (a *agent) panics() int {
	n := 0
	for _, line := range strings.Split(a.Log(), "\n") {
		if isPanicLine(line) {
			n++
		}
	}
	return n
}

// isPanicLine matches the lines the Go runtime prints for a panic or a
// fatal error ("panic: ...", "fatal error: ...", "goroutine 1 [running]:",
// "runtime: goroutine stack exceeds ..."), not the word panic in a message
// such as the list of log levels.
func isPanicLine(line string) bool {
	return strings.Contains(line, "panic: ") || strings.Contains(line, "fatal error: ") ||
		strings.Contains(line, "[running]:") || strings.Contains(line, "runtime: goroutine stack exceeds")
}

// hasPanic reports whether any line of out is a panic line.
func hasPanic(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if isPanicLine(line) {
			return true
		}
	}
	return false
}

// procStatus reads a field of /proc/PID/status (VmRSS in kB, Threads).
func procStatus(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return -1
}

func rssKiB(pid int) int  { return procStatus(pid, "VmRSS") }
func anonKiB(pid int) int { return procStatus(pid, "RssAnon") }
func fileKiB(pid int) int { return procStatus(pid, "RssFile") }

// cpuTicks is utime + stime of pid (0: this process) in clock ticks.
func cpuTicks(pid int) int {
	p := "/proc/self/stat"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// cpuByProc is the CPU time of the agent and of each plugin.
func (a *agent) cpuByProc() map[string]time.Duration {
	out := map[string]time.Duration{"agent": time.Duration(cpuTicks(a.pid())) * clockTick}
	for name, pid := range a.pluginPIDs() {
		out[name] = time.Duration(cpuTicks(pid)) * clockTick
	}
	return out
}

// cpu is the CPU time of the agent and its plugins, and of this process
// (the client side).
func (a *agent) cpu() (server, client time.Duration) {
	n := cpuTicks(a.pid())
	for _, pid := range a.pluginPIDs() {
		n += cpuTicks(pid)
	}
	return time.Duration(n) * clockTick, time.Duration(cpuTicks(0)) * clockTick
}
func threads(pid int) int { return procStatus(pid, "Threads") }

// fds counts /proc/PID/fd.
func fds(pid int) int {
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(e)
}

// procsWithExeIn lists live processes whose executable lies in one of dirs.
func procsWithExeIn(dirs ...string) map[int]string {
	out := map[int]string{}
	for _, pid := range agenttest.PIDs() {
		exe := agenttest.Exe(pid)
		if exe == "" {
			continue
		}
		for _, d := range dirs {
			if strings.HasPrefix(exe, d+"/") && agenttest.Alive(pid) {
				out[pid] = exe
			}
		}
	}
	return out
}

// ---- CPU used by others ----------------------------------------------------

// cpuMark is a point in time with the machine's busy CPU ticks and those of
// this process tree (this program, its agents, plugins, CLIs and tools).
type cpuMark struct {
	t          time.Time
	busy, ours int
}

func markCPU() cpuMark {
	return cpuMark{t: time.Now(), busy: busyTicks(), ours: treeTicks(os.Getpid())}
}

// otherLoad is the share of all CPUs that processes outside this program's
// tree used since m, in percent: other engineers' builds and tests show up
// in the tails, so every table says how much there was.
func (m cpuMark) otherLoad() string {
	now := markCPU()
	secs := now.t.Sub(m.t).Seconds()
	if secs <= 0 {
		return "?"
	}
	other := float64((now.busy - m.busy) - (now.ours - m.ours))
	pct := 100 * other / (secs * float64(time.Second/clockTick) * float64(runtime.NumCPU()))
	if pct < 0 {
		pct = 0
	}
	return fmt.Sprintf("%.0f%% of %d CPUs", pct, runtime.NumCPU())
}

// busyTicks is user+nice+system+irq+softirq+steal of all CPUs.
func busyTicks() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	n := 0
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.Atoi(f[i])
		n += v
	}
	return n
}

// treeTicks is utime+stime+cutime+cstime of root and every live
// descendant: each process that ended was waited for by a live ancestor
// and counts in its cutime.
func treeTicks(root int) int {
	type proc struct{ ppid, ticks int }
	procs := map[int]proc{}
	for _, pid := range agenttest.PIDs() {
		f := agenttest.Stat(pid)
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		t := 0
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.Atoi(f[k])
			t += v
		}
		procs[pid] = proc{ppid, t}
	}
	in := func(pid int) bool {
		for n := 0; pid > 1 && n < 64; n++ {
			if pid == root {
				return true
			}
			pid = procs[pid].ppid
		}
		return false
	}
	total := 0
	for pid, p := range procs {
		if in(pid) {
			total += p.ticks
		}
	}
	return total
}
