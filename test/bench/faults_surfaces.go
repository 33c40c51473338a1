package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The agent's surfaces under attack: gops,
// connection floods, hostile config files, a squatted socket, bad input.

func faultSurfaces(s *scope, b *bins) []faultRow {
	var rows []faultRow
	for _, f := range []func(*scope, *bins) faultRow{surfGops, surfLivenessStorm, surfSlowClients, surfHostileConfig, surfSquatter, surfSmallInputs} {
		var row faultRow
		if err := run("surfaces", func(s *scope) { row = f(s, b) }); err != nil {
			row = faultRow{fault: "surfaces", done: "(the harness failed)", did: err.Error()}
		}
		rows = append(rows, row)
	}
	return rows
}

// bareNS is a namespace with only lo up: the surfaces need no LAN.
func bareNS(s *scope, role string) string {
	ns := netlab.NewNS(s, role)
	netlab.IP(s, ns, "link", "set", "lo", "up")
	return "/var/run/netns/" + ns
}

func closeConns(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// asNobody runs argv as uid/gid 65534 inside nsPath.
func asNobody(nsPath string, argv ...string) (int, time.Duration, string) {
	return runIn(nsPath, 60*time.Second, append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)...)
}

// Item 5: gops off as packaged; profiles over the socket, root only.
func surfGops(s *scope, b *bins) faultRow {
	row := faultRow{fault: "gops and profiles",
		done: "agent with the packaged gops_port = 0: connect to 127.0.0.1:5712; debug pprof heap and cpu as root and as nobody; then an agent with gops on"}
	ns := bareNS(s, "gops")
	a := startAgent(s, b, agentOpts{name: "gops-off", nsPath: ns, config: "gops_port = 0\n"})
	a.waitReady(60 * time.Second)
	_, dialErr := netlab.DialIn(ns, 5712, 1)
	heap := filepath.Join(s.TempDir(), "heap.pprof")
	hc, ht, hout := runIn(ns, 60*time.Second, b.agent, "debug", "pprof", "heap", "--socket", a.Socket, "-o", heap)
	cpu := filepath.Join(s.TempDir(), "cpu.pprof")
	cc, ct, cout := runIn(ns, 60*time.Second, b.agent, "debug", "pprof", "cpu", "--seconds", "1", "--socket", a.Socket, "-o", cpu)
	nc, _, nout := asNobody(ns, b.agent, "debug", "pprof", "heap", "--socket", a.Socket, "-o", "-")
	hsz, csz := fileSize(heap), fileSize(cpu)
	a.stop()

	on := startAgent(s, b, agentOpts{name: "gops-on", nsPath: bareNS(s, "gopson"), config: "gops_port = 5712\n"})
	on.waitReady(60 * time.Second)
	st, err := on.status()
	warned := strings.Contains(on.Log(), "gops agent listening: any local user")
	row.did = fmt.Sprintf("gops off: connect %s; root: heap exit %d, cpu exit %d; nobody: exit %d (%s); gops on: WARN in log %v, status gops=%q",
		errWord(dialErr), hc, cc, nc, firstLine(nout), warned, st.Gops)
	row.numbers = fmt.Sprintf("heap %d bytes in %s ms, cpu 1 s %d bytes in %s ms", hsz, ms(ht), csz, ms(ct))
	row.held = dialErr != nil && hc == 0 && cc == 0 && hsz > 0 && csz > 0 && nc != 0 && err == nil && st.Gops != "" && warned
	if hc != 0 || cc != 0 {
		row.numbers += "; " + firstLine(hout+cout)
	}
	return row
}

