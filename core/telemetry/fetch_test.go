package telemetry

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestFetch(t *testing.T) {
	tel := newT(t)
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, tel.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)

	body, err := Fetch(context.Background(), host, port)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Contains(body, []byte("spiderpool_build_info{")) {
		t.Errorf("Fetch body lacks build info:\n%s", body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil || len(problems) != 0 {
		t.Errorf("fetched metrics lint: %v %v", problems, err)
	}
}

func TestFetchNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	_, err = Fetch(context.Background(), "127.0.0.1", port)
	want := "nothing answers on 127.0.0.1:" + strconv.Itoa(port) +
		": metrics may be disabled (set SPIDERPOOL_ENABLED_METRIC=true or metrics { enabled = true })"
	if err == nil || err.Error() != want {
		t.Fatalf("Fetch = %v, want %q", err, want)
	}
	var ns *NotServingError
	if !errors.As(err, &ns) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v is not a NotServingError wrapping ECONNREFUSED", err)
	}
}

func TestFetchBadStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)
	_, err := Fetch(context.Background(), host, port)
	if err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Fatalf("Fetch from a 404 = %v, want an error naming the status", err)
	}
}
