package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// dialMany opens n TCP connections to 127.0.0.1:port inside the agent's
// namespace, one after the other (a socket keeps its namespace), so that
// the test can then use them all at once without n namespace switches.
func dialMany(t *testing.T, a *agenttest.Agent, port, n int) []net.Conn {
	t.Helper()
	conns, err := netlab.DialIn("/var/run/netns/"+a.Netns, port, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if err != nil {
		t.Fatalf("in netns %s: %v", a.Netns, err)
	}
	return conns
}

// socketsIn creates n TCP sockets inside the agent's namespace, not yet
// connected (a socket keeps the namespace it was made in), so that many
// goroutines can connect at the same moment without n namespace switches -
// and without idling on an accepted connection before the request, which
// the health server's 2 s header timeout would rightly cut.
func socketsIn(t *testing.T, a *agenttest.Agent, n int) []int {
	t.Helper()
	fds := make([]int, 0, n)
	netlab.InNS(t, a.Netns, func() error {
		for i := 0; i < n; i++ {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket %d: %w", i, err)
			}
			fds = append(fds, fd)
		}
		return nil
	})
	return fds
}

// connectFD connects fd to 127.0.0.1:port and makes it a net.Conn.
func connectFD(fd, port int) (net.Conn, error) {
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "probe")
	defer f.Close()
	return net.FileConn(f)
}

// probeLiveness connects fd to the health port, asks for liveness and
// returns the status line, with the body when it is not 200.
func probeLiveness(fd, port int) string {
	c, err := connectFD(fd, port)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "GET /v1/runtime/liveness HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"); err != nil {
		return "error: " + err.Error()
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return res.Status + " " + strings.TrimSpace(string(b))
	}
	return res.Status
}

// Under 5000 liveness probes at once, 3209 answered 503
// for a live agent (each probe dialled the control socket). 2000 probes at
// once must all answer 200. The bound on each probe is generous: this
// proves "never falsely dead", not speed.
func TestLivenessHoldsUnderLoad(t *testing.T) {
	const probes = 2000
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	fds := socketsIn(t, a, probes)

	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	var began time.Time
	for _, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got := probeLiveness(fd, a.Health)
			mu.Lock()
			codes[got]++
			mu.Unlock()
		}()
	}
	began = time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent liveness probes in %v: %v", probes, time.Since(began).Round(time.Millisecond), codes)
	if codes["200 OK"] != probes {
		for k, n := range codes {
			if k != "200 OK" {
				t.Errorf("%d probes answered %s", n, k)
			}
		}
	}
}

// Clients that send their headers slowly, or a body that
// never ends, were held for ever on 5710 and the control socket. They are
// cut after the servers' timeouts (5s headers, 10s request), and the agent
// stays live meanwhile.
func TestSlowClientsAreCutByTheAgent(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	var slow []net.Conn
	for _, c := range dialMany(t, a, a.Health, 20) {
		io.WriteString(c, "GET /v1/runtime/liveness HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
		slow = append(slow, c)
	}
	for i := 0; i < 20; i++ {
		c, err := net.Dial("unix", a.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
		} else {
			io.WriteString(c, "POST /v1/check HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"interface\":")
		}
		slow = append(slow, c)
	}
	if code, body, err := a.Get(a.Health, "/v1/runtime/liveness"); err != nil || code != http.StatusOK {
		t.Errorf("liveness with 40 slow clients held: %d %s %v", code, body, err)
	}
	// Room for a loaded machine: the timeouts are 5s and 10s.
	deadline := time.Now().Add(60 * time.Second)
	for i, c := range slow {
		c.SetReadDeadline(deadline)
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("slow client %d still connected 60s later: %v", i, err)
		}
	}
}

// A FIFO in the config directory hung SIGHUP for good:
// the main loop stopped, liveness went 503 and SIGTERM was ignored. Now the
// reload fails at once naming the file, liveness stays 200, the running
// configuration stays, and SIGTERM stops the agent.
func TestReloadRefusesAFIFOAndStaysLive(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	fifo := filepath.Join(a.Dir, "zz.hcl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netlab.WaitFor(t, "the reload to fail naming the FIFO", func() (bool, error) {
		return strings.Contains(a.Log(), "reload failed") && strings.Contains(a.Log(), fifo+" is a named pipe (FIFO), not a regular file"), nil
	})
	// The loop beats every 200ms and liveness fails after 5s without a beat;
	// 7s of 200s proves the loop was never held.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); {
		if code, body, err := a.Get(a.Health, "/v1/runtime/liveness"); err != nil || code != http.StatusOK {
			t.Fatalf("liveness after a reload over a FIFO: %d %s %v", code, body, err)
		}
		time.Sleep(100 * time.Millisecond) // polling an endpoint, not synchronisation
	}
	// The control API's reload says the same.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (&control.Client{SocketPath: a.Socket}).Reload(ctx); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("reload over the control socket: %v, want an error naming the FIFO", err)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exit, ok := a.ExitCode(agenttest.StopTimeout); !ok || exit != 0 {
		t.Fatalf("after SIGTERM: exit %d (exited %v), want 0 within %v", exit, ok, agenttest.StopTimeout)
	}
}

// With gops on, the log and status say that any local
// user can reach it; the profiles come over the control socket.
func TestGopsWarnsAndPprofOverTheSocket(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{Env: []string{"SPIDERPOOL_GOPS_LISTEN_PORT=15712", "GOPS_CONFIG_DIR=" + t.TempDir()}})
	a.WaitReady(agenttest.ReadyTimeout)
	if log := a.Log(); !strings.Contains(log, "[WARN]") || !strings.Contains(log, "gops agent listening: any local user") {
		t.Errorf("no warning that gops is reachable by any local user:\n%s", log)
	}
	if st := status(t, a); st.Gops != "127.0.0.1:15712" {
		t.Errorf("status gops = %q, want 127.0.0.1:15712", st.Gops)
	}
	out, errOut, code := a.CLI("status", "--socket", a.Socket)
	if code != 0 || !strings.Contains(out, "warning: gops listens on 127.0.0.1:15712") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}

	file := filepath.Join(t.TempDir(), "cpu.pprof")
	_, errOut, code = a.CLI("debug", "pprof", "cpu", "--seconds", "1", "--socket", a.Socket, "-o", file)
	if code != 0 {
		t.Fatalf("debug pprof cpu: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(file); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("%s is not a gzipped profile (%d bytes, %v)", file, len(b), err)
	}
}
