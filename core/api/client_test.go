package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api/apitest"
)

// TestClientAgainstNetHTTP: the HTTP/1.0 client against net/http's server:
// a GET with a query, a POST with a JSON body, an answer longer than the
// server's 2 KiB buffer (so sent without Content-Length, ended by closing
// the connection), a flushed answer (also without Content-Length), and the
// error answers the package classifies (404 -> Get's ok=false, 503 ->
// TryAgain, a JSON error body -> APIError fields).
func TestClientAgainstNetHTTP(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string // method, URI, proto, Content-Type, body of each request
	)
	big := make([]PoolUsage, 400) // ~30 KB of JSON
	for i := range big {
		big[i] = PoolUsage{Name: strings.Repeat("p", 40)}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AllocationPath, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI+" "+r.Proto)
		mu.Unlock()
		if r.URL.Query().Get("container_id") == "gone" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(ErrorBody{Error: "no allocation", Code: CodeNotFound})
			return
		}
		_ = json.NewEncoder(w).Encode(Attachment{AttachmentKey: AttachmentKey{
			ContainerID: r.URL.Query().Get("container_id"), Interface: r.URL.Query().Get("interface")}})
	})
	mux.HandleFunc("POST "+ReleasePath, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI+" "+r.Proto+" "+r.Header.Get("Content-Type")+" "+string(b))
		mu.Unlock()
		var req ReleaseRequest
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(ReleaseResponse{Released: []Attachment{{AttachmentKey: AttachmentKey{ContainerID: req.ContainerID, Interface: req.Interface}}}})
	})
	mux.HandleFunc("GET "+PoolsPath, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(big)
	})
	mux.HandleFunc("GET "+AllocationsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("["))
		w.(http.Flusher).Flush() // the header goes out now, without a length
		w.Write([]byte("]"))
	})
	mux.HandleFunc("POST "+GCPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(ErrorBody{Error: "the store is not ready", Code: CodeNotReady})
	})
	mux.HandleFunc("POST "+AllocatePath, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "plain text, not JSON", http.StatusServiceUnavailable)
	})
	c := &Client{SocketPath: apitest.Serve(t, mux)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	key := AttachmentKey{ContainerID: "c 1&x=y", Interface: "eth0"}
	att, ok, err := c.Get(ctx, key)
	if err != nil || !ok || att.AttachmentKey != key {
		t.Fatalf("Get = %+v %v %v, want the key %+v back", att, ok, err, key)
	}
	if _, ok, err := c.Get(ctx, AttachmentKey{ContainerID: "gone", Interface: "eth0"}); ok || err != nil {
		t.Errorf("Get of a missing allocation (404) = %v, %v; want false, nil", ok, err)
	}
	rel, err := c.Release(ctx, ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface})
	if err != nil || len(rel.Released) != 1 || rel.Released[0].AttachmentKey != key {
		t.Errorf("Release = %+v, %v", rel, err)
	}
	pools, err := c.Pools(ctx)
	if err != nil || len(pools) != len(big) {
		t.Errorf("Pools (an answer of ~30 KB, ended by EOF) = %d pools, %v", len(pools), err)
	}
	list, err := c.List(ctx, "", "")
	if err != nil || list == nil || len(list) != 0 {
		t.Errorf("List (a flushed answer) = %#v, %v", list, err)
	}
	_, err = c.GC(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != CodeNotReady || ae.ErrorBody.Error != "the store is not ready" || !ae.TryAgain() {
		t.Errorf("GC answered 503 with a JSON error: %#v", err)
	}
	_, err = c.Allocate(ctx, AllocateRequest{})
	if !errors.As(err, &ae) || ae.Status != 503 || !ae.TryAgain() || ae.ErrorBody.Error != "spiderpool-agent answered 503: plain text, not JSON" {
		t.Errorf("Allocate answered 503 in plain text: %#v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"GET /v1/ipam/allocation?container_id=c+1%26x%3Dy&interface=eth0 HTTP/1.0",
		"GET /v1/ipam/allocation?container_id=gone&interface=eth0 HTTP/1.0",
		`POST /v1/ipam/release HTTP/1.0 application/json {"container_id":"c 1\u0026x=y","interface":"eth0"}`,
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("the server saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// rawServer accepts connections on a unix socket in a fresh root-owned
// directory and hands each to handle.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return sock
}

// TestClientPeerThatNeverAnswers: the context's deadline ends the wait on a
// peer that reads the request and says nothing, and a cancellation without
// a deadline does too; both errors wrap the context's error (the CNI
// plugin maps that to "try again later").
func TestClientPeerThatNeverAnswers(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	c := &Client{SocketPath: rawServer(t, func(conn net.Conn) {
		_, _ = conn.Read(make([]byte, 4096))
		select {
		case <-hold:
		case <-time.After(time.Minute):
		}
	})}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Pools(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Pools with a 300 ms deadline on a silent peer: %v, want context.DeadlineExceeded", err)
	}
	// Bound with room for a loaded 2-core machine; the peer holds for a minute.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the call returned after %v", d)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Pools(ctx2); errc <- err }()
	time.AfterFunc(100*time.Millisecond, cancel2)
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Pools cancelled: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a cancelled call without a deadline did not return")
	}
}

// TestClientMalformedAnswer: a peer that answers something that is not an
// HTTP answer gets an error naming the call, the socket and what is wrong.
func TestClientMalformedAnswer(t *testing.T) {
	for _, c := range []struct{ answer, want string }{
		{"hello\r\n\r\n", `malformed status line "hello"`},
		{"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n", "Transfer-Encoding"},
		{"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n[]", "body ended after 2 of 100 bytes"},
		{"", "connection closed before an answer"},
	} {
		sock := rawServer(t, func(conn net.Conn) {
			_, _ = conn.Read(make([]byte, 4096))
			_, _ = io.WriteString(conn, c.answer)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := (&Client{SocketPath: sock}).Pools(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "GET /v1/ipam/pools") ||
			!strings.Contains(err.Error(), sock) {
			t.Errorf("answer %q: %v, want an error naming the call, %s and %q", c.answer, err, sock, c.want)
		}
	}
}

// TestClientNotRunning: no socket file, and a socket file nobody listens
// on (an agent that died), are NotRunningError; a socket the caller may
// not open is the permission error.
func TestClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nr *NotRunningError
	missing := filepath.Join(dir, "missing.sock")
	if _, err := (&Client{SocketPath: missing}).Pools(ctx); !errors.As(err, &nr) || nr.Path != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no socket: %v", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := (&Client{SocketPath: stale}).Pools(ctx); !errors.As(err, &nr) || nr.Path != stale {
		t.Errorf("a stale socket: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A regular file on the path is not an agent either (ECONNREFUSED).
	if _, err := (&Client{SocketPath: filepath.Join(dir, "file")}).Pools(ctx); !errors.As(err, &nr) {
		t.Errorf("a regular file: %v", err)
	}
}

// The zero Client calls the one default socket, where the daemon listens
// unless configured otherwise.
func TestZeroClientUsesDefaultSocket(t *testing.T) {
	if got := (&Client{}).path(); got != DefaultSocketPath {
		t.Errorf("the zero Client calls %s, not %s", got, DefaultSocketPath)
	}
}
