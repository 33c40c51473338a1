package packaging

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// dynamicUID stands for the uid systemd picks for DynamicUser=yes (from
// 61184 to 65519): any uid that owns nothing.
const dynamicUID = 61184

var capBits = map[string]uint{
	"CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_NET_RAW": unix.CAP_NET_RAW,
	"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
}

// credAgent is the installed agent run with the unit's credentials, as far
// as they can be had without systemd: DynamicUser= (a uid of its own),
// CapabilityBoundingSet= and AmbientCapabilities=, NoNewPrivileges=,
// RuntimeDirectory= and ProtectProc=ptraceable (a /proc with
// hidepid=ptraceable). It runs in a network namespace of its own, so that
// the sysctl-tuner tunes that namespace and never the host.
type credAgent struct {
	ns, dir, socket string
	cmd             *exec.Cmd
	log             *agenttest.SyncBuffer
	done            chan struct{}
}

func startCredAgent(t *testing.T, caps []string, sandbox []string) *credAgent {
	t.Helper()
	ns := netlab.NewNS(t, "unit")
	netlab.IP(t, ns, "link", "set", "lo", "up")
	dir := agenttest.ShortTempDir(t, "spiderpool-unit-")
	// The agent's user must reach its config and its socket directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf, runDir := filepath.Join(dir, "conf"), filepath.Join(dir, "run")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(runDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(runDir, dynamicUID, dynamicUID); err != nil {
		t.Fatal(err)
	}
	packaged, err := os.ReadFile("/etc/spiderpool/config.hcl")
	if err != nil {
		t.Fatal(err)
	}
	a := &credAgent{ns: ns, dir: dir, socket: filepath.Join(runDir, "spiderpool.sock"), log: &agenttest.SyncBuffer{}, done: make(chan struct{})}
	files := map[string]string{
		"config.hcl":  string(packaged),
		"zz-test.hcl": fmt.Sprintf("socket_path = %q\n", a.socket),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var set []string
	for _, c := range caps {
		set = append(set, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	capArg := "-all"
	if len(set) > 0 {
		capArg += "," + strings.Join(set, ",")
	}
	uid := strconv.Itoa(dynamicUID)
	a.cmd = cleanCommand("ip", "netns", "exec", ns,
		"unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", `mount -t proc -o hidepid=ptraceable proc /proc && exec "$@"`, "sh",
		"setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups",
		"--inh-caps="+capArg, "--ambient-caps="+capArg, "--bounding-set="+capArg, "--no-new-privs", "--")
	a.cmd.Args = append(a.cmd.Args, sandbox...)
	a.cmd.Args = append(a.cmd.Args, "/usr/bin/spiderpool-agent", "daemon", "--config-dir", conf)
	// As the unit's Environment=: gops writes its port file there.
	a.cmd.Env = append(a.cmd.Env, "GOPS_CONFIG_DIR="+filepath.Join(runDir, "gops"))
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.done:
			case <-time.After(20 * time.Second):
				a.cmd.Process.Kill()
				<-a.done
			}
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	return a
}

// waitReady polls readiness inside the agent's namespace.
func (a *credAgent) waitReady(t *testing.T) {
	t.Helper()
	client := netlab.HTTPClient("/var/run/netns/"+a.ns, 2*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for {
		resp, err := client.Get("http://127.0.0.1:5710/v1/runtime/readiness")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-a.done:
			t.Fatalf("the agent exited (%v) before it was ready; last answer %s\nlog:\n%s", a.cmd.ProcessState, last, a.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 30s; last answer %s", last)
		}
		time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint, not synchronisation
	}
}

func (a *credAgent) status(t *testing.T) api.Agent {
	t.Helper()
	return agenttest.StatusOf(t, a.socket)
}

func (a *credAgent) check(t *testing.T, netns, addr, gw string) api.CheckResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := api.CheckRequest{Interface: "eth0", Netns: netns, Addresses: []api.AddressRequest{{Address: addr, Gateway: gw}}}
	resp, code, err := (&api.Client{SocketPath: a.socket}).Check(ctx, req)
	if err != nil || code != http.StatusOK {
		t.Fatalf("check %s via %s in %s: %d %v", addr, gw, netns, code, err)
	}
	return resp
}

// procStatus reads the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// testUnitCredentials runs the installed agent with the installed unit's
// credentials and makes it do its three jobs: tune sysctls, and check
// addresses in a workload namespace named by /var/run/netns/NAME and by
// /proc/PID/ns/net of a root process. It then shows that the last needs
// CAP_SYS_PTRACE.
func testUnitCredentials(t *testing.T) {
	u := parseUnit(t, "/lib/systemd/system/"+unitName)
	if u.get("Service", "DynamicUser") != "yes" || u.get("Service", "NoNewPrivileges") != "yes" || u.get("Service", "ProtectProc") != "ptraceable" {
		t.Fatalf("the installed unit's identity changed (DynamicUser=%q NoNewPrivileges=%q ProtectProc=%q): update this emulation",
			u.get("Service", "DynamicUser"), u.get("Service", "NoNewPrivileges"), u.get("Service", "ProtectProc"))
	}
	caps := u.words("Service", "AmbientCapabilities")
	var mask uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("the unit grants %s, which this test does not know", c)
		}
		mask |= 1 << bit
	}

	// The workload: a namespace on a LAN with a gateway and a busy host,
	// and a root process in it.
	lan := netlab.NewStdLAN(t)
	sleeper := exec.Command("ip", "netns", "exec", lan.Node.NS, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	procNS := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	netlab.WaitFor(t, "the workload process in its namespace", func() (bool, error) {
		a, err1 := os.Readlink(procNS)
		b, err2 := os.Readlink("/proc/self/ns/net")
		return err1 == nil && err2 == nil && a != b, nil
	})

	sandbox := seccompSandbox(t, u)
	a := startCredAgent(t, caps, sandbox)
	a.waitReady(t)

	// It is who the unit says, and so are its plugins.
	st := a.status(t)
	pids := []int{a.cmd.Process.Pid}
	for _, p := range st.Plugins {
		if p.State != api.Ready {
			t.Errorf("plugin %s is %s (%s), want ready", p.Name, p.State, p.Message)
		}
		pids = append(pids, p.PID)
	}
	for _, pid := range pids {
		s := procStatus(t, pid)
		eff, _ := strconv.ParseUint(s["CapEff"], 16, 64)
		t.Logf("pid %d %s: Uid %s CapEff %s NoNewPrivs %s Seccomp %s", pid, s["Name"], s["Uid"], s["CapEff"], s["NoNewPrivs"], s["Seccomp"])
		if !strings.HasPrefix(s["Uid"], strconv.Itoa(dynamicUID)+"\t") || eff != mask || s["NoNewPrivs"] != "1" || s["Seccomp"] != "2" {
			t.Errorf("pid %d (%s): Uid %q CapEff %s NoNewPrivs %s Seccomp %s, want uid %d, CapEff %x, NoNewPrivs 1, Seccomp 2 (filter)",
				pid, s["Name"], s["Uid"], s["CapEff"], s["NoNewPrivs"], s["Seccomp"], dynamicUID, mask)
		}
	}

	// gops is off in the packaged config (any local user could drive the
	// daemon through it): no port file.
	if _, err := os.Stat(filepath.Join(a.dir, "run", "gops", strconv.Itoa(a.cmd.Process.Pid))); !os.IsNotExist(err) {
		t.Errorf("gops port file with the packaged config (gops_port = 0): %v", err)
	}

	// The sysctl-tuner wrote /proc/sys/net as a non-root user.
	if v := strings.TrimSpace(run(t, "", "ip", "netns", "exec", a.ns, "cat", "/proc/sys/net/ipv4/conf/all/arp_notify")); v != "1" {
		t.Errorf("net.ipv4.conf.all.arp_notify = %s in the agent's namespace, want 1 from the sysctl-tuner", v)
	}

	// Checks in the workload namespace, named both ways.
	for _, ns := range []string{lan.Node.Path, procNS} {
		if r := a.check(t, ns, netlab.Busy4+"/24", netlab.GW4); logCheck(t, ns, r) && r.Verdict != "block" || detector(r, "ip-conflict") != "block" || detector(r, "gateway-detector") != "pass" {
			t.Errorf("busy address through %s: %+v, want ip-conflict block, gateway-detector pass", ns, r)
		}
		if r := a.check(t, ns, netlab.Free4+"/24", netlab.GW4); r.Verdict != "pass" {
			t.Errorf("free address through %s: %+v, want pass", ns, r)
		}
	}

	// Without CAP_SYS_PTRACE, /proc/PID/ns/net of a process of another
	// user does not open; /var/run/netns does.
	var noPtrace []string
	for _, c := range caps {
		if c != "CAP_SYS_PTRACE" {
			noPtrace = append(noPtrace, c)
		}
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	b := startCredAgent(t, noPtrace, sandbox)
	b.waitReady(t)
	r := b.check(t, procNS, netlab.Free4+"/24", netlab.GW4)
	t.Logf("without CAP_SYS_PTRACE through %s: %+v", procNS, r)
	for _, d := range r.Addresses[0].Detectors {
		if d.Verdict != "error" || d.Evidence["error"] != "netns" {
			t.Errorf("without CAP_SYS_PTRACE, %s through %s: %+v, want an error of class netns", d.Name, procNS, d)
		}
	}
	if r := b.check(t, lan.Node.Path, netlab.Free4+"/24", netlab.GW4); r.Verdict != "pass" {
		t.Errorf("without CAP_SYS_PTRACE, through %s: %+v, want pass", lan.Node.Path, r)
	}
}

func logCheck(t *testing.T, ns string, r api.CheckResult) bool {
	t.Helper()
	t.Logf("through %s: %+v", ns, r)
	return true
}

// seccompSandbox builds internal/seccompexec and returns the command prefix
// that puts the unit's SystemCallFilter=, SystemCallErrorNumber=,
// SystemCallArchitectures=, RestrictAddressFamilies=, RestrictNamespaces=
// and MemoryDenyWriteExecute= in force, with the syscall groups as this
// machine's systemd defines them.
func seccompSandbox(t *testing.T, u unit) []string {
	t.Helper()
	dir := agenttest.ShortTempDir(t, "spiderpool-seccomp-")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "seccompexec")
	run(t, repoRoot(t), "go", "build", "-o", helper, "./test/packaging/internal/seccompexec")

	svc := "Service"
	if u.get(svc, "SystemCallErrorNumber") != "EPERM" || u.get(svc, "SystemCallArchitectures") != "native" {
		t.Fatalf("SystemCallErrorNumber=%q SystemCallArchitectures=%q: this emulation knows EPERM and native",
			u.get(svc, "SystemCallErrorNumber"), u.get(svc, "SystemCallArchitectures"))
	}
	allowed := map[string]bool{}
	groups := map[string][]string{}
	for i, v := range u[svc]["SystemCallFilter"] {
		deny := strings.HasPrefix(v, "~")
		if i == 0 && deny {
			t.Fatalf("SystemCallFilter=%s: this emulation knows allow lists (then ~ lines)", v)
		}
		for name := range expandSyscalls(t, strings.Fields(strings.TrimPrefix(v, "~")), groups) {
			if deny {
				delete(allowed, name)
			} else {
				allowed[name] = true
			}
		}
	}
	numbers := syscallNumbers(t)
	var nrs []string
	for name := range allowed {
		if nr, ok := numbers[name]; ok { // names of other architectures do not exist here
			nrs = append(nrs, nr)
		}
	}
	if !allowed["setns"] || len(nrs) < 100 {
		t.Fatalf("the unit's SystemCallFilter= allows %d syscalls here (setns: %v)", len(nrs), allowed["setns"])
	}

	afs := map[string]int{"AF_UNIX": unix.AF_UNIX, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6, "AF_NETLINK": unix.AF_NETLINK, "AF_PACKET": unix.AF_PACKET}
	var families []string
	for _, f := range u.words(svc, "RestrictAddressFamilies") {
		n, ok := afs[f]
		if !ok {
			t.Fatalf("RestrictAddressFamilies= names %s, which this emulation does not know", f)
		}
		families = append(families, strconv.Itoa(n))
	}

	nsFlags := map[string]uint64{"cgroup": unix.CLONE_NEWCGROUP, "ipc": unix.CLONE_NEWIPC, "net": unix.CLONE_NEWNET,
		"mnt": unix.CLONE_NEWNS, "pid": unix.CLONE_NEWPID, "user": unix.CLONE_NEWUSER, "uts": unix.CLONE_NEWUTS}
	var forbidden uint64
	for _, f := range nsFlags {
		forbidden |= f
	}
	ns := u.get(svc, "RestrictNamespaces")
	if strings.HasPrefix(ns, "~") || ns == "" || ns == "no" {
		t.Fatalf("RestrictNamespaces=%q: this emulation knows allow lists", ns)
	}
	for _, name := range strings.Fields(ns) {
		f, ok := nsFlags[name]
		if !ok {
			t.Fatalf("RestrictNamespaces= names %s", name)
		}
		forbidden &^= f
	}

	return []string{helper, "-allow", strings.Join(nrs, ","), "-families", strings.Join(families, ","),
		"-ns-forbidden", strconv.FormatUint(forbidden, 10), "-mdwe=" + strconv.FormatBool(u.get(svc, "MemoryDenyWriteExecute") == "yes"), "--"}
}