// Item 6: 5000 liveness probes at once.
func surfLivenessStorm(s *scope, b *bins) faultRow {
	const probes = 5000
	row := faultRow{fault: "liveness storm", done: fmt.Sprintf("%d connections to 5710, then a liveness request on each at once", probes)}
	ns := bareNS(s, "storm")
	// The backlog must hold the probes the server has not accepted yet
	// (namespace sysctl; the host's is untouched).
	netlab.Sysctl(s, strings.TrimPrefix(ns, "/var/run/netns/"), "net.core.somaxconn", "8192")
	a := startAgent(s, b, agentOpts{name: "storm", nsPath: ns})
	a.waitReady(60 * time.Second)
	rss0 := rssKiB(a.pid())
	fds, err := socketsIn(ns, probes)
	if err != nil {
		row.did = "could not make the sockets: " + err.Error()
		return row
	}
	codes, took := connectAndRequest(fds, a.Health, "GET /v1/runtime/liveness HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 60*time.Second)
	row.did = fmt.Sprintf("answers: %v", codes)
	row.numbers = fmt.Sprintf("%d probes in %s ms; agent RSS %d → %d KiB", probes, ms(took), rss0, rssKiB(a.pid()))
	row.held = codes["200"] == probes
	return row
}

// socketsIn makes n TCP sockets inside nsPath, not yet connected (a socket
// keeps its namespace), so that they can all connect at the same moment:
// pre-connected idle sockets would be cut by the 2 s header timeout.
func socketsIn(nsPath string, n int) ([]int, error) {
	var fds []int
	err := netns.Do(nsPath, func() error {
		for i := 0; i < n; i++ {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return nil
	})
	return fds, err
}

// connectAndRequest connects every socket to 127.0.0.1:port at once,
// writes req on each and tallies the status codes of the answers.
func connectAndRequest(fds []int, port int, req string, timeout time.Duration) (map[string]int, time.Duration) {
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got := "error"
			if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				syscall.Close(fd)
				mu.Lock()
				codes["connect error"]++
				mu.Unlock()
				return
			}
			f := os.NewFile(uintptr(fd), "probe")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(timeout))
			if _, err := io.WriteString(c, req); err == nil {
				if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					got = fmt.Sprint(res.StatusCode)
					res.Body.Close()
				}
			}
			mu.Lock()
			codes[got]++
			mu.Unlock()
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return codes, time.Since(t0)
}

// Item 6: slow headers, slow bodies and clients that never read.
func surfSlowClients(s *scope, b *bins) faultRow {
	const slowHealth, slowControl = 2000, 500
	row := faultRow{fault: "slow and silent clients",
		done: fmt.Sprintf("%d clients sending headers slowly on 5710, %d sending an endless body or never reading on the control socket", slowHealth, slowControl)}
	ns := bareNS(s, "slow")
	netlab.Sysctl(s, strings.TrimPrefix(ns, "/var/run/netns/"), "net.core.somaxconn", "8192")
	a := startAgent(s, b, agentOpts{name: "slow", nsPath: ns})
	a.waitReady(60 * time.Second)
	rss0 := rssKiB(a.pid())
	conns, err := netlab.DialIn(ns, a.Health, slowHealth)
	defer closeConns(conns)
	if err != nil {
		row.did = "could not open the connections: " + err.Error()
		return row
	}
	for _, c := range conns {
		io.WriteString(c, "GET /v1/runtime/liveness HTTP/1.1\r\nHost: a\r\nX-Slow: ")
	}
	for i := 0; i < slowControl; i++ {
		c, err := net.Dial("unix", a.Socket)
		if err != nil {
			row.did = "control socket: " + err.Error()
			return row
		}
		if i%2 == 0 {
			io.WriteString(c, "POST /v1/check HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n{")
		} else {
			io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
		}
		conns = append(conns, c)
	}
	t0 := time.Now()
	peak := rssKiB(a.pid())
	// Each connection must be closed by the agent.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	open := 0
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(120 * time.Second))
			_, err := io.Copy(io.Discard, c)
			mu.Lock()
			defer mu.Unlock()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
				return
			}
			last = max(last, time.Since(t0))
		}()
	}
	// Liveness while they are held (the probes queue behind at most
	// 1024 held health connections, cut after 5 s).
	lt0 := time.Now()
	lres, lerr := a.httpClient(30 * time.Second).Get(fmt.Sprintf("http://127.0.0.1:%d/v1/runtime/liveness", a.Health))
	lcode, ltook := 0, time.Since(lt0)
	if lerr == nil {
		lcode = lres.StatusCode
		lres.Body.Close()
	}
	if r := rssKiB(a.pid()); r > peak {
		peak = r
	}
	wg.Wait()
	row.did = fmt.Sprintf("%d of %d connections still open after 120 s; liveness meanwhile %d %v after %s ms", open, len(conns), lcode, errWord(lerr), ms(ltook))
	row.numbers = fmt.Sprintf("all cut within %s ms (health: headers 2 s, 1024 connections; control: request 10 s, idle 10 s, 128 connections); agent RSS %d KiB before, %d KiB at most, %d KiB after",
		ms(last), rss0, peak, rssKiB(a.pid()))
	row.held = open == 0 && lcode == http.StatusOK
	return row
}

