package supervisor

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := RestartPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, StableAfter: time.Second, Budget: 5}
	tests := []struct {
		name   string
		jitter float64
		rand   float64
		runs   []time.Duration
		want   []time.Duration // -1: budget spent
	}{
		{"doubles up to the cap", 0, 0, []time.Duration{0, 0, 0, 0, 0}, []time.Duration{100, 200, 400, 500, 500}},
		{"budget spent", 0, 0, []time.Duration{0, 0, 0, 0, 0, 0}, []time.Duration{100, 200, 400, 500, 500, -1}},
		{"a stable run starts over", 0, 0, []time.Duration{0, 0, 2 * time.Second, 0}, []time.Duration{100, 200, 100, 200}},
		{"a stable run refills the budget", 0, 0, []time.Duration{0, 0, 0, 0, 0, time.Second}, []time.Duration{100, 200, 400, 500, 500, 100}},
		{"jitter shortens", 0.5, 1, []time.Duration{0, 0}, []time.Duration{50, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := p
			pp.Jitter = tt.jitter
			b := newBackoff(pp)
			b.rand = func() float64 { return tt.rand }
			for i, ran := range tt.runs {
				wait, ok := b.next(ran)
				want := tt.want[i]
				if want < 0 {
					if ok {
						t.Fatalf("restart %d: got a wait of %v, want the budget spent", i, wait)
					}
					continue
				}
				if !ok || wait != want*time.Millisecond {
					t.Fatalf("restart %d: got %v (ok=%v), want %v", i, wait, ok, want*time.Millisecond)
				}
			}
		})
	}
}
