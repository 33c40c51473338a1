// Package reclaim hands a process's free memory back to the kernel once a
// burst of work is over.
//
// The Go runtime keeps what a burst allocated: garbage until the next
// collection, which an idle process only runs when its forced two-minute
// GC comes round, and freed heap pages until the background scavenger
// returns them, slowly. A node agent and its plugins are idle most of the
// time and busy in bursts (a pod start, a fleet rollout), so without help
// they sit on a burst's peak for minutes. A Reclaimer watches the work
// (Begin/end around each unit) and, when none has run for a quiet period
// after some did, collects and returns the free memory once
// (debug.FreeOSMemory): one full collection per burst, none while idle.
//
// sdk.Serve uses one around every Check of a detector; the agent
// uses one around checks and IPAM calls. Periodic calls that are not work
// (health, metrics) must not be wrapped: each would end a "burst".
package reclaim

import (
	"runtime/debug"
	"sync"
	"time"
)

// DefaultQuiet is how long no work must have run before memory is
// returned: long enough that a burst's requests, which arrive within
// milliseconds of each other, are one burst, short enough that the
// process is back to its resting size soon after.
const DefaultQuiet = time.Second

// Reclaimer is safe for concurrent use. The zero value is not usable: use
// New.
type Reclaimer struct {
	quiet   time.Duration
	release func()
	after   func(time.Duration, func()) stopper

	mu       sync.Mutex
	inFlight int
	worked   bool    // work ended since the last release
	gen      uint64  // bumped by every Begin and end: a timer of an older gen is stale
	timer    stopper // the armed timer, if any
	stopped  bool
}

// stopper is the part of *time.Timer a Reclaimer uses.
type stopper interface{ Stop() bool }

// New returns a Reclaimer that calls debug.FreeOSMemory after quiet
// without work (DefaultQuiet when quiet <= 0).
func New(quiet time.Duration) *Reclaimer {
	return newReclaimer(quiet, debug.FreeOSMemory, func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) })
}

func newReclaimer(quiet time.Duration, release func(), after func(time.Duration, func()) stopper) *Reclaimer {
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	return &Reclaimer{quiet: quiet, release: release, after: after}
}

// Begin marks the start of a unit of work; call the returned function when
// it ends (exactly once; more calls do nothing). On a nil Reclaimer it does
// nothing.
func (r *Reclaimer) Begin() (end func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	r.inFlight++
	r.gen++
	r.disarm()
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(r.end) }
}

func (r *Reclaimer) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	r.gen++
	r.worked = true
	if r.inFlight > 0 || r.stopped {
		return
	}
	r.disarm()
	gen := r.gen
	r.timer = r.after(r.quiet, func() { r.fire(gen) })
}

// fire releases memory if nothing happened since the timer was armed.
func (r *Reclaimer) fire(gen uint64) {
	r.mu.Lock()
	if r.gen != gen || r.inFlight > 0 || !r.worked || r.stopped {
		r.mu.Unlock()
		return
	}
	r.worked = false
	r.timer = nil
	r.mu.Unlock()
	// Outside the lock: a full collection takes milliseconds, and work that
	// begins meanwhile must not wait for it.
	r.release()
}

func (r *Reclaimer) disarm() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// Stop disarms the Reclaimer: no release happens after it returns, except
// one already running.
func (r *Reclaimer) Stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.disarm()
}
