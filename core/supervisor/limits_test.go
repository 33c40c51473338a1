package supervisor

import (
	"testing"
	"time"
)

// TestLogLimiter: a burst passes, then the rate; drops are counted and
// summarised at most every summaryEvery, so that summaries do not double a
// steady flood.
func TestLogLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	drops := 0
	b := newLogLimiter(Limits{LogLinesPerSecond: 10, LogBurst: 5}, func(n int) { drops += n })
	b.now = func() time.Time { return now }
	passed, summaries, summarised := 0, 0, 0
	// 100 lines a second for 20 s.
	for range 2000 {
		ok, dropped := b.allow()
		if ok {
			passed++
		}
		if dropped > 0 {
			summaries++
			summarised += dropped
		}
		now = now.Add(10 * time.Millisecond)
	}
	if want := 5 + 10*20; passed < want-2 || passed > want {
		t.Errorf("%d lines passed in 20 s at 10/s with a burst of 5, want about %d", passed, want)
	}
	if drops != 2000-passed {
		t.Errorf("%d drops counted, want %d", drops, 2000-passed)
	}
	if summaries < 3 || summaries > 5 {
		t.Errorf("%d summaries in 20 s, want one every %v (4 or so)", summaries, summaryEvery)
	}
	if summarised > drops {
		t.Errorf("summaries claim %d drops, only %d happened", summarised, drops)
	}
}
