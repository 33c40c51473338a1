package ipamtrust

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// fifoPool has detection on: an allocation with a netns opens it to probe
// from the workload's interface, which is where a FIFO blocks open(2).
const fifoPool = `
pool "f" {
  subnet             = "10.61.0.0/24"
  ranges             = ["10.61.0.10-10.61.0.59"]
  conflict_detection = true
}
`

// answerBound is the documented bound of a control request under attack.
const answerBound = time.Second

// watchAnswers asks status and ipam pools back to back (each bounded by
// 5s) until stop, which returns the slowest answer of either, how many
// rounds were asked and the first error.
func watchAnswers(socket string) (stop func() (slowest time.Duration, asked int, err error)) {
	done := make(chan struct{})
	type out struct {
		slowest time.Duration
		asked   int
		err     error
	}
	res := make(chan out, 1)
	go func() {
		var o out
		for {
			select {
			case <-done:
				res <- o
				return
			default:
			}
			took, err := askBoth(socket)
			o.slowest = max(o.slowest, took)
			o.asked++
			if o.err == nil && err != nil {
				o.err = err
			}
		}
	}()
	return func() (time.Duration, int, error) {
		close(done)
		o := <-res
		return o.slowest, o.asked, o.err
	}
}

// askBoth asks status, then ipam pools, each bounded by 5s, and returns
// the slower answer's time.
func askBoth(socket string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := (&api.Client{SocketPath: socket}).Status(ctx)
	status := time.Since(start)
	start = time.Now()
	_, perr := (&api.Client{SocketPath: socket}).Pools(ctx)
	return max(status, time.Since(start)), errors.Join(err, perr)
}

// FIFONetns: n allocations at once, each naming a FIFO as its network
// namespace (once: each hung for ever holding a reservation, 50 filled the
// pool, and status, ipam pools and CNI DELs timed out). The agent must
// refuse each at once (400 on the netns field, saying the path is a FIFO)
// without reserving anything, and keep answering status and ipam pools
// within answerBound throughout.
func FIFONetns(t testing.TB, e Env, n int) Result {
	t.Helper()
	r := Result{Attack: "allocations naming a FIFO as their netns",
		Tried: fmt.Sprintf(`%d allocations at once with "netns": a FIFO, on a 50-address pool with detection on, each bounded by 15 s; status and ipam pools asked back to back meanwhile`, n)}
	a := e.start(t, opts{pools: fifoPool})
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A writer's open completes any reader still stuck on the FIFO.
	t.Cleanup(func() {
		if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0); err == nil {
			syscall.Close(fd)
		}
	})
	stop := watchAnswers(a.Socket)
	errs := make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			t0 := time.Now()
			_, errs[i] = a.API.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprint("fifo-", i), Interface: "eth0", Netns: fifo, Pools: []string{"f"}})
			took[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	all := time.Since(start)
	slowest, asked, statusErr := stop()
	granted, refused, unanswered, unclear := 0, 0, 0, 0
	var slowestAlloc time.Duration
	firstRefusal := ""
	for i, err := range errs {
		slowestAlloc = max(slowestAlloc, took[i])
		var ae *api.APIError
		switch {
		case err == nil:
			granted++
		case errors.As(err, &ae):
			refused++
			if firstRefusal == "" {
				firstRefusal = ae.ErrorBody.Error
			}
			if ae.Status != 400 || ae.Field != "netns" || !strings.Contains(ae.ErrorBody.Error, fifo+" is a FIFO") {
				unclear++
			}
		default:
			unanswered++
		}
	}
	c := ctx(t, 30*time.Second)
	reservedLive := -1
	if ps, err := a.API.Pools(c); err == nil && len(ps) == 1 {
		reservedLive = ps[0].Reserved + ps[0].Allocated
	}
	a.Stop()
	_, per, err := storeKeys(a.DB)
	if err != nil {
		t.Fatal(err)
	}
	inFile := per["attachments"]
	r.Did = fmt.Sprintf("answered %d (%d refused, %d granted), %d unanswered", refused+granted, refused, granted, unanswered)
	if firstRefusal != "" {
		r.Did += fmt.Sprintf(": %.120q", firstRefusal)
	}
	r.Numbers = fmt.Sprintf("all answered in %s, slowest allocation %s; status and ipam pools: slowest %s over %d rounds; held or reserved after: %d (API), %d attachments in the file",
		ms(all), ms(slowestAlloc), ms(slowest), asked, reservedLive, inFile)
	if unanswered > 0 || granted > 0 {
		r.Failf("%d allocations unanswered within 15 s, %d granted on a FIFO", unanswered, granted)
	}
	if unclear > 0 {
		r.Failf("%d refusals not a 400 on netns saying %s is a FIFO, the first: %q", unclear, fifo, firstRefusal)
	}
	if slowest >= answerBound || statusErr != nil {
		r.Failf("status or ipam pools slowest %s (want < %s), error %v", ms(slowest), answerBound, statusErr)
	}
	if reservedLive != 0 || inFile != 0 {
		r.Failf("left held or reserved: %d (API), %d attachments in the file", reservedLive, inFile)
	}
	return r
}

// IdleConnections: n connections to the control socket that never send a
// request (once: every request waited behind them, past the CNI plugin's
// 10s), then status and ipam pools: each must be answered within
// answerBound.
func IdleConnections(t testing.TB, e Env, n int) Result {
	t.Helper()
	r := Result{Attack: "idle connections on the control socket",
		Tried: fmt.Sprintf("%d connections that never send a request, held open; then status and ipam pools, 3 times, each bounded by 5 s", n)}
	a := e.start(t, opts{pools: fifoPool})
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dialErr := error(nil)
	for range n {
		c, err := net.DialTimeout("unix", a.Socket, 5*time.Second)
		if err != nil {
			dialErr = err
			break
		}
		conns = append(conns, c)
	}
	var slowest time.Duration
	var firstErr error
	for range 3 {
		took, err := askBoth(a.Socket)
		slowest = max(slowest, took)
		if firstErr == nil {
			firstErr = err
		}
	}
	r.Did = "answered status and ipam pools"
	if firstErr != nil {
		r.Did = fmt.Sprintf("did not answer: %v", firstErr)
		r.Failf("status or ipam pools behind %d idle connections: %v", len(conns), firstErr)
	}
	r.Numbers = fmt.Sprintf("%d connections open (dial error: %v); slowest answer %s", len(conns), dialErr, ms(slowest))
	if slowest >= answerBound {
		r.Failf("an answer took %s behind idle connections (want < %s)", ms(slowest), answerBound)
	}
	return r
}
