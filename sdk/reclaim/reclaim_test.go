package reclaim

import (
	"reflect"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// fakeTimers hands out timers that fire only when the test says so.
type fakeTimers struct {
	mu     sync.Mutex
	armed  []*fakeTimer
	quiets []time.Duration
}

type fakeTimer struct {
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { was := !t.stopped; t.stopped = true; return was }

func (ft *fakeTimers) after(d time.Duration, f func()) stopper {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{f: f}
	ft.armed = append(ft.armed, t)
	ft.quiets = append(ft.quiets, d)
	return t
}

// fireAll runs every timer armed so far, stopped ones included: a stopped
// time.AfterFunc may still be running its function (Stop lost the race),
// and such a late call must do nothing.
func (ft *fakeTimers) fireAll() {
	ft.mu.Lock()
	timers := ft.armed
	ft.armed = nil
	ft.mu.Unlock()
	for _, t := range timers {
		t.f()
	}
}

func TestReclaimer(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(r *Reclaimer, ft *fakeTimers)
		want int // releases
	}{
		{"a burst then quiet releases once", func(r *Reclaimer, ft *fakeTimers) {
			ends := []func(){r.Begin(), r.Begin(), r.Begin()}
			for _, end := range ends {
				end()
			}
			ft.fireAll()
			ft.fireAll() // nothing armed again: still one
		}, 1},
		{"no work, no release", func(r *Reclaimer, ft *fakeTimers) { ft.fireAll() }, 0},
		{"work still running when the timer of an earlier end fires", func(r *Reclaimer, ft *fakeTimers) {
			r.Begin()()
			end := r.Begin()
			ft.fireAll() // the first end's timer: stale
			end()
		}, 0},
		{"work that began and ended after the timer was armed re-arms it", func(r *Reclaimer, ft *fakeTimers) {
			r.Begin()()
			r.Begin()()
			ft.fireAll() // two timers: only the newest counts
		}, 1},
		{"an end called twice counts once", func(r *Reclaimer, ft *fakeTimers) {
			end := r.Begin()
			other := r.Begin()
			end()
			end()        // would make in-flight 0 while other runs
			ft.fireAll() // no timer may have been armed
			other()
		}, 0},
		{"two bursts, two releases", func(r *Reclaimer, ft *fakeTimers) {
			r.Begin()()
			ft.fireAll()
			r.Begin()()
			ft.fireAll()
		}, 2},
		{"stopped: no release", func(r *Reclaimer, ft *fakeTimers) {
			r.Begin()()
			r.Stop()
			ft.fireAll()
			r.Begin()()
			ft.fireAll()
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ft := &fakeTimers{}
			released := 0
			r := newReclaimer(0, func() { released++ }, ft.after)
			c.run(r, ft)
			if released != c.want {
				t.Errorf("released %d times, want %d", released, c.want)
			}
			for _, q := range ft.quiets {
				if q != DefaultQuiet {
					t.Errorf("armed for %v, want the default %v", q, DefaultQuiet)
				}
			}
		})
	}
}

// Many workers at once: exactly one release after the last one ends, and
// the race detector sees no unsynchronised access.
func TestReclaimerConcurrent(t *testing.T) {
	ft := &fakeTimers{}
	var mu sync.Mutex
	released := 0
	r := newReclaimer(time.Millisecond, func() { mu.Lock(); released++; mu.Unlock() }, ft.after)
	hold := r.Begin() // keeps every other end from arming
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r.Begin()()
			}
		}()
	}
	wg.Wait()
	ft.fireAll()
	if released != 0 {
		t.Fatalf("released %d times while work was in flight", released)
	}
	hold()
	ft.fireAll()
	if released != 1 {
		t.Errorf("released %d times after the last end, want 1", released)
	}
}

// With the real clock: New releases through debug.FreeOSMemory, and does
// so after the quiet period.
func TestNewReleasesWithTheRealClock(t *testing.T) {
	done := make(chan struct{})
	r := New(10 * time.Millisecond)
	if reflect.ValueOf(r.release).Pointer() != reflect.ValueOf(debug.FreeOSMemory).Pointer() {
		t.Fatal("New does not release through debug.FreeOSMemory")
	}
	r.release = func() { close(done) }
	r.Begin()()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no release 30 s after the work ended (quiet 10 ms)")
	}
}
