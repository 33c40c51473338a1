// Package gopsagent starts the gops diagnostics agent
// (github.com/google/gops) on 127.0.0.1 for operators who run `gops` on the
// node. It never stops the agent from running: a busy port is a warning.
//
// gops has no authentication: any local user who can connect to
// 127.0.0.1 can read stacks and profiles and change the daemon's GC
// settings (`gops setgc ... -1` from nobody grew a root
// daemon from 22 MB to 617 MB). Start therefore warns whenever it listens;
// the packaged configuration leaves it off and `spiderpool-agent debug
// pprof` serves the profiles over the root-only control socket instead.
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

// Start listens with the gops agent on 127.0.0.1:port and returns its
// address and the function that stops it (safe to call more than once).
// Port 0 disables the agent. When it listens, Start logs a warning that any
// local user can reach it. When the agent cannot start, most often because
// the port is busy, Start logs a warning naming the port and returns "" and
// a stop that does nothing.
//
// The gops agent's own signal handler is not installed (ShutdownCleanup
// false): the daemon owns SIGINT and SIGTERM and calls stop.
func Start(port int, log hclog.Logger) (addr string, stop func()) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	noop := func() {}
	if port == 0 {
		log.Debug("gops agent disabled: no port set")
		return "", noop
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port < 0 || port > 65535 {
		log.Warn("gops agent not started: port out of range", "port", port)
		return "", noop
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
		return "", noop
	}
	log.Warn("gops agent listening: any local user can read this root daemon's stacks and profiles and change its GC through it; "+
		"set gops_port = 0 (SPIDERPOOL_GOPS_LISTEN_PORT=\"\") to turn it off and use `spiderpool-agent debug pprof` instead",
		"address", addr)
	var once sync.Once
	return addr, func() { once.Do(agent.Close) }
}

// alreadyListening reports gops' error for a second Listen in one process:
// the first agent must stay up.
func alreadyListening(err error) bool {
	return strings.HasPrefix(err.Error(), "gops: agent already listening")
}
