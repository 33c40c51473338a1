package e2e

import (
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/burst"
)

// The burst load through the real agent: bursts of parallel 256-address
// requests on a LAN where one neighbour owns the busy addresses and is every
// other address's gateway. Under load the detectors may answer error
// (overload is not a verdict), but never pass a busy address and never
// block an address whose gateway answers. The full size (15 x 256, and 4x
// that, 100 runs) is make faults' "burst" row; this is the same shape small
// enough for make test.
func TestBurstNeverPassesABusyAddress(t *testing.T) {
	lan := burst.NewLAN(t)
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(agenttest.ReadyTimeout)
	c := &control.Client{SocketPath: a.Socket}
	var total burst.Tally
	for round := 0; round < 3; round++ {
		var reqs []burst.Request
		for i := 0; i < 8; i++ {
			reqs = append(reqs, burst.NewRequest(lan, round*8+i, 256))
		}
		tl := burst.Run(c.Check, reqs, 30*time.Second)
		t.Logf("round %d: %s", round, tl)
		total.Add(tl)
	}
	t.Logf("total: %s", total)
	if total.Wrong() != 0 {
		t.Fatalf("wrong verdicts under a burst: %s", total)
	}
	// Errors are allowed under overload (how many depends on how busy the
	// machine is: make faults counts them), but the test must have
	// exercised detection: some busy addresses found, some gateways seen.
	if total.BusyBlocked == 0 || total.Right <= total.BusyBlocked {
		t.Fatalf("the burst decided nothing useful: %s", total)
	}
}
