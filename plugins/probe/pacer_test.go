//go:build linux

package probe

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a send function that records what was sent and when.
type recorder struct {
	mu    sync.Mutex
	sent  []string
	times []time.Time
	gate  chan struct{} // when set, each send waits for a value
	held  atomic.Int32  // sends waiting at the gate
	once  sync.Once
}

// open lets every held and later send through.
func (r *recorder) open() { r.once.Do(func() { close(r.gate) }) }

func (r *recorder) send(frm []byte) error {
	if r.gate != nil {
		r.held.Add(1)
		<-r.gate
		r.held.Add(-1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, string(frm))
	r.times = append(r.times, time.Now())
	return nil
}

func TestPacerRate(t *testing.T) {
	r := &recorder{}
	p := newPacer(100, 1, r.send) // one frame per 10 ms, no burst
	defer p.close()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 11; i++ {
		wg.Go(func() {
			if _, err := p.sendFrame(context.Background(), []byte{byte(i)}, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 11 distinct frames at 100/s: the last leaves at least 100 ms after
	// the first (a lower bound only: a loaded machine is slower, never
	// faster).
	if took := time.Since(start); took < 95*time.Millisecond {
		t.Fatalf("11 frames at 100/s took %v", took)
	}
	if len(r.sent) != 11 {
		t.Fatalf("%d frames sent", len(r.sent))
	}
}

// Later probes of open windows go first, and a frame equal to one still
// queued is sent once for all who asked.
func TestPacerPriorityAndSharing(t *testing.T) {
	r := &recorder{gate: make(chan struct{})}
	p := newPacer(-1, 1, r.send)
	defer p.close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer r.open() // first: a failed test must not leave the pacer held
	send := func(frm string, urgent bool) {
		wg.Go(func() {
			st, err := p.sendFrame(context.Background(), []byte(frm), urgent)
			if err != nil || st.after.Before(st.before) {
				t.Errorf("%s: %v %v", frm, st, err)
			}
		})
	}
	send("block", false) // taken at once; the pacer waits at the gate
	waitHeld(t, r)
	for i := 0; i < 5; i++ {
		send("gw", false) // five checks of one gateway
	}
	send("late", true)
	waitQueued(t, p, 2)
	waitJoined(t, p, ".gw", 5) // else a late joiner gets a frame of its own
	r.open()
	wg.Wait()
	if want := []string{"block", "late", "gw"}; len(r.sent) != 3 || r.sent[1] != want[1] || r.sent[2] != want[2] {
		t.Fatalf("sent %q, want %q", r.sent, want)
	}
}

// waitHeld waits until the pacer is sending a frame, held at r's gate.
func waitHeld(t *testing.T, r *recorder) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.held.Load() == 0 {
		if time.Now().After(deadline) {
			r.open()
			t.Fatal("the pacer never started sending")
		}
		time.Sleep(time.Millisecond) // polling a state, not synchronising
	}
}

// waitQueued waits until n distinct frames are queued (not yet taken).
func waitQueued(t *testing.T, p *pacer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		q := len(p.hi) + len(p.lo)
		p.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond) // polling a state, not synchronising
	}
}

// waitJoined waits until n callers wait for the queued request key
// (priority mark + frame, as sendFrame keys it).
func waitJoined(t *testing.T, p *pacer, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		got := 0
		if r := p.queued[key]; r != nil {
			got = r.waiters
		}
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for %q, want %d", got, key, n)
		}
		time.Sleep(time.Millisecond) // polling a state, not synchronising
	}
}

func TestPacerCancelAndClose(t *testing.T) {
	r := &recorder{gate: make(chan struct{})}
	p := newPacer(-1, 1, r.send)
	go func() { _, _ = p.sendFrame(context.Background(), []byte("held"), false) }()
	waitHeld(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.sendFrame(ctx, []byte("x"), false); errc <- err }()
	waitQueued(t, p, 1)
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("cancelled send: %v", err)
	}
	r.open()
	p.close()
	if _, err := p.sendFrame(context.Background(), []byte("y"), false); err == nil {
		t.Fatal("send after close succeeded")
	}
}
