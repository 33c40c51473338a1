// Package e2e runs the real spiderpool-agent binary with its real plugin
// processes, each agent in a network namespace of its own, and checks what
// an operator sees: health endpoints, metrics, the CLI, signals, reloads
// and what survives plugin and agent deaths.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

var bins agenttest.Binaries

func TestMain(m *testing.M) {
	netlab.Sweep()
	var err error
	bins, err = agenttest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	agenttest.Cleanup()
	os.Exit(code)
}
