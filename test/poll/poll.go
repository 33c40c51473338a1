// Package poll is the one poll-until-deadline helper of the repository's
// tests: for state that another process or the kernel reaches on its own
// (a plugin restarted, a log line written, a neighbour entry), never for
// synchronising goroutines of the test itself.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until asks: short against the bounds, long enough
// not to burn a loaded 2-core machine.
const Interval = 5 * time.Millisecond

// Until asks cond every Interval until it holds, and fails the test when
// timeout passes first or cond returns an error. what names the awaited
// state in the failure.
func Until(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(Interval) // a polling interval, not synchronisation
	}
}

// Bool adapts a condition that cannot fail.
func Bool(cond func() bool) func() (bool, error) {
	return func() (bool, error) { return cond(), nil }
}