// expandSyscalls resolves @groups with systemd-analyze syscall-filter.
func expandSyscalls(t *testing.T, names []string, groups map[string][]string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, n := range names {
		if !strings.HasPrefix(n, "@") {
			out[n] = true
			continue
		}
		members, ok := groups[n]
		if !ok {
			text := run(t, "", "systemd-analyze", "syscall-filter", "--no-pager", n)
			for _, line := range strings.Split(text, "\n")[1:] {
				if f := strings.TrimSpace(line); f != "" && !strings.HasPrefix(f, "#") {
					members = append(members, f)
				}
			}
			groups[n] = members
		}
		for m := range expandSyscalls(t, members, groups) {
			out[m] = true
		}
	}
	return out
}

// syscallNumbers maps x86-64 syscall names to numbers, from the
// golang.org/x/sys this module builds with.
func syscallNumbers(t *testing.T) map[string]string {
	t.Helper()
	dir := strings.TrimSpace(run(t, repoRoot(t), "go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys"))
	data, err := os.ReadFile(filepath.Join(dir, "unix", "zsysnum_linux_amd64.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*SYS_([A-Z0-9_]+)\s*=\s*([0-9]+)`).FindAllStringSubmatch(string(data), -1) {
		out[strings.ToLower(m[1])] = m[2]
	}
	if len(out) < 300 {
		t.Fatalf("%d syscall numbers in %s", len(out), dir)
	}
	return out
}

func detector(r api.CheckResult, name string) string {
	for _, a := range r.Addresses {
		for _, d := range a.Detectors {
			if d.Name == name {
				return string(d.Verdict)
			}
		}
	}
	return ""
}
