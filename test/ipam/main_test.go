// Package ipam runs the agent's IPAM end to end: the real agent binary with
// its real plugins, pools from --ipam-config-dir, the real bbolt file, and
// workloads as network namespaces on a netlab LAN where other hosts'
// kernels own "busy" addresses and play the gateway.
package ipam

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
