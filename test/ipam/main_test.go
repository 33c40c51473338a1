// Package ipam runs the agent's IPAM end to end: the real agent binary with
// its real plugins, pools from --ipam-config-dir, the real bbolt file, and
// workloads as network namespaces on a netlab LAN where other hosts'
// kernels own "busy" addresses and play the gateway.
package ipam

import (
	"os"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

var bins agenttest.Binaries

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, &bins)) }
