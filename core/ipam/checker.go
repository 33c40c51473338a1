package ipam

import (
	"context"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Checker vets candidate addresses on the wire before they are given out.
// IPAM owns this interface; the daemon adapts its check orchestration (the
// same one that answers POST /v1/check) to it.
type Checker interface {
	// Check vets every address of req at once (one reply window for all)
	// and returns one result per address, in order. An address is vetted
	// for conflicts when its Conflict is set, its gateway when it has one. An error means no
	// answer at all; an address that could not be decided is OutcomeError.
	Check(ctx context.Context, req api.Check) ([]CheckResult, error)
}

// Outcome is a Checker's answer for one address: what the detectors'
// blocks mean for the allocation (the kind each block carries), never who
// blocked.
type Outcome string

const (
	// OutcomeFree: every check asked for passed.
	OutcomeFree Outcome = "free"
	// OutcomeConflict: a detector says someone holds the address (a block
	// of kind in_use): it is quarantined and another candidate tried.
	OutcomeConflict Outcome = "conflict"
	// OutcomePolicy: a detector refuses this address by policy (a block of
	// kind policy): it is skipped without quarantine and another candidate
	// tried.
	OutcomePolicy Outcome = "policy"
	// OutcomeUnreachable: a detector says the pool's network is unusable
	// now (a block of kind unreachable: the gateway did not answer); no
	// address of the pool will do.
	OutcomeUnreachable Outcome = "unreachable"
	// OutcomeBlocked: a detector refused the allocation (a block of kind
	// fail, or of no kind); no other candidate is tried.
	OutcomeBlocked Outcome = "blocked"
	// OutcomeError: a detector could not decide; never a pass.
	OutcomeError Outcome = "error"
)

// CheckResult is the answer for one address, with the detectors' reasons
// ("10.20.0.57 is in use by 02:00:00:00:00:10 on eth0").
type CheckResult struct {
	Outcome Outcome
	Reason  string
	// MAC is the hardware address that answered for a conflicting
	// address, when the detector said; the quarantine records it.
	MAC string
}

// Metrics receives what IPAM does. Implementations must not block.
type Metrics interface {
	// Allocation is one Allocate for pool: result "ok" or an core/api code.
	Allocation(pool, result string, seconds float64)
	// Release is one address released: result "ok" or "error".
	Release(pool, result string)
	ConflictSkipped(pool string)
	Quarantined(pool string)
	RetrySpent(pool string)
	GCReclaimed(pool string)
	// PoolUsage reports a pool's size and state counts.
	PoolUsage(pool string, size, allocated, reserved, quarantined int)
	// Workloads reports the workload records a GC pass counted: named by
	// an allocation, and kept for the retention.
	Workloads(live, retained int)
	// WorkloadsPruned is what one GC pass pruned.
	WorkloadsPruned(workloads, records int)
}

type nopMetrics struct{}

func (nopMetrics) Allocation(string, string, float64)   {}
func (nopMetrics) Release(string, string)               {}
func (nopMetrics) ConflictSkipped(string)               {}
func (nopMetrics) Quarantined(string)                   {}
func (nopMetrics) RetrySpent(string)                    {}
func (nopMetrics) GCReclaimed(string)                   {}
func (nopMetrics) Workloads(int, int)                   {}
func (nopMetrics) WorkloadsPruned(int, int)             {}
func (nopMetrics) PoolUsage(string, int, int, int, int) {}
