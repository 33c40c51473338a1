package httpserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// listenLoopback opens a listener on a free loopback port, or fails the test.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveInBackground runs Serve on ln in a goroutine: cancel stops it, and
// done receives what Serve returned.
func serveInBackground(ln net.Listener, h http.Handler, opts ...Option) (cancel context.CancelFunc, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- Serve(ctx, ln, h, opts...) }()
	return cancel, ch
}

func TestServeStopsCleanly(t *testing.T) {
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	cancel, done := serveInBackground(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))

	code, body, err := get(addr)
	if err != nil || code != 200 || body != "hello" {
		t.Fatalf("GET = %d %q %v, want 200 hello", code, body, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("listener still accepts after Serve returned")
	}
}

func TestServeFinishesInFlight(t *testing.T) {
	ln := listenLoopback(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	cancel, done := serveInBackground(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if r.Context().Err() != nil {
			http.Error(w, "request context cancelled", 500)
			return
		}
		io.WriteString(w, "finished")
	}))

	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		c, b, err := get(ln.Addr().String())
		got <- result{c, b, err}
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v while a request was in flight", err)
	default:
	}
	close(release)
	r := <-got
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request = %d %q %v, want 200 finished", r.code, r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
}

func TestServeGraceExceeded(t *testing.T) {
	ln := listenLoopback(t)
	entered := make(chan struct{})
	cancel, done := serveInBackground(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // only a forced close ends this request
	}), WithGrace(20*time.Millisecond))
	go get(ln.Addr().String())
	<-entered
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "requests still running after 20ms") {
		t.Fatalf("Serve = %v, want a grace error", err)
	}
}

func TestServeListenerClosedUnderIt(t *testing.T) {
	ln := listenLoopback(t)
	ln.Close()
	err := Serve(context.Background(), ln, http.NotFoundHandler())
	if err == nil || !strings.Contains(err.Error(), "serve HTTP on") {
		t.Fatalf("Serve on a closed listener = %v, want an error", err)
	}
}

func TestListenBusy(t *testing.T) {
	ln := listenLoopback(t)
	defer ln.Close()
	_, err := Listen(ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Fatalf("Listen on a busy port = %v, want an error naming the address", err)
	}
}

// serveLimited serves h on a fresh loopback listener with lim until the
// test ends, and returns the address.
func serveLimited(t *testing.T, h http.Handler, lim Limits) string {
	t.Helper()
	return serveOn(t, listenLoopback(t), h, lim)
}

// serveOn is serveLimited on ln.
func serveOn(t *testing.T, ln net.Listener, h http.Handler, lim Limits) string {
	t.Helper()
	cancel, done := serveInBackground(ln, h, WithLimits(lim), WithGrace(time.Second))
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

// dialSilent opens n connections to addr that send nothing, closed when
// the test ends.
func dialSilent(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// closedWithin reports whether the server closes c (read returns an error)
// within d; whatever the server sent before closing is discarded.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// A slowloris client (headers never finished) and a client that sends
// headers and then a body that never ends are both cut after the timeouts,
// not held for ever.
func TestSlowClientsAreCut(t *testing.T) {
	addr := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}), Limits{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond})

	slowloris, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slowloris.Close()
	io.WriteString(slowloris, "GET / HTTP/1.1\r\nHost: x\r\nX-a: ")

	slowBody, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slowBody.Close()
	io.WriteString(slowBody, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")

	// Generous bound for a loaded machine: the point is "cut", not "fast".
	for name, c := range map[string]net.Conn{"slow headers": slowloris, "slow body": slowBody} {
		if !closedWithin(c, 20*time.Second) {
			t.Errorf("%s: connection still open 20s after a 300ms/600ms limit", name)
		}
	}
}

// A client that asks for a large answer and never reads it is cut at the
// write timeout; the handler does not stay blocked for ever.
func TestNeverReadingClientIsCut(t *testing.T) {
	handlerDone := make(chan error, 1)
	addr := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		var err error
		for i := 0; i < 1<<14 && err == nil; i++ { // up to 1 GiB
			_, err = w.Write(chunk)
		}
		handlerDone <- err
	}), Limits{Write: 500 * time.Millisecond})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if uc, ok := c.(*net.TCPConn); ok {
		uc.SetReadBuffer(4096)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("the handler wrote 1 GiB to a client that never reads")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler is still blocked writing 20s after a 500ms write timeout")
	}
}