// Item 9: a FIFO, a symlink to /dev/zero and a 34 MB file in the config
// directory, each followed by SIGHUP.
func surfHostileConfig(s *scope, b *bins) faultRow {
	row := faultRow{fault: "hostile config files",
		done: "SIGHUP with, in turn, a FIFO, a symlink to /dev/zero and a 34 MB file named zz.hcl in the config dir; liveness polled throughout; then SIGTERM"}
	ns := bareNS(s, "hup")
	a := startAgent(s, b, agentOpts{name: "hup", nsPath: ns})
	a.waitReady(60 * time.Second)
	rss0 := rssKiB(a.pid())
	zz := filepath.Join(a.Dir, "zz.hcl")
	makers := []struct {
		name string
		make func() error
		says string
	}{
		{"FIFO", func() error { return syscall.Mkfifo(zz, 0o600) }, "named pipe"},
		{"/dev/zero", func() error { return os.Symlink("/dev/zero", zz) }, "character device"},
		{"34 MB", func() error { return os.WriteFile(zz, make([]byte, 34<<20), 0o644) }, "at most 1048576"},
	}
	var said []string
	live503, polls := 0, 0
	ok := true
	for _, m := range makers {
		os.Remove(zz)
		if err := m.make(); err != nil {
			row.did = err.Error()
			return row
		}
		before := strings.Count(a.Log(), "reload failed")
		_ = a.Cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(a.Log(), "reload failed") == before && time.Now().Before(deadline) {
			polls++
			if code, _, _ := a.healthGet("/v1/runtime/liveness"); code != http.StatusOK {
				live503++
			}
			time.Sleep(50 * time.Millisecond) // polling, not synchronisation
		}
		got := strings.Contains(a.Log(), m.says)
		said = append(said, fmt.Sprintf("%s: %v", m.name, map[bool]string{true: "refused naming it", false: "NOT refused"}[got]))
		ok = ok && got
	}
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		polls++
		if code, _, _ := a.healthGet("/v1/runtime/liveness"); code != http.StatusOK {
			live503++
		}
		time.Sleep(100 * time.Millisecond) // polling, not synchronisation
	}
	rss1 := rssKiB(a.pid())
	t0 := time.Now()
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	_, stopped := a.ExitCode(30 * time.Second)
	row.did = strings.Join(said, "; ") + fmt.Sprintf("; SIGTERM: %s", map[bool]string{true: "stopped", false: "IGNORED"}[stopped])
	row.numbers = fmt.Sprintf("liveness %d non-200 of %d polls; RSS %d → %d KiB; stop in %s ms", live503, polls, rss0, rss1, ms(time.Since(t0)))
	row.held = ok && stopped && live503 == 0 && a.Exited().Code == 0
	return row
}

// Item 10: a process of nobody squats the socket path in a world-writable
// directory and answers PASS.
func surfSquatter(s *scope, b *bins) faultRow {
	row := faultRow{fault: "socket squatted by nobody",
		done: "a world-writable socket directory; a process of uid 65534 listens on the socket and answers every check with pass; `check` against it; the daemon started on that directory"}
	ns := bareNS(s, "squat")
	top := s.TempDir()
	run := filepath.Join(top, "run")
	must(os.Chmod(top, 0o755))
	must(os.Mkdir(run, 0o777))
	must(os.Chmod(run, 0o777))
	sock := filepath.Join(run, "spiderpool.sock")
	// The impostor is this program, copied where nobody can run it.
	self, err := os.Executable()
	must(err)
	exe := filepath.Join(top, "impostor")
	copyExe(s, self, exe)
	must(os.Chmod(exe, 0o755))
	cmd := execNobody(exe)
	cmd.Env = append(agenttest.CleanEnv(), squatEnv+"="+sock)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		row.did = "impostor: " + err.Error()
		return row
	}
	s.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "listening") {
		row.did = "the impostor did not start"
		return row
	}
	code, _, cout := runIn(ns, 30*time.Second, b.agent, "check", "--socket", sock, "--interface", "lo", "--ip", "10.0.0.5/24")
	// The daemon on the same directory.
	dcode, _, dout := runIn(ns, 30*time.Second, b.agent, "daemon", "--config-dir", s.TempDir(), "--socket", filepath.Join(run, "other.sock"), "--plugin-dir", b.pluginDir)
	passed := strings.Contains(strings.ToUpper(cout), "PASS")
	row.did = fmt.Sprintf("check: exit %d, %q; daemon: exit %d, %q", code, firstLine(cout), dcode, firstLine(lastLine(dout)))
	row.numbers = "PASS printed: " + fmt.Sprint(passed)
	row.held = !passed && code != 0 && strings.Contains(cout, "refusing to trust") && dcode != 0 && strings.Contains(dout, "writable by group or others")
	return row
}

