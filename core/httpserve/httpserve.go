// Package httpserve runs every HTTP server of the agent (health, metrics and
// the control API) the same way: serve until a context ends, then stop
// taking connections and let the requests in flight finish, within a grace
// period. It is the one place where http.Server is configured.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"
)

// DefaultGrace is how long Serve waits for in-flight requests once its
// context has ended, unless WithGrace says otherwise.
const DefaultGrace = 10 * time.Second

// readHeaderTimeout bounds how long a client may take to send its request
// headers (slowloris). No write timeout: a check or a scrape may take long.
const readHeaderTimeout = 10 * time.Second

// Option changes how Serve runs its server.
type Option func(*options)

type options struct {
	grace    time.Duration
	errorLog *log.Logger
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

// Listen opens a TCP listener on addr ("host:port", ":port").
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
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
	o := options{grace: DefaultGrace}
	for _, opt := range opts {
		opt(&o)
	}
	base := context.WithoutCancel(ctx)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       time.Minute,
		ErrorLog:          o.errorLog,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	addr := ln.Addr().String()

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
