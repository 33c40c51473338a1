//go:build linux

// One probing window and the proof of its silence: late probes move its
// end, the drain barrier, the drop count.

package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// windowOutcome is how one probing window ended without an error.
type windowOutcome struct {
	hit        bool   // an answer arrived
	notDrained bool   // the reader had not handled everything by the end
	dropped    uint64 // frames the kernel dropped on the socket meanwhile
}

func (o windowOutcome) proven() bool { return o.hit || (!o.notDrained && o.dropped == 0) }

func (o windowOutcome) String() string {
	switch {
	case o.notDrained:
		return fmt.Sprintf("frames received before the window ended were still unread %s later", drainGrace)
	case o.dropped > 0:
		return fmt.Sprintf("the kernel dropped %d frames on the socket during the window", o.dropped)
	}
	return "proven"
}

// probeWindow runs one window: it sends p.Probes probes through the pacer,
// the first starting the window, and returns at the first answer, or once
// silence is proven or disproven. The window ends p.Window after the first
// probe left, and never sooner than each later probe had its share of it:
// probe k (from 0), due k*W/P after the first, gets W - k*W/P after it
// actually left, so a probe sent late (CPU pressure, pacing) moves the end.
// At the end the reader must have handled every frame that arrived before
// it, and the kernel must have dropped none on the socket since before the
// first probe.
func (s *ifSock) probeWindow(ctx context.Context, w *waiter, frm []byte, p Params, res *Result) (firstAt time.Time, out windowOutcome, err error) {
	drops0, err := s.drops()
	if err != nil {
		return firstAt, out, err
	}
	first, err := s.sendRetry(ctx, frm, *p.Retries, false, res)
	if err != nil {
		return firstAt, out, err
	}
	// RTTs count from the start of the send; the window from its end.
	firstAt = first.before
	deadline := first.after.Add(p.Window)
	interval := p.Window / time.Duration(p.Probes)
	timer := time.NewTimer(0)
	defer timer.Stop()
	wait := func(until time.Time) (bool, error) {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(until))
		select {
		case <-w.hit:
			return true, nil
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case <-s.done:
			return false, fmt.Errorf("%w: socket closed", ErrClosed)
		}
	}
	for k := 1; k < p.Probes; k++ {
		hit, err := wait(first.after.Add(time.Duration(k) * interval))
		if hit || err != nil {
			return firstAt, windowOutcome{hit: hit}, err
		}
		at, err := s.sendRetry(ctx, frm, *p.Retries, true, res)
		if err != nil {
			if w.answered() {
				return firstAt, windowOutcome{hit: true}, nil
			}
			return firstAt, out, err
		}
		if end := at.after.Add(p.Window - time.Duration(k)*interval); end.After(deadline) {
			deadline = end
		}
	}
	hit, err := wait(deadline)
	if hit || err != nil {
		return firstAt, windowOutcome{hit: hit}, err
	}
	// Everything that arrived before the deadline must have been handled.
	if err := s.drained(ctx, deadline, deadline.Add(drainGrace)); err != nil {
		if errors.Is(err, errNotDrained) {
			return firstAt, windowOutcome{hit: w.answered(), notDrained: true}, nil
		}
		return firstAt, out, err
	}
	if w.answered() {
		return firstAt, windowOutcome{hit: true}, nil
	}
	drops1, err := s.drops()
	if err != nil {
		return firstAt, out, err
	}
	return firstAt, windowOutcome{dropped: drops1 - drops0}, nil
}

// errNotDrained: the reader did not handle every frame that arrived before
// a window's end within the grace given.
var errNotDrained = errors.New("receive queue not drained")

// drainTick is how often a drain waiter looks again without being woken.
const drainTick = 20 * time.Millisecond

// drained waits until the reader has handled every frame that arrived
// before deadline, or until limit (errNotDrained). The reader is known to
// have done so when it went idle (found the queue empty) at or after the
// deadline, or when it is idle now and the queue is still empty: then no
// frame arrived since it last looked. The second test needs no frame to
// arrive, so a quiet link proves itself at once.
func (s *ifSock) drained(ctx context.Context, deadline, limit time.Time) error {
	s.progWaiting.Add(1)
	defer s.progWaiting.Add(-1)
	tick := time.NewTimer(drainTick)
	defer tick.Stop()
	for {
		s.progMu.Lock()
		if s.progress == nil {
			s.progress = make(chan struct{})
		}
		ch := s.progress
		s.progMu.Unlock()
		if s.idle.Load() {
			seq := s.idleSeq.Load()
			if !s.born.Add(time.Duration(s.idleAt.Load())).Before(deadline) {
				return nil
			}
			now := time.Now()
			if !now.Before(deadline) && s.queueEmpty() && s.idle.Load() && s.idleSeq.Load() == seq {
				return nil
			}
		}
		if time.Now().After(limit) {
			return errNotDrained
		}
		// Woken when the reader next goes idle: a frame in the queue wakes
		// it through the poller, so the tick is only a safety net, kept
		// coarse because thousands of checks may wait here at once.
		tick.Reset(drainTick)
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("%w: socket closed", ErrClosed)
		}
	}
}

// queueEmpty tells whether no frame waits in the socket's receive queue.
func (s *ifSock) queueEmpty() bool {
	empty := false
	_ = s.raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			empty = err == nil && n == 0
			return
		}
	})
	return empty
}

// wentIdle records that a read found the queue empty; at was taken before
// that read.
func (s *ifSock) wentIdle(at time.Time) {
	s.idleAt.Store(int64(at.Sub(s.born)))
	s.idleSeq.Add(1)
	s.idle.Store(true)
	if s.progWaiting.Load() > 0 {
		s.progMu.Lock()
		if s.progress != nil {
			close(s.progress)
			s.progress = nil
		}
		s.progMu.Unlock()
	}
}
