package httpserve

import (
	"context"
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

func TestServeStopsCleanly(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}))
	}()

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
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			if r.Context().Err() != nil {
				http.Error(w, "request context cancelled", 500)
				return
			}
			io.WriteString(w, "finished")
		}))
	}()

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
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done() // only a forced close ends this request
		}), WithGrace(20*time.Millisecond))
	}()
	go get(ln.Addr().String())
	<-entered
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "requests still running after 20ms") {
		t.Fatalf("Serve = %v, want a grace error", err)
	}
}

func TestServeListenerClosedUnderIt(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, http.NotFoundHandler())
	if err == nil || !strings.Contains(err.Error(), "serve HTTP on") {
		t.Fatalf("Serve on a closed listener = %v, want an error", err)
	}
}

func TestListenBusy(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Fatalf("Listen on a busy port = %v, want an error naming the address", err)
	}
}
