package gopsagent

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

func logger(buf *agenttest.SyncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestDisabled(t *testing.T) {
	var buf agenttest.SyncBuffer
	addr, stop := Start(0, logger(&buf))
	stop()
	if addr != "" {
		t.Errorf("Start(0) address = %q, want empty", addr)
	}
	if !strings.Contains(buf.String(), "[DEBUG]") || !strings.Contains(buf.String(), "gops agent disabled") {
		t.Errorf("port 0 should log at debug that gops is disabled, got:\n%s", buf.String())
	}
}

func TestOutOfRange(t *testing.T) {
	var buf agenttest.SyncBuffer
	_, stop := Start(70000, logger(&buf))
	stop()
	if !strings.Contains(buf.String(), "[WARN]") || !strings.Contains(buf.String(), "port=70000") {
		t.Errorf("an invalid port should warn naming it, got:\n%s", buf.String())
	}
}

func TestBusyPortWarns(t *testing.T) {
	t.Setenv("GOPS_CONFIG_DIR", t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	var buf agenttest.SyncBuffer
	_, stop := Start(port, logger(&buf)) // must not panic or exit
	stop()
	stop()
	out := buf.String()
	if !strings.Contains(out, "[WARN]") || !strings.Contains(out, "port is busy") || !strings.Contains(out, "port="+strconv.Itoa(port)) {
		t.Errorf("a busy port should warn naming the port, got:\n%s", out)
	}

	// The failed start left nothing behind: the agent can start elsewhere.
	free := freePort(t)
	_, stop = Start(free, logger(&buf))
	defer stop()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(free)))
	if err != nil {
		t.Fatalf("gops agent on a free port after a busy one: %v", err)
	}
	conn.Close()
}

func TestFreePortAcceptsAndStops(t *testing.T) {
	t.Setenv("GOPS_CONFIG_DIR", t.TempDir())
	port := freePort(t)
	var buf agenttest.SyncBuffer
	got, stop := Start(port, logger(&buf))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if got != addr {
		t.Errorf("Start address = %q, want %q", got, addr)
	}
	// The gops agent has no authentication, so listening is a
	// warning that says who can reach it.
	if out := buf.String(); !strings.Contains(out, "[WARN]") || !strings.Contains(out, "any local user") {
		t.Errorf("a listening gops agent must warn that any local user can reach it, got:\n%s", out)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		stop()
		t.Fatalf("gops agent does not accept on %s: %v\n%s", addr, err, buf.String())
	}
	conn.Close()

	// A second Start in the same process warns and leaves the first running.
	second, stop2 := Start(freePort(t), logger(&buf))
	stop2()
	if second != "" {
		t.Errorf("a second Start returned address %q, want empty", second)
	}
	if !strings.Contains(buf.String(), "already listening") {
		t.Errorf("a second Start should warn that gops already listens, got:\n%s", buf.String())
	}
	if conn, err := net.Dial("tcp", addr); err != nil {
		t.Errorf("the first agent stopped after a second Start: %v", err)
	} else {
		conn.Close()
	}

	stop()
	stop() // idempotent
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Errorf("gops agent still accepts on %s after stop", addr)
	}
}
