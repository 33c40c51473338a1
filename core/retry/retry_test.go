package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var (
	errAway = errors.New("away")
	errBad  = errors.New("bad input")
)

func transient(err error) bool { return errors.Is(err, errAway) }

// awayThen is an op that fails with errAway until its n-th call, which
// answers last, and the count of its calls.
func awayThen(n int, last error) (func(context.Context) error, *int) {
	calls := 0
	return func(context.Context) error {
		calls++
		if calls < n {
			return errAway
		}
		return last
	}, &calls
}

func TestAgainRepeatsUntilTheFailurePasses(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}
	op, calls := awayThen(3, nil)
	expired, err := b.Again(context.Background(), time.Now().Add(time.Minute), op(nil), transient, op)
	if err != nil || expired || *calls != 3 {
		t.Fatalf("Again = %v, %v after %d calls; want nil after 3", expired, err, *calls)
	}
}

func TestAgainStopsAtAFailureThatDoesNotPass(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: time.Millisecond}
	op, calls := awayThen(2, errBad)
	expired, err := b.Again(context.Background(), time.Now().Add(time.Minute), op(nil), transient, op)
	if !errors.Is(err, errBad) || expired || *calls != 2 {
		t.Fatalf("Again = %v, %v after %d calls; want %v after 2", expired, err, *calls, errBad)
	}
	// A first error that is not transient is returned without a repeat.
	*calls = 0
	if _, err := b.Again(context.Background(), time.Now().Add(time.Minute), errBad, transient, op); !errors.Is(err, errBad) || *calls != 0 {
		t.Fatalf("Again(errBad) = %v after %d calls; want it at once", err, *calls)
	}
}

func TestAgainSaysWhenTheDeadlineStoppedIt(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}
	calls := 0
	op := func(context.Context) error { calls++; return errAway }
	start := time.Now()
	expired, err := b.Again(context.Background(), start.Add(30*time.Millisecond), errAway, transient, op)
	if !expired || !errors.Is(err, errAway) || calls == 0 {
		t.Fatalf("Again = %v, %v after %d calls; want expired with %v", expired, err, calls, errAway)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("gave up after %v, before the deadline", d)
	}
}

func TestAgainStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := Backoff{Min: time.Millisecond, Max: time.Millisecond}
	calls := 0
	op := func(context.Context) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return errAway
	}
	expired, err := b.Again(ctx, time.Now().Add(time.Hour), errAway, transient, op)
	if expired || !errors.Is(err, errAway) || calls != 2 {
		t.Fatalf("Again = %v, %v after %d calls; want not expired after 2", expired, err, calls)
	}
}
