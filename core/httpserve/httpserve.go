// Package httpserve runs every HTTP server of the agent (health, metrics and
// the control API) the same way: serve until a context ends, then stop
// taking connections and let the requests in flight finish, within a grace
// period. It is the one place where http.Server is configured, and every
// server it runs has bounds (Limits): header, read, write and idle timeouts,
// a header size limit and a connection limit that idle clients cannot fill
// (conns.go).
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultGrace is how long Serve waits for in-flight requests once its
// context has ended, unless WithGrace says otherwise.
const DefaultGrace = 10 * time.Second

// Limits bound what one client can hold of a server: time to send the
// request, time to take the answer, time idle between requests, header
// size, and the number of connections open at once. Every field has a
// default (DefaultLimits); a zero field keeps it.
type Limits struct {
	// ReadHeader bounds the request line and headers (slowloris).
	ReadHeader time.Duration
	// Read bounds the whole request, body included.
	Read time.Duration
	// Write bounds the handler and the writing of its answer, counted from
	// the end of the request headers: a client that never reads is cut
	// when it ends. It must exceed the longest legitimate request (a check
	// bounded by its plugins' timeouts, a CPU profile).
	Write time.Duration
	// Idle bounds a kept-alive connection between requests.
	Idle time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// MaxConns is how many connections are open at once. At the limit, a
	// new connection closes the oldest one that has no request in
	// progress (idle, or new with nothing received for 50 ms); when there
	// is none it waits up to a second for one, then is answered 503 with
	// the busy body (WithBusyBody) and closed.
	MaxConns int
}

// DefaultLimits are the limits of a server unless Serve is told otherwise.
func DefaultLimits() Limits {
	return Limits{
		ReadHeader:     5 * time.Second,
		Read:           10 * time.Second,
		Write:          30 * time.Second,
		Idle:           30 * time.Second,
		MaxHeaderBytes: 16 << 10,
		MaxConns:       256,
	}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	orDefault(&l.ReadHeader, d.ReadHeader)
	orDefault(&l.Read, d.Read)
	orDefault(&l.Write, d.Write)
	orDefault(&l.Idle, d.Idle)
	orDefault(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&l.MaxConns, d.MaxConns)
	return l
}

// orDefault sets *v to d when *v is not positive (unset).
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Option changes how Serve runs its server.
type Option func(*options)

type options struct {
	grace    time.Duration
	errorLog *log.Logger
	limits   Limits
	busy     []byte
}

// DefaultBusyBody is the body of the 503 a connection beyond MaxConns gets
// when every open connection has a request in progress.
const DefaultBusyBody = `{"error":"the server has as many requests in progress as it serves at once; try again"}` + "\n"

// WithBusyBody sets the JSON body of the 503 that a connection beyond
// MaxConns gets, in the vocabulary of the server's clients.
func WithBusyBody(body []byte) Option {
	return func(o *options) { o.busy = body }
}

// WithLimits sets the server's limits; zero fields keep DefaultLimits.
func WithLimits(l Limits) Option {
	return func(o *options) { o.limits = l.withDefaults() }
}

// WithGrace sets how long in-flight requests may run after the context has
// ended before their connections are closed. Zero or less keeps DefaultGrace.
func WithGrace(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.grace = d
		}
	}
}

// WithErrorLog sends the server's own errors (bad TLS handshakes, panics in
// handlers, accept errors) to l instead of the standard logger.
func WithErrorLog(l *log.Logger) Option {
	return func(o *options) { o.errorLog = l }
}

// deferAccept is TCP_DEFER_ACCEPT's wait, in seconds: how long the kernel
// holds a connection that has sent nothing before handing it to accept.
const deferAccept = 5

// Listen opens a TCP listener on addr ("host:port", ":port"). Connections
// reach the server only once their first bytes have arrived
// (TCP_DEFER_ACCEPT), so that a flood of silent connections waits in the
// kernel, not in the server's slots, and what the server accepts it can
// tell apart from a flood (connLimiter).
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAccept)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, then shuts the server down
// gracefully: ln is closed at once, idle connections are closed, and the
// requests in flight get the grace period to finish before their
// connections are closed too. Request contexts carry ctx's values but are
// not cancelled when ctx ends, so in-flight work is not cut short.
//
// Serve always closes ln. It returns nil after a clean stop, an error when
// the server failed before ctx ended, or when requests were still running
// at the end of the grace period.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, opts ...Option) error {
	o := options{grace: DefaultGrace, limits: DefaultLimits(), busy: []byte(DefaultBusyBody)}
	for _, opt := range opts {
		opt(&o)
	}
	base := context.WithoutCancel(ctx)
	lim := o.limits
	// A connection beyond MaxConns costs a close, not a goroutine and
	// buffers (connLimiter).
	limited := newConnLimiter(ln, lim.MaxConns, busyAnswer("application/json", o.busy))
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          o.errorLog,
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnState:         limited.track,
	}
	addr := ln.Addr().String()
	ln = limited

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		// Serve only returns early on an accept error (ln closed under it).
		return fmt.Errorf("serve HTTP on %s: %w", addr, err)
	case <-ctx.Done():
	}

	shutCtx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
		<-served
		return fmt.Errorf("stop HTTP server on %s: requests still running after %s: %w", addr, o.grace, err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP on %s: %w", addr, err)
	}
	return nil
}

// QuietWhenGone wraps h for a client that may go away mid-answer (a
// Prometheus scrape that timed out): once a write to the client fails, the
// handler's further writes succeed without effect, and gone is called once
// with the first error. Without it, promhttp logs one warning per metric
// family left to write (8 WARN lines per abandoned
// scrape).
func QuietWhenGone(h http.Handler, gone func(r *http.Request, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		qw := &quietWriter{ResponseWriter: w}
		h.ServeHTTP(qw, r)
		if qw.err != nil && gone != nil {
			gone(r, qw.err)
		}
	})
}

type quietWriter struct {
	http.ResponseWriter
	err error
}

func (q *quietWriter) Write(p []byte) (int, error) {
	if q.err != nil {
		return len(p), nil
	}
	if _, err := q.ResponseWriter.Write(p); err != nil {
		q.err = err
	}
	return len(p), nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (q *quietWriter) Unwrap() http.ResponseWriter { return q.ResponseWriter }