// Item 11: addresses that are no host's, JSON that encoding/json accepts
// loosely, a zone, and an abandoned metrics scrape.
func surfSmallInputs(s *scope, b *bins) faultRow {
	row := faultRow{fault: "small input gaps",
		done: "checks for 10.77.0.0/24, 10.77.0.255/24, 10.77.0.5/0, fd77::/64, fe80::1%eth0/64, a duplicate key, a wrong-case key; 20 metrics scrapes closed after the first byte"}
	ns := bareNS(s, "small")
	a := startAgent(s, b, agentOpts{name: "small", nsPath: ns, env: []string{"SPIDERPOOL_ENABLED_METRIC=true", "SPIDERPOOL_METRIC_HTTP_PORT=5711"}})
	a.waitReady(60 * time.Second)
	bodies := []string{
		`{"interface":"lo","addresses":[{"address":"10.77.0.0/24"}]}`,
		`{"interface":"lo","addresses":[{"address":"10.77.0.255/24"}]}`,
		`{"interface":"lo","addresses":[{"address":"10.77.0.5/0"}]}`,
		`{"interface":"lo","addresses":[{"address":"fd77::/64"}]}`,
		`{"interface":"lo","addresses":[{"address":"fe80::1%eth0/64"}]}`,
		`{"interface":"lo","interface":"eth9","addresses":[{"address":"10.77.0.5/24"}]}`,
		`{"Interface":"lo","addresses":[{"address":"10.77.0.5/24"}]}`,
	}
	good := 0
	var bad []string
	for _, body := range bodies {
		code, resp, err := a.rawRequest("POST", "/v1/check", "application/json", []byte(body))
		if err == nil && code == 400 && strings.Contains(string(resp), `"field"`) && !strings.Contains(string(resp), "/64/64") {
			good++
		} else {
			bad = append(bad, fmt.Sprintf("%s → %d %s", body, code, strings.TrimSpace(string(resp))))
		}
	}
	warns0 := strings.Count(a.Log(), "[WARN]")
	conns, err := netlab.DialIn(ns, 5711, 20)
	if err != nil {
		row.did = err.Error()
		return row
	}
	for _, c := range conns {
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
		one := make([]byte, 1)
		c.Read(one)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST: the scraper is gone
		}
		c.Close()
	}
	// One full scrape after them, so that they have been served.
	hc := a.httpClient(30 * time.Second)
	if resp, err := hc.Get("http://127.0.0.1:5711/metrics"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	warns := strings.Count(a.Log(), "[WARN]") - warns0
	row.did = fmt.Sprintf("%d of %d bad checks answered 400 naming the field; WARN lines after 20 abandoned scrapes: %d", good, len(bodies), warns)
	if len(bad) > 0 {
		row.did += "; not refused: " + strings.Join(bad, "; ")
	}
	row.held = good == len(bodies) && warns == 0
	return row
}

// squatEnv makes this program the impostor: it serves the control API on
// the socket named by the variable and passes every check.
const squatEnv = "SPIDERPOOL_BENCH_SQUAT_SOCKET"

func execNobody(argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func errWord(err error) string {
	if err == nil {
		return "ok"
	}
	return "refused (" + err.Error() + ")"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
