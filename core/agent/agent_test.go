package agent

import (
	"context"
	"testing"
	"time"
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
