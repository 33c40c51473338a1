// Package gopsagent starts the gops diagnostics agent
// (github.com/google/gops) on 127.0.0.1 for operators who run `gops` on the
// node. It never stops the agent from running: a busy port is a warning.
//
// The gops agent is a process-wide singleton of the gops package; Start it
// once per process.
package gopsagent

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/google/gops/agent"
	"github.com/hashicorp/go-hclog"
)

// Start listens with the gops agent on 127.0.0.1:port and returns the
// function that stops it (safe to call more than once). Port 0 disables the
// agent. When the agent cannot start, most often because the port is busy,
// Start logs a warning naming the port and returns a stop that does
// nothing.
//
// The gops agent's own signal handler is not installed (ShutdownCleanup
// false): the daemon owns SIGINT and SIGTERM and calls stop.
func Start(port int, log hclog.Logger) (stop func()) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	noop := func() {}
	if port == 0 {
		log.Debug("gops agent disabled: no port set")
		return noop
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port < 0 || port > 65535 {
		log.Warn("gops agent not started: port out of range", "port", port)
		return noop
	}
	err := agent.Listen(agent.Options{Addr: addr, ShutdownCleanup: false})
	if err != nil {
		// agent.Listen can fail after it has opened its listener (writing
		// its port file); Close undoes whatever it did.
		if !alreadyListening(err) {
			agent.Close()
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("gops agent not started: port is busy", "port", port, "address", addr, "error", err)
		} else {
			log.Warn("gops agent not started", "port", port, "address", addr, "error", err)
		}
		return noop
	}
	log.Debug("gops agent listening", "address", addr)
	var once sync.Once
	return func() { once.Do(agent.Close) }
}

// alreadyListening reports gops' error for a second Listen in one process:
// the first agent must stay up.
func alreadyListening(err error) bool {
	return strings.HasPrefix(err.Error(), "gops: agent already listening")
}
