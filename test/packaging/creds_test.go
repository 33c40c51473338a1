package packaging

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
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
	log             *lockedBuffer
	done            chan struct{}
}

func startCredAgent(t *testing.T, caps []string) *credAgent {
	t.Helper()
	ns := netlab.NewNS(t, "unit")
	netlab.IP(t, ns, "link", "set", "lo", "up")
	dir, err := os.MkdirTemp("", "spiderpool-unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
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
	a := &credAgent{ns: ns, dir: dir, socket: filepath.Join(runDir, "spiderpool.sock"), log: &lockedBuffer{}, done: make(chan struct{})}
	files := map[string]string{
		"config.hcl":  string(packaged),
		"zz-test.hcl": fmt.Sprintf("socket_path = %q\ngops_port = 0\n", a.socket),
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
		"--inh-caps="+capArg, "--ambient-caps="+capArg, "--bounding-set="+capArg, "--no-new-privs", "--",
		"/usr/bin/spiderpool-agent", "daemon", "--config-dir", conf)
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
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := netlab.DoInNS("/var/run/netns/"+a.ns, func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
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

func (a *credAgent) status(t *testing.T) state.Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := (&control.Client{SocketPath: a.socket}).Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func (a *credAgent) check(t *testing.T, netns, addr, gw string) control.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := control.CheckRequest{Interface: "eth0", Netns: netns, Addresses: []control.AddressRequest{{Address: addr, Gateway: gw}}}
	resp, code, err := (&control.Client{SocketPath: a.socket}).Check(ctx, req)
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

	a := startCredAgent(t, caps)
	a.waitReady(t)

	// It is who the unit says, and so are its plugins.
	st := a.status(t)
	pids := []int{a.cmd.Process.Pid}
	for _, p := range st.Plugins {
		if p.State != state.Ready {
			t.Errorf("plugin %s is %s (%s), want ready", p.Name, p.State, p.Message)
		}
		pids = append(pids, p.PID)
	}
	for _, pid := range pids {
		s := procStatus(t, pid)
		eff, _ := strconv.ParseUint(s["CapEff"], 16, 64)
		t.Logf("pid %d %s: Uid %s CapEff %s NoNewPrivs %s", pid, s["Name"], s["Uid"], s["CapEff"], s["NoNewPrivs"])
		if !strings.HasPrefix(s["Uid"], strconv.Itoa(dynamicUID)+"\t") || eff != mask || s["NoNewPrivs"] != "1" {
			t.Errorf("pid %d (%s): Uid %q CapEff %s NoNewPrivs %s, want uid %d, CapEff %x, NoNewPrivs 1", pid, s["Name"], s["Uid"], s["CapEff"], s["NoNewPrivs"], dynamicUID, mask)
		}
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
	b := startCredAgent(t, noPtrace)
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

func logCheck(t *testing.T, ns string, r control.CheckResponse) bool {
	t.Helper()
	t.Logf("through %s: %+v", ns, r)
	return true
}

func detector(r control.CheckResponse, name string) string {
	for _, a := range r.Addresses {
		for _, d := range a.Detectors {
			if d.Name == name {
				return d.Verdict
			}
		}
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
