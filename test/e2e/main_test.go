// Package e2e runs the real spiderpool-agent binary with its real plugin
// processes, each agent in a network namespace of its own, and checks what
// an operator sees: health endpoints, metrics, the CLI, signals, reloads
// and what survives plugin and agent deaths.
package e2e

import (
	"os"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

var bins agenttest.Binaries

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, &bins)) }
