package httpserve

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of answering a refused connection busy. The request is read (its
// headers, or what arrives in time) before the answer is written, because
// a client that sees an answer before it has sent its request takes it for
// a broken connection; at most maxRefusing connections are answered at
// once, and any beyond are closed without an answer.
const (
	busyTimeout   = 200 * time.Millisecond
	busyReadBytes = 4 << 10
	maxRefusing   = 32
)

// Bounds of making room at the limit (connLimiter).
const (
	// silentAfter is how long a new connection may have sent nothing
	// before it may be closed to make room: a client writes its request
	// right after connecting, a flood of silent connections does not.
	// Short, because a flood is let in a limit's worth per silentAfter.
	silentAfter = 50 * time.Millisecond
	// busyWait is how long a new connection waits for a slot when every
	// open one is in the middle of a request (or has spoken, or is too
	// new to be judged silent) before it is answered busy.
	busyWait = time.Second
)

// connLimiter keeps at most max connections open. A connection that is not
// in the middle of a request - idle between requests, or new and silent:
// nothing received for silentAfter - is what a flood of clients holds, so
// when the limit is reached the oldest such connection is closed to make
// room for the new one (idle ones first): idle and silent clients cannot
// keep a request out, however many there are. A new connection whose
// request has arrived but is not read yet (bytes in its receive queue) is
// never closed: a burst of clients that all send at once is not turned
// against itself. When nothing qualifies the new connection waits, up to
// busyWait, for a slot to free or for a silent one to qualify, while the
// rest wait in the kernel's backlog; only when that wait ends with every
// slot still taken is the new one answered busy (busy, a complete HTTP
// answer) and closed.
type connLimiter struct {
	net.Listener
	max  int
	busy []byte

	mu    sync.Mutex
	open  map[*heardConn]*connEntry
	seq   uint64
	freed chan struct{} // a token when a slot may have come free

	refusing chan struct{} // a slot per connection being answered busy
}

type connEntry struct {
	seq   uint64 // accept order: lower is older
	state http.ConnState
	since time.Time // when it entered its state
	spoke bool      // new, and its request's first bytes have arrived
}

// heardConn is an admitted connection that remembers whether the server
// has read anything from it. The server's state for a connection turns
// active only once a request's headers are read whole, so a connection
// still new may be one whose request is being read: not silent.
type heardConn struct {
	net.Conn
	heard atomic.Bool
}

func (c *heardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.heard.Store(true)
	}
	return n, err
}

// CloseWrite keeps the half-close the server makes before closing a
// connection it refuses a body on.
func (c *heardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// spoken reports whether anything has come from the client: read by the
// server, or waiting in the socket's receive queue (SIOCINQ). A
// connection whose socket cannot be asked counts as silent.
func (c *heardConn) spoken() bool {
	if c.heard.Load() {
		return true
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return false
	}
	return n > 0
}

func newConnLimiter(ln net.Listener, max int, busy []byte) *connLimiter {
	return &connLimiter{Listener: ln, max: max, busy: busy, open: map[*heardConn]*connEntry{}, freed: make(chan struct{}, 1), refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection that fits under the limit.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		hc := &heardConn{Conn: c}
		if l.admit(hc) {
			return hc, nil
		}
		l.refuse(c)
	}
}

// admit registers c, making room when the limit is reached (connLimiter);
// false when none came free within busyWait.
func (l *connLimiter) admit(c *heardConn) bool {
	var deadline time.Time
	for {
		now := time.Now()
		l.mu.Lock()
		victim, ripe := l.victimLocked(now)
		if len(l.open) < l.max || victim != nil {
			if victim != nil {
				delete(l.open, victim)
			}
			l.seq++
			l.open[c] = &connEntry{seq: l.seq, state: http.StateNew, since: now}
			l.mu.Unlock()
			if victim != nil {
				// The server's goroutine for it sees the close and ends.
				victim.Close()
			}
			return true
		}
		l.mu.Unlock()
		if deadline.IsZero() {
			deadline = now.Add(busyWait)
		}
		wait := deadline.Sub(now)
		if !ripe.IsZero() && ripe.Sub(now) < wait {
			wait = ripe.Sub(now)
		}
		if wait <= 0 {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-l.freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// victimLocked picks the connection to close for a new one: the oldest
// idle one, else the oldest new one silent for silentAfter. With no
// victim, ripe is when the oldest new one not known to have spoken will
// be silent long enough (zero when there is none).
func (l *connLimiter) victimLocked(now time.Time) (victim *heardConn, ripe time.Time) {
	if len(l.open) < l.max {
		return nil, time.Time{}
	}
	var idle *heardConn
	var idleSeq uint64
	for oc, e := range l.open {
		if e.state == http.StateIdle && (idle == nil || e.seq < idleSeq) {
			idle, idleSeq = oc, e.seq
		}
	}
	if idle != nil {
		return idle, time.Time{}
	}
	for {
		var silent *heardConn
		var silentSeq uint64
		ripe = time.Time{}
		for oc, e := range l.open {
			if e.state != http.StateNew || e.spoke {
				continue
			}
			if now.Sub(e.since) < silentAfter {
				if r := e.since.Add(silentAfter); ripe.IsZero() || r.Before(ripe) {
					ripe = r
				}
			} else if silent == nil || e.seq < silentSeq {
				silent, silentSeq = oc, e.seq
			}
		}
		if silent == nil || !silent.spoken() {
			return silent, ripe
		}
		// Its request is being or waiting to be read: it stays, whatever
		// its age.
		l.open[silent].spoke = true
	}
}

func (l *connLimiter) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(busyTimeout))
		buf := make([]byte, busyReadBytes)
		for n := 0; n < len(buf); {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
				break
			}
		}
		_, _ = c.Write(l.busy)
	}()
}

// track is the server's ConnState hook.
func (l *connLimiter) track(c net.Conn, s http.ConnState) {
	hc, ok := c.(*heardConn)
	if !ok {
		return // never admitted
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.open[hc]
	if !ok {
		return // closed to make room
	}
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(l.open, hc)
	default:
		e.state, e.since = s, time.Now()
	}
	if s != http.StateActive {
		// A slot freed, or a connection became one to close for a
		// new one: wake an admit that waits.
		select {
		case l.freed <- struct{}{}:
		default:
		}
	}
}

// count is how many connections are open.
func (l *connLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// busyAnswer is a complete HTTP/1.1 503 answer with body, closing the
// connection.
func busyAnswer(contentType string, body []byte) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: %s\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", contentType, len(body), body)
}
