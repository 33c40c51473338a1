// Package apitest serves stand-ins for the agent's control socket in the
// tests of its clients (core/api's own client, the CNI plugin).
package apitest

import (
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// Serve serves h with Go's own net/http server (what the agent's control
// socket runs) on a unix socket in a fresh directory until the test ends,
// and returns the socket's path. The server runs as the test process, so a
// client's peer check believes it when the test runs as root.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return sock
}
