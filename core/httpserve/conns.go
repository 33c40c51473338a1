package httpserve

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
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

// connLimiter keeps at most max connections open. A connection that is not
// in the middle of a request - new and still sending its headers, or idle
// between requests - is what a flood of clients holds, so when the limit is
// reached the oldest such connection is closed to make room for the new
// one: idle clients cannot keep a request out, however many there are.
// When every open connection is in the middle of a request, the new one is
// answered busy (busy, a complete HTTP answer) and closed at once, rather
// than left waiting in the kernel's backlog behind requests of unknown
// length.
type connLimiter struct {
	net.Listener
	max  int
	busy []byte

	mu   sync.Mutex
	open map[net.Conn]*connEntry
	seq  uint64

	refusing chan struct{} // a slot per connection being answered busy
}

type connEntry struct {
	seq   uint64 // accept order: lower is older
	state http.ConnState
}

func newConnLimiter(ln net.Listener, max int, busy []byte) *connLimiter {
	return &connLimiter{Listener: ln, max: max, busy: busy, open: map[net.Conn]*connEntry{}, refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection that fits under the limit.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		l.refuse(c)
	}
}

// admit registers c, closing the oldest connection without a request in
// progress when the limit is reached; false when there is none.
func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	var victim net.Conn
	if len(l.open) >= l.max {
		var oldest uint64
		for oc, e := range l.open {
			if (e.state == http.StateNew || e.state == http.StateIdle) && (victim == nil || e.seq < oldest) {
				victim, oldest = oc, e.seq
			}
		}
		if victim == nil {
			l.mu.Unlock()
			return false
		}
		delete(l.open, victim)
	}
	l.seq++
	l.open[c] = &connEntry{seq: l.seq, state: http.StateNew}
	l.mu.Unlock()
	if victim != nil {
		// The server's goroutine for it sees the close and ends.
		victim.Close()
	}
	return true
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
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.open[c]
	if !ok {
		return // closed to make room, or never admitted
	}
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(l.open, c)
	default:
		e.state = s
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
