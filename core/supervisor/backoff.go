package supervisor

import (
	"math/rand/v2"
	"time"
)

// RestartPolicy says how a plugin that exits is brought back.
type RestartPolicy struct {
	// InitialBackoff is the wait before the first restart.
	InitialBackoff time.Duration
	// MaxBackoff caps the doubling.
	MaxBackoff time.Duration
	// Jitter is the fraction (0..1) by which a wait is randomly shortened, so
	// that plugins that died together do not restart in lock step.
	Jitter float64
	// StableAfter is how long a run must last for the backoff and the budget
	// to start over.
	StableAfter time.Duration
	// Budget is how many restarts in a row, without a stable run between
	// them, are allowed before the plugin is disabled.
	Budget int
}

// Defaults of RestartPolicy.
const (
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultJitter         = 0.2
	DefaultStableAfter    = time.Minute
	DefaultBudget         = 10
)

// DefaultRestartPolicy is what the agent uses unless configured otherwise.
var DefaultRestartPolicy = RestartPolicy{
	InitialBackoff: DefaultInitialBackoff,
	MaxBackoff:     DefaultMaxBackoff,
	Jitter:         DefaultJitter,
	StableAfter:    DefaultStableAfter,
	Budget:         DefaultBudget,
}

// backoff tracks one plugin's restarts. It is not safe for concurrent use;
// each plugin's run loop owns its own.
type backoff struct {
	policy  RestartPolicy
	attempt int // restarts since the last stable run
	rand    func() float64
}

func newBackoff(p RestartPolicy) *backoff {
	return &backoff{policy: p, rand: rand.Float64}
}

// next is called when a run ended after lasting ranFor. It returns how long
// to wait before the next start, or ok=false when the budget is spent.
func (b *backoff) next(ranFor time.Duration) (wait time.Duration, ok bool) {
	if ranFor >= b.policy.StableAfter {
		b.attempt = 0
	}
	if b.attempt >= b.policy.Budget {
		return 0, false
	}
	wait = b.policy.InitialBackoff
	for i := 0; i < b.attempt && wait < b.policy.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, b.policy.MaxBackoff)
	if b.policy.Jitter > 0 {
		wait -= time.Duration(float64(wait) * b.policy.Jitter * b.rand())
	}
	b.attempt++
	return wait, true
}
