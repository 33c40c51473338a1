package main

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// scope adapts test/netlab's testing.TB-based helpers to a program: Fatal
// panics with a fatalError that run recovers, Cleanup functions run last in
// first out when the scope closes. Only the methods netlab uses are
// implemented; the embedded nil testing.TB makes any other call panic loudly
// instead of doing something silently wrong.
type scope struct {
	testing.TB
	name string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatalError is the panic value of scope.Fatal.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

// allScopes lets a signal handler close whatever is open.
var (
	scopesMu  sync.Mutex
	allScopes = map[*scope]bool{}
)

func newScope(name string) *scope {
	s := &scope{name: name}
	scopesMu.Lock()
	allScopes[s] = true
	scopesMu.Unlock()
	return s
}

func (s *scope) Helper()      {}
func (s *scope) Name() string { return s.name }

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) Fatal(args ...any) { s.fail(fmt.Sprint(args...)) }
func (s *scope) Fatalf(format string, args ...any) {
	s.fail(fmt.Sprintf(format, args...))
}
func (s *scope) FailNow() { s.fail("FailNow") }

func (s *scope) fail(msg string) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	panic(fatalError{s.name + ": " + msg})
}

func (s *scope) Error(args ...any) { s.Errorf("%s", fmt.Sprint(args...)) }
func (s *scope) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	fmt.Fprintf(os.Stderr, "bench: %s: %s\n", s.name, fmt.Sprintf(format, args...))
}

func (s *scope) Log(args ...any) { s.Logf("%s", fmt.Sprint(args...)) }
func (s *scope) Logf(format string, args ...any) {
	if *verbose {
		fmt.Fprintf(os.Stderr, "bench: %s: %s\n", s.name, fmt.Sprintf(format, args...))
	}
}

func (s *scope) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *scope) TempDir() string {
	// Below a root-only directory, not /tmp: the agent refuses plugin
	// binaries that others could swap (StrictModes).
	d, err := agenttest.TrustedDir("spbench-")
	if err != nil {
		s.Fatalf("TempDir: %v", err)
	}
	s.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// close runs the cleanups, last first, once.
func (s *scope) close() {
	s.mu.Lock()
	cs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "bench: %s: cleanup: %v\n", s.name, r)
				}
			}()
			cs[i]()
		}()
	}
	scopesMu.Lock()
	delete(allScopes, s)
	scopesMu.Unlock()
}

// closeAll closes every open scope (from the signal handler).
func closeAll() {
	scopesMu.Lock()
	var ss []*scope
	for s := range allScopes {
		ss = append(ss, s)
	}
	scopesMu.Unlock()
	for _, s := range ss {
		s.close()
	}
}

// run runs fn in a new scope and closes it. A Fatal inside fn ends fn and
// is returned as an error; any other panic is re-raised after the cleanups.
func run(name string, fn func(s *scope)) (err error) {
	s := newScope(name)
	defer s.close()
	defer func() {
		if r := recover(); r != nil {
			if fe, ok := r.(fatalError); ok {
				err = fe
				return
			}
			s.close()
			panic(r)
		}
	}()
	fn(s)
	return nil
}
