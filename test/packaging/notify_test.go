package packaging

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// notifyMsg is one datagram the agent sent to $NOTIFY_SOCKET.
type notifyMsg struct {
	at     time.Time
	pid    int32 // sender, from SCM_CREDENTIALS
	raw    string
	fields map[string]string
}

func (m notifyMsg) String() string {
	return fmt.Sprintf("%s pid %d %q", m.at.Format("15:04:05.000"), m.pid, m.raw)
}

// notifySocket plays systemd's side: a unixgram socket with SO_PASSCRED, so
// that every datagram names its sender as systemd sees it (NotifyAccess=).
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
	seen []notifyMsg
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A path, not an abstract name: abstract sockets belong to a network
	// namespace, and the agent runs in one of its own.
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	return &notifySocket{t: t, path: path, conn: conn}
}

// read returns the next datagram, or an error when none arrives by
// deadline.
func (s *notifySocket) read(deadline time.Time) (notifyMsg, error) {
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		return notifyMsg{}, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return notifyMsg{}, err
	}
	m := notifyMsg{at: time.Now(), raw: string(buf[:n]), fields: map[string]string{}, pid: -1}
	if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range cmsgs {
			if cred, err := unix.ParseUnixCredentials(&cmsgs[i]); err == nil {
				m.pid = cred.Pid
			}
		}
	}
	for _, line := range strings.Split(m.raw, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m.fields[k] = v
		}
	}
	s.seen = append(s.seen, m)
	return m, nil
}

// waitFor reads datagrams until one satisfies match and returns it with
// every datagram read before it; it fails the test when none does within
// timeout, listing what did arrive.
func (s *notifySocket) waitFor(what string, timeout time.Duration, match func(notifyMsg) bool) (notifyMsg, []notifyMsg) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var before []notifyMsg
	for {
		m, err := s.read(deadline)
		if err != nil {
			s.t.Fatalf("no %s within %v (%v); datagrams so far:\n%s", what, timeout, err, s.history())
		}
		if match(m) {
			return m, before
		}
		before = append(before, m)
	}
}

