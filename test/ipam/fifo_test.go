package ipam

import (
	"context"
	"errors"
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

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/health"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// fifoPool has detection on: the vetted path raises the workload's
// interface in its namespace, where a FIFO used to block open(2) for ever.
const fifoPool = `
pool "f" {
  subnet             = "10.61.0.0/24"
  ranges             = ["10.61.0.10-10.61.0.59"]
  conflict_detection = true
}
`

// mkfifo makes a FIFO and lets any reader still stuck on it go when the
// test ends (a writer's open completes theirs).
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0); err == nil {
			syscall.Close(fd)
		}
	})
}

// latencies watches the control socket while an attack runs: status and
// ipam pools back to back, each bounded by 5s; stop returns the slowest
// answer of each and the first error.
type latencies struct {
	Status, Pools time.Duration
	Asked         int
	Err           error
}

func watchLatency(a *ipamAgent) (stop func() latencies) {
	done := make(chan struct{})
	out := make(chan latencies, 1)
	go func() {
		var l latencies
		c := api.Client{SocketPath: a.Socket}
		for {
			select {
			case <-done:
				out <- l
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			_, err := c.Status(ctx)
			l.Status = max(l.Status, time.Since(start))
			start = time.Now()
			_, perr := a.Client.Pools(ctx)
			l.Pools = max(l.Pools, time.Since(start))
			cancel()
			l.Asked++
			if l.Err == nil {
				l.Err = errors.Join(err, perr)
			}
		}
	}()
	return func() latencies {
		close(done)
		return <-out
	}
}

// FIFOAttack sends n allocations at once, each naming a FIFO as its
// network namespace, and returns their errors (nil for an allocation that
// was granted). Each is bounded by 15s: the old agent never answered.
func FIFOAttack(a *ipamAgent, fifo, pool string, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, errs[i] = a.Client.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprint("fifo", i), Interface: "eth0", Netns: fifo, Pools: []string{pool}})
		}()
	}
	wg.Wait()
	return errs
}

// TestFIFONetnsHoldsNothing: 300 allocations at once naming a FIFO as the
// namespace (once: each hung for ever holding a reservation, 50 filled the
// pool, and status, ipam pools and CNI DELs timed out). Each is refused at
// once naming the field and what the path is; status and ipam pools answer
// within 1s throughout; nothing is reserved.
func TestFIFONetnsHoldsNothing(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: fifoPool})
	fifo := filepath.Join(t.TempDir(), "fifo")
	mkfifo(t, fifo)
	stop := watchLatency(a)
	start := time.Now()
	errs := FIFOAttack(a, fifo, "f", 300)
	took := time.Since(start)
	l := stop()
	t.Logf("300 FIFO allocations answered in %v; slowest status %v, slowest ipam pools %v over %d rounds", took, l.Status, l.Pools, l.Asked)
	for i, err := range errs {
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "netns" || !strings.Contains(ae.ErrorBody.Error, fifo+" is a FIFO") {
			t.Fatalf("allocation %d: %v, want 400 on netns saying %s is a FIFO", i, err, fifo)
		}
	}
	if l.Err != nil || l.Status >= time.Second || l.Pools >= time.Second {
		t.Errorf("while the attack ran: slowest status %v, ipam pools %v (want < 1s), error %v", l.Status, l.Pools, l.Err)
	}
	if u := poolUsage(t, a, "f"); u.Reserved != 0 || u.Allocated != 0 || u.Free != 50 {
		t.Errorf("pool after the attack: %+v, want all 50 free", u)
	}
	a.Stop()
	if list := consistent(t, a.DB); len(list) != 0 {
		t.Errorf("%d allocations left in the store", len(list))
	}
}

// TestNetnsPathKinds: what is not a network namespace is refused before
// anything is reserved, with a 400 naming the field and the path's kind.
func TestNetnsPathKinds(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: fifoPool})
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	mkfifo(t, fifo)
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, says string }{
		{fifo, "is a FIFO"},
		{link, "is a FIFO"},
		{dir, "is a directory"},
		{regular, "is a regular file"},
		{"/dev/zero", "is a character device"},
		{"/proc/self/ns/uts", "is a UTS namespace"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.Client.Allocate(ctx, api.AllocateRequest{ContainerID: "k", Interface: "eth0", Netns: tc.path, Pools: []string{"f"}})
		cancel()
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "netns" || !strings.Contains(ae.ErrorBody.Error, tc.path) || !strings.Contains(ae.ErrorBody.Error, tc.says) {
			t.Errorf("netns %s: %v, want 400 on netns saying %q", tc.path, err, tc.says)
		}
	}
	if u := poolUsage(t, a, "f"); u.Reserved != 0 || u.Allocated != 0 {
		t.Errorf("pool after the refusals: %+v", u)
	}
}

// IdleFlood opens n connections to the control socket that never send a
// request, and closes them when the test ends.
func IdleFlood(t *testing.T, socket string, n int) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
}

// TestIdleConnectionsDelayNothing: 3000 connections that never send a
// request (once: every request waited behind them, past the CNI plugin's
// 10s), then a status request and an IPAM call are answered within 1s.
func TestIdleConnectionsDelayNothing(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: fifoPool})
	IdleFlood(t, a.Socket, 3000)
	c := api.Client{SocketPath: a.Socket}
	for round := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		start := time.Now()
		_, err := c.Status(ctx)
		statusTook := time.Since(start)
		start = time.Now()
		_, perr := a.Client.Pools(ctx)
		poolsTook := time.Since(start)
		cancel()
		t.Logf("round %d behind 3000 idle connections: status %v, ipam pools %v", round, statusTook, poolsTook)
		if err != nil || perr != nil || statusTook >= time.Second || poolsTook >= time.Second {
			t.Fatalf("behind 3000 idle connections: status %v (%v), ipam pools %v (%v); want both within 1s", statusTook, err, poolsTook, perr)
		}
	}
}

// SaturateControl holds n requests in progress on the control socket for
// up to 60s each (delta profiles, which wait their seconds), until the
// returned release is called.
func SaturateControl(t *testing.T, socket string, n int) (release func()) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, c := range conns {
				c.Close()
			}
		})
	}
	t.Cleanup(release)
	for range n {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET "+api.PprofPath+"goroutine?seconds=60 HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %v", len(conns), err)
		}
	}
	return release
}

// TestReadinessNamesAWedgedControlSocket: every connection the control
// socket serves is busy with a long request, so the agent's own status
// request gets no answer: readiness says not ready naming
// "control-socket" (once: it said ready while the socket answered
// nothing), and ready again once the socket answers.
func TestReadinessNamesAWedgedControlSocket(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: fifoPool})
	release := SaturateControl(t, a.Socket, 600)
	start := time.Now()
	readiness := func(want int, says string) func() (bool, error) {
		return func() (bool, error) {
			code, body, err := a.Get(a.Health, health.ReadinessPath)
			return err == nil && code == want && strings.Contains(string(body), says), nil
		}
	}
	poll.Until(t, 30*time.Second, "readiness 503 naming control-socket", readiness(http.StatusServiceUnavailable, `"control-socket"`))
	t.Logf("not ready, naming control-socket, %v after the socket was saturated", time.Since(start))
	_, body, _ := a.Get(a.Health, health.ReadinessPath)
	if !strings.Contains(string(body), "has not answered the agent's own status request") {
		t.Errorf("readiness does not say why:\n%s", body)
	}
	release()
	start = time.Now()
	poll.Until(t, 30*time.Second, "readiness 200 once the socket answers", readiness(http.StatusOK, `"ready"`))
	t.Logf("ready again %v after the requests ended", time.Since(start))
}
