package agent

import (
	"context"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Status must answer while a reload holds cfgMu (a reload waits for its
// plugins' dry runs, up to shutdown_timeout): the main loop, the liveness
// self-probe, readiness and `status` all read it.
func TestStatusDoesNotWaitForAReload(t *testing.T) {
	a := &Agent{startedAt: time.Now()}
	loadedAt := time.Now()
	a.loaded.Store(&configLoad{generation: 7, at: loadedAt})
	a.cfgMu.Lock() // a reload in progress
	defer a.cfgMu.Unlock()
	done := make(chan struct{})
	var gen uint64
	var at time.Time
	go func() {
		defer close(done)
		st := a.Status(context.Background())
		gen, at = st.ConfigGeneration, st.ConfigLoadedAt
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Status is blocked behind the reload's lock")
	}
	if gen != 7 || !at.Equal(loadedAt) {
		t.Errorf("Status says generation %d loaded at %v, want 7 at %v", gen, at, loadedAt)
	}
}

// An in-use block carries the MAC its detector saw answer, for the
// quarantine record.
func TestOutcomeCarriesTheRespondersMAC(t *testing.T) {
	res := api.AddressResult{Detectors: []api.DetectorResult{
		{Name: config.PluginGatewayDetector, Verdict: api.VerdictPass, Evidence: map[string]string{sdk.EvidenceResponderMAC: "02:00:00:00:00:fe"}},
		{Name: config.PluginIPConflict, Verdict: api.VerdictBlock, BlockKind: api.BlockInUse, Reason: "10.0.0.9 is in use by 02:00:00:00:00:10 on eth0",
			Evidence: map[string]string{sdk.EvidenceResponderMAC: "02:00:00:00:00:10"}},
	}}
	got := outcome(res)
	if got.Outcome != ipam.OutcomeConflict || got.MAC != "02:00:00:00:00:10" {
		t.Errorf("outcome = %+v, want a conflict with MAC 02:00:00:00:00:10 (not the gateway's)", got)
	}
}