// drain returns what is already queued.
func (s *notifySocket) drain() []notifyMsg {
	var out []notifyMsg
	for {
		m, err := s.read(time.Now().Add(50 * time.Millisecond))
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

func (s *notifySocket) history() string {
	var b strings.Builder
	for _, m := range s.seen {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	return b.String()
}

func has(m notifyMsg, key, value string) bool { return m.fields[key] == value }

// slowPlugin writes a plugin wrapper that waits before it becomes the real
// plugin, so that READY=1 sent at start-up instead of after the plugins
// would be caught. exec keeps the pid, so the agent's view of the plugin
// is unchanged.
func slowPlugin(t *testing.T, real string, delay time.Duration) string {
	t.Helper()
	path := filepath.Join(agenttest.TrustedTempDir(t), "slow-"+filepath.Base(real))
	script := fmt.Sprintf("#!/bin/sh\nsleep %.1f\nexec %s \"$@\"\n", delay.Seconds(), real)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSdNotify plays systemd to the real daemon (Type=notify, WatchdogSec=,
// NotifyAccess=main): READY=1 only once every plugin is ready, STATUS=
// following plugin states, WATCHDOG=1 at WATCHDOG_USEC/2, RELOADING=1 with
// MONOTONIC_USEC and READY=1 again on SIGHUP, STOPPING=1 on SIGTERM, and
// every datagram from the main process.
func TestSdNotify(t *testing.T) {
	requireRoot(t)
	b := agentBinaries(t)
	sock := listenNotify(t)

	const watchdogUsec = 200000
	const slowStart = 1500 * time.Millisecond
	slow := slowPlugin(t, filepath.Join(b.PluginDir, "spiderpool-plugins"), slowStart)
	start := time.Now()
	a := agenttest.Start(t, b, agenttest.Options{
		Config: fmt.Sprintf("gops_port = 0\nplugin \"ip-conflict\" {\n  path = %q\n  component = \"ip-conflict\"\n}\n", slow),
		// WATCHDOG_PID empty: go-systemd honours WATCHDOG_USEC for any pid.
		Env: []string{"NOTIFY_SOCKET=" + sock.path, "WATCHDOG_USEC=" + strconv.Itoa(watchdogUsec), "WATCHDOG_PID="},
	})
	pid := int32(a.PID())
	defer func() {
		for _, m := range sock.seen {
			if m.pid != pid {
				t.Errorf("datagram from pid %d, not the agent's %d: systemd (NotifyAccess=main) ignores it: %s", m.pid, pid, m)
			}
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("datagrams (agent pid %d, started %s):\n%s", pid, start.Format("15:04:05.000"), sock.history())
		}
	}()

	// READY=1, after the slow plugin, with a STATUS saying all are ready,
	// and readiness agreeing at once.
	ready, before := sock.waitFor("READY=1", 30*time.Second, func(m notifyMsg) bool { return has(m, "READY", "1") })
	if took := ready.at.Sub(start); took < slowStart {
		t.Errorf("READY=1 after %v, before the slow plugin could have started (%v)", took, slowStart)
	}
	if got, want := ready.fields["STATUS"], "3 plugins: 3 ready"; got != want {
		t.Errorf("READY=1 came with STATUS=%q, want %q", got, want)
	}
	for _, m := range before {
		if !has(m, "WATCHDOG", "1") {
			t.Errorf("before READY=1 only WATCHDOG=1 may come, got %s", m)
		}
	}
	if code, body, err := a.Get(a.Health, "/v1/runtime/readiness"); err != nil || code != http.StatusOK {
		t.Errorf("readiness right after READY=1: %d %s %v, want 200", code, body, err)
	}

	// WATCHDOG=1 every WATCHDOG_USEC/2: ten in a row, the usual gap near
	// 100 ms (a wrong interval fails here), and no gap so long that it
	// means a stuck loop (twice systemd's limit, to spare a loaded CI).
	interval := time.Duration(watchdogUsec/2) * time.Microsecond
	var watchdogs []notifyMsg
	deadline := time.Now().Add(40 * interval)
	for len(watchdogs) < 10 {
		m, err := sock.read(deadline)
		if err != nil {
			t.Fatalf("%d WATCHDOG=1 by the deadline (%v), want 10 at %v intervals", len(watchdogs), err, interval)
		}
		if has(m, "WATCHDOG", "1") {
			watchdogs = append(watchdogs, m)
		}
	}
	var gaps []time.Duration
	for i := 1; i < len(watchdogs); i++ {
		gaps = append(gaps, watchdogs[i].at.Sub(watchdogs[i-1].at))
	}
	slices.Sort(gaps)
	if median := gaps[len(gaps)/2]; median < interval/2 || median > interval*3/2 {
		t.Errorf("WATCHDOG=1 gaps %v: median %v, want about WATCHDOG_USEC/2 = %v", gaps, median, interval)
	}
	if longest := gaps[len(gaps)-1]; longest > 2*watchdogUsec*time.Microsecond {
		t.Errorf("WATCHDOG=1 gap of %v; systemd kills after WATCHDOG_USEC (%v)", longest, watchdogUsec*time.Microsecond)
	}

	// A plugin killed: STATUS names it while it is not ready, then all
	// are ready again.
	victim := pluginPID(t, a, "gateway-detector")
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down, _ := sock.waitFor("STATUS= naming gateway-detector", 15*time.Second, func(m notifyMsg) bool {
		return strings.Contains(m.fields["STATUS"], "gateway-detector")
	})
	if !strings.Contains(down.fields["STATUS"], "restarting") && !strings.Contains(down.fields["STATUS"], "starting") && !strings.Contains(down.fields["STATUS"], "failed") {
		t.Errorf("STATUS after the kill = %q, want the plugin shown restarting or starting", down.fields["STATUS"])
	}
	_, during := sock.waitFor("STATUS= with all ready again", 20*time.Second, func(m notifyMsg) bool {
		return m.fields["STATUS"] == "3 plugins: 3 ready"
	})
	for _, m := range during {
		if has(m, "READY", "1") {
			t.Errorf("READY=1 again on a plugin restart: %s", m)
		}
	}
	if victim == pluginPID(t, a, "gateway-detector") {
		t.Errorf("gateway-detector still has pid %d after SIGKILL", victim)
	}

	// SIGHUP: RELOADING=1 with our CLOCK_MONOTONIC, then READY=1.
	before0 := monotonicUsec(t)
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading, _ := sock.waitFor("RELOADING=1", 10*time.Second, func(m notifyMsg) bool { return has(m, "RELOADING", "1") })
	after0 := monotonicUsec(t)
	if mono, err := strconv.ParseInt(reloading.fields["MONOTONIC_USEC"], 10, 64); err != nil || mono < before0 || mono > after0 {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want CLOCK_MONOTONIC in µs between %d and %d", reloading.fields["MONOTONIC_USEC"], before0, after0)
	}
	reloaded, _ := sock.waitFor("READY=1 after the reload", 20*time.Second, func(m notifyMsg) bool { return has(m, "READY", "1") })
	if reloaded.fields["STATUS"] == "" {
		t.Errorf("READY=1 after the reload without a STATUS: %s", reloaded)
	}

	// SIGTERM: STOPPING=1, a clean exit, and nothing after it but what
	// the stop itself says.
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sock.waitFor("STOPPING=1", 10*time.Second, func(m notifyMsg) bool { return has(m, "STOPPING", "1") })
	if code, ok := a.ExitCode(20 * time.Second); !ok || code != 0 {
		t.Fatalf("exit code %d (exited %v) after SIGTERM, want 0", code, ok)
	}
	for _, m := range sock.drain() {
		if has(m, "READY", "1") || has(m, "WATCHDOG", "1") {
			t.Errorf("after STOPPING=1: %s", m)
		}
	}
}

func pluginPID(t *testing.T, a *agenttest.Agent, name string) int {
	t.Helper()
	p := agenttest.PluginOf(t, a.Socket, name)
	if p.PID == 0 {
		b, _ := json.Marshal(p)
		t.Fatalf("plugin %s has no pid: %s", name, b)
	}
	return p.PID
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}
