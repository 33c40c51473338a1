package ipam

import (
	"context"
	"errors"
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

// The FIFO attack itself (300 allocations at once naming a FIFO, status
// and ipam pools watched meanwhile) is test/ipamtrust's FIFONetns, and the
// idle flood its IdleConnections: make faults runs the same functions.

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
