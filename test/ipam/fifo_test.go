package ipam

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/health"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
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

// The FIFO attack itself (300 allocations at once naming a FIFO, status
// and ipam pools watched meanwhile) is test/ipamtrust's FIFONetns, and the
// idle flood its IdleConnections: make faults runs the same functions.

// TestNetnsPathKinds: what is not a network namespace is refused before
// anything is reserved, with a 400 naming the field and the path's kind.
func TestNetnsPathKinds(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: fifoPool})
	for _, tc := range storetest.NotNetnsPaths(t) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.Client.Allocate(ctx, api.AllocateRequest{ContainerID: "k", Interface: "eth0", Netns: tc.Path, Pools: []string{"f"}})
		cancel()
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "netns" || !strings.Contains(ae.ErrorBody.Error, tc.Path) || !strings.Contains(ae.ErrorBody.Error, tc.Says) {
			t.Errorf("netns %s: %v, want 400 on netns saying %q", tc.Path, err, tc.Says)
		}
	}
	if u := poolUsage(t, a, "f"); u.Reserved != 0 || u.Allocated != 0 {
		t.Errorf("pool after the refusals: %+v", u)
	}
}

// SaturateControl holds n requests in progress on the control socket for
// up to 60s each (delta profiles, which wait their seconds), until the
// returned release is called. The socket's limiter makes room for a new
// connection by closing one whose request it has not read yet, so while a
// slow agent (race-built) is still reading the first requests, the ones
// beyond its limit replace earlier ones instead of adding to them; a slot
// the agent's own status request took meanwhile is free again once it is
// answered. Hence the refill: until release, one more request is tried
// every refillEvery, so that a freed slot is taken back within that, long
// before the self-probe's next turn.
func SaturateControl(t *testing.T, socket string, n int) (release func()) {
	t.Helper()
	const refillEvery = 100 * time.Millisecond
	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, n)
	)
	dial := func() (net.Conn, error) {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, "GET "+api.PprofPath+"goroutine?seconds=60 HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
			c.Close()
			return nil, err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c, nil
	}
	stop := make(chan struct{})
	refilled := make(chan struct{})
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			<-refilled
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
	}
	for i := range n {
		if _, err := dial(); err != nil {
			close(refilled)
			release()
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	go func() {
		defer close(refilled)
		tick := time.NewTicker(refillEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// A refused one is answered busy and closed by the agent;
			// one that got a slot holds it until release.
			_, _ = dial()
		}
	}()
	t.Cleanup(release)
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
