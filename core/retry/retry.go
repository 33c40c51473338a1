// Package retry repeats an idempotent call while its failure is one that
// passes (a peer restarting, an election), with a capped doubling pause. It
// imports only the standard library, so that the CNI plugin can link it.
package retry

import (
	"context"
	"time"
)

// Backoff is the pause between two attempts: Min before the second,
// doubling up to Max.
type Backoff struct {
	Min, Max time.Duration
}

// Again runs op again after an attempt that failed with err, for as long
// as transient(err) says the failure may pass: it pauses, runs op, and
// stops at the first error that is nil or not transient, when deadline has
// passed, or when ctx ends. It returns the last error, and expired when
// the deadline was what stopped it (the caller may then say how long it
// waited). op must be safe to repeat.
func (b Backoff) Again(ctx context.Context, deadline time.Time, err error, transient func(error) bool, op func(context.Context) error) (expired bool, last error) {
	pause := b.Min
	for err != nil && transient(err) {
		left := time.Until(deadline)
		if left <= 0 {
			return true, err
		}
		if ctx.Err() != nil {
			return false, err
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, err
		case <-t.C:
		}
		pause = min(2*pause, b.Max)
		err = op(ctx)
	}
	return false, err
}
