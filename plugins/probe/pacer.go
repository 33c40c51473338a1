//go:build linux

package probe

import (
	"context"
	"sync"
	"time"
)

// pacer sends the probes of one socket at a bounded rate: a token bucket
// (rate per second, burst tokens) served by one goroutine. Real switches
// police ARP and a burst of thousands of broadcast frames overflows the
// receive backlogs of the hosts on the link (net.core.netdev_max_backlog,
// 1000 by default): a probe lost there is a reply that never comes, which
// no socket statistic of ours can see. Pacing keeps bursts inside what a
// LAN absorbs.
//
// Two queues: the later probes of windows that are already open go before
// the first probes of checks that wait to start, so that a saturated pacer
// delays new checks rather than stretching running ones. A request whose
// frame equals one still queued joins it: every check of the same gateway
// (or two checks of one IPv4 candidate) share one frame on the wire, and
// every waiter of that address sees its answer.
type pacer struct {
	send  func([]byte) error
	rate  float64 // tokens per second; <= 0: unpaced (tests of the pacer)
	burst float64

	mu     sync.Mutex
	hi, lo []*sendReq
	queued map[string]*sendReq // by priority + frame, not yet taken
	closed bool
	wake   chan struct{} // buffered 1: something was queued
	stop   chan struct{}
	done   chan struct{}

	tokens float64
	last   time.Time
}

// sendReq is one frame to send and everyone waiting for it.
type sendReq struct {
	key     string
	frm     []byte
	waiters int           // callers still interested; 0: skip it
	done    chan struct{} // closed once sent and err are set
	sent    sendTimes
	err     error
}

func newPacer(rate float64, burst int, send func([]byte) error) *pacer {
	if burst < 1 {
		burst = 1
	}
	p := &pacer{send: send, rate: rate, burst: float64(burst), tokens: float64(burst),
		queued: map[string]*sendReq{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// close stops the pacer; queued requests fail with ErrClosed.
func (p *pacer) close() {
	close(p.stop)
	<-p.done
}

// sendTimes bracket the sendto(2) of a frame: it left between the two.
// Windows start at after (never before the frame left), round-trip times
// are measured from before (an answer may beat sendto's return).
type sendTimes struct{ before, after time.Time }

// sendFrame queues frm and waits until it was sent. urgent puts it in the
// queue of open windows.
func (p *pacer) sendFrame(ctx context.Context, frm []byte, urgent bool) (sendTimes, error) {
	key := string(frm)
	if urgent {
		key = "!" + key
	} else {
		key = "." + key
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return sendTimes{}, ErrClosed
	}
	r := p.queued[key]
	if r == nil {
		r = &sendReq{key: key, frm: frm, done: make(chan struct{})}
		p.queued[key] = r
		if urgent {
			p.hi = append(p.hi, r)
		} else {
			p.lo = append(p.lo, r)
		}
	}
	r.waiters++
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.sent, r.err
	case <-ctx.Done():
		p.mu.Lock()
		r.waiters--
		p.mu.Unlock()
		return sendTimes{}, ctx.Err()
	}
}

// next takes the next request that someone still waits for.
func (p *pacer) next() *sendReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range []*[]*sendReq{&p.hi, &p.lo} {
		for len(*q) > 0 {
			r := (*q)[0]
			(*q)[0] = nil
			*q = (*q)[1:]
			delete(p.queued, r.key)
			if r.waiters > 0 {
				return r
			}
			close(r.done) // abandoned: nobody reads sent or err
		}
	}
	return nil
}

func (p *pacer) run() {
	defer close(p.done)
	defer p.failQueued()
	var timer *time.Timer
	for {
		r := p.next()
		if r == nil {
			select {
			case <-p.wake:
				continue
			case <-p.stop:
				return
			}
		}
		if wait := p.take(time.Now()); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-p.stop:
				r.err = ErrClosed
				close(r.done)
				return
			}
		}
		r.sent.before = time.Now()
		r.err = p.send(r.frm)
		r.sent.after = time.Now()
		close(r.done)
	}
}

// take spends one token and returns how long to wait before sending.
func (p *pacer) take(now time.Time) time.Duration {
	if p.rate <= 0 {
		return 0
	}
	if !p.last.IsZero() {
		p.tokens += now.Sub(p.last).Seconds() * p.rate
		if p.tokens > p.burst {
			p.tokens = p.burst
		}
	}
	p.last = now
	p.tokens--
	if p.tokens >= 0 {
		return 0
	}
	// In debt: the frame goes out when the bucket is back at zero.
	return time.Duration(-p.tokens / p.rate * float64(time.Second))
}

func (p *pacer) failQueued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range [][]*sendReq{p.hi, p.lo} {
		for _, r := range q {
			r.err = ErrClosed
			close(r.done)
		}
	}
	p.hi, p.lo, p.queued = nil, nil, map[string]*sendReq{}
	p.closed = true
}