// No more than MaxConns connections are open at once, and idle clients
// cannot keep a request out: a new connection closes the oldest silent
// one. When every slot has a request in progress, a new connection is
// answered 503 with the busy body once busyWait has passed. The listener
// is a plain one, as the control socket's is: Listen's keeps silent
// connections in the kernel (TestSilentConnectionsWaitInTheKernel).
func TestConnectionLimit(t *testing.T) {
	const limit = 4
	release := make(chan struct{})
	arrived := make(chan struct{}, limit)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}), Limits{MaxConns: limit, ReadHeader: time.Minute, Read: time.Minute, Idle: time.Minute})

	// Many more idle connections than slots (headers never sent).
	idle := dialSilent(t, addr, 10*limit)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a request behind %d idle connections: %v", len(idle), err)
	}
	resp.Body.Close()
	t.Logf("a request behind %d idle connections answered in %v", len(idle), time.Since(start))
	// The oldest idle ones were closed to make room.
	if !closedWithin(idle[0], 20*time.Second) {
		t.Error("the oldest idle connection is still open")
	}

	// Every slot busy with a request in progress: the next is refused.
	// One at a time, so that none is still new (and may be closed for
	// the next) when the next connects.
	// A request just answered may hold its slot a moment longer (the
	// server closes its connection after the answer): a held request
	// answered busy then is asked again.
	held := make(chan error, limit)
	for i, tries := 0, 0; i < limit; {
		go func() {
			resp, err := client.Get("http://" + addr + "/hold")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					err = errBusy
				}
			}
			held <- err
		}()
		select {
		case <-arrived:
			i++
		case err := <-held:
			if tries++; !errors.Is(err, errBusy) || tries > 100 {
				t.Fatalf("held request %d: %v", i, err)
			}
		}
	}
	resp, err = client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "try again") {
		t.Errorf("a request with every slot busy: %d %s, want 503 saying try again", resp.StatusCode, body)
	}
	close(release)
	for i := 0; i < limit; i++ {
		if err := <-held; err != nil {
			t.Errorf("a held request: %v", err)
		}
	}
}

var errBusy = errors.New("answered busy")

// Listen's connections that send nothing never reach the server: a
// request behind ten times the limit of them is answered at once, and none
// of them was taken in (none is closed to make room).
func TestSilentConnectionsWaitInTheKernel(t *testing.T) {
	const limit = 4
	addr := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), Limits{MaxConns: limit, ReadHeader: 500 * time.Millisecond})
	silent := dialSilent(t, addr, 10*limit)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 2 * limit {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("a request behind %d silent connections: %v", len(silent), err)
		}
		resp.Body.Close()
	}
	// The header timeout would have cut one taken in within 0.5 s; the
	// kernel holds them for deferAccept (5 s).
	if closedWithin(silent[0], 3*time.Second) {
		t.Error("a silent connection was taken in and closed")
	}
}

// A burst of clients far beyond MaxConns, each sending its request at
// once, is served whole: the newest do not close the slightly older ones
// that have not been read yet. (Connections still new were closed to make
// room: 56 of 2000 liveness probes at once got a reset.)
func TestBurstBeyondTheLimitIsServed(t *testing.T) {
	const limit, clients = 8, 400
	addr := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), Limits{MaxConns: limit})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := make(chan struct{})
	errs := make(chan error, clients)
	for range clients {
		go func() {
			<-start
			resp, err := client.Get("http://" + addr + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("answered %s", resp.Status)
				}
			}
			errs <- err
		}()
	}
	close(start)
	failed, first := 0, error(nil)
	for range clients {
		if err := <-errs; err != nil {
			if failed++; first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d clients at once on %d slots: %d failed, the first with %v", clients, limit, failed, first)
	}
}

type failingWriter struct {
	http.ResponseWriter
	writes int
}

func (f *failingWriter) Header() http.Header { return http.Header{} }
func (f *failingWriter) WriteHeader(int)     {}
func (f *failingWriter) Write(p []byte) (int, error) {
	f.writes++
	return 0, errors.New("write: broken pipe")
}

// A handler that keeps writing to a client that went away (promhttp logs
// each failed metric family at WARN) sees no error; gone hears of it once.
func TestQuietWhenGone(t *testing.T) {
	var handlerErrs int
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 8 {
			if _, err := io.WriteString(w, "family\n"); err != nil {
				handlerErrs++
			}
		}
	})
	var gone []error
	fw := &failingWriter{}
	QuietWhenGone(h, func(_ *http.Request, err error) { gone = append(gone, err) }).ServeHTTP(fw, httptestRequest())
	if handlerErrs != 0 || len(gone) != 1 || fw.writes != 1 {
		t.Fatalf("handler saw %d errors, gone called %d times, %d writes reached the client; want 0, 1, 1", handlerErrs, len(gone), fw.writes)
	}
}

func httptestRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
	return r
}
