package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrDamaged is wrapped by every error that says the store's file cannot
// be trusted: empty, truncated, not a store, failing bbolt's consistency
// check, or a page bbolt panicked on.
var ErrDamaged = errors.New("IPAM store damaged")

// damagedError names the file, what is wrong and what the operator does
// about it. The agent never re-initialises a damaged file itself: an empty
// store would hand out every address again.
type damagedError struct {
	path, what string
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("IPAM store %s is damaged: %s. Restore the last backup (stop the agent; spiderpool-agent ipam restore BACKUP-FILE; start it), "+
		"or, to start with an empty store, move the file aside (mv %s %s.damaged) - with conflict_detection on, addresses that workloads still use are then skipped", e.path, e.what, e.path, e.path)
}

func (e *damagedError) Unwrap() error { return ErrDamaged }

func damaged(path, what string) error { return &damagedError{path: path, what: what} }

// panicError is a panic bbolt raised (its assertions on a page it cannot
// read, or a fault on the file's memory map) turned into an error.
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprintf("bbolt: %v", p.v) }

// guard runs fn and returns a panic of it as a *panicError. Faults on the
// memory map (a page past the end of a truncated file) panic rather than
// crash the process while fn runs.
func guard(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v: v}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// guard is the package's guard for an open store: a panic marks the store
// failed for good (the agent reports it not ready and stops using it), and
// a failed store answers every call with that error.
func (s *Store) guard(fn func() error) error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	err := guard(fn)
	var p *panicError
	if errors.As(err, &p) {
		err = damaged(s.path, p.Error())
		s.failed.CompareAndSwap(nil, &err)
		return *s.failed.Load()
	}
	return err
}

// Failed returns the error that made the store unusable (a page bbolt
// panicked on), or nil.
func (s *Store) Failed() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// maxCheckErrors bounds the problems bbolt's check reports.
const maxCheckErrors = 10

// verify proves the file readable before it is used, in one read
// transaction: the file holds every page its meta page counts (a
// truncated file would fault on the first read past its end), every key of
// every bucket reads and decodes, the store's buckets and format are there,
// and bbolt's own consistency check (tx.Check: page reachability, double
// frees, key order) passes. The walk runs first and under guard, because
// tx.Check reads pages in a goroutine of its own where a panic could not be
// recovered.
//
// fresh is true for a bbolt file without any bucket: bbolt wrote its pages
// but the store's buckets never were (an agent killed at its very first
// start); it holds no record to lose.
func (s *Store) verify(ctx context.Context) (fresh bool, err error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return false, fmt.Errorf("IPAM store %s: %w", s.path, err)
	}
	var problems []string
	err = s.guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			if fi.Size() < tx.Size() {
				problems = append(problems, fmt.Sprintf("the file is truncated: %d bytes, its header counts %d", fi.Size(), tx.Size()))
				return nil
			}
			if tx.Bucket(bucketKV) == nil && tx.Bucket(bucketMeta) == nil && tx.ForEach(func([]byte, *bolt.Bucket) error { return errStop }) == nil {
				fresh = true
				return nil
			}
			if tx.Bucket(bucketKV) == nil || tx.Bucket(bucketMeta) == nil {
				problems = append(problems, "not a spiderpool IPAM store (no kv and meta buckets)")
				return nil
			}
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					if err := ctx.Err(); err != nil {
						return err
					}
					if string(name) == string(bucketKV) {
						return checkRecord(k, v)
					}
					return nil
				})
			}); err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			if _, err := checkFormat(tx.Bucket(bucketMeta)); err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			problems = append(problems, checkTx(tx)...)
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			return false, err
		}
		return false, fmt.Errorf("IPAM store %s: verify: %w", s.path, err)
	}
	if len(problems) > 0 {
		return false, damaged(s.path, strings.Join(problems, "; "))
	}
	return fresh, nil
}

var errStop = errors.New("stop")

// checkTx runs bbolt's consistency check and returns up to maxCheckErrors
// of its findings; it drains the check to its end.
func checkTx(tx *bolt.Tx) []string {
	var out []string
	n := 0
	for err := range tx.Check() {
		if n++; n <= maxCheckErrors {
			out = append(out, "bbolt check: "+err.Error())
		}
	}
	if n > maxCheckErrors {
		out = append(out, fmt.Sprintf("bbolt check: %d more problems", n-maxCheckErrors))
	}
	return out
}

// Verify runs bbolt's consistency check on the open store. With an agent
// writing, the check runs inside a write transaction (bbolt's check reads
// the freelist, which writers change), so commits wait for it: about the
// time Open's check takes.
func (s *Store) Verify(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var problems []string
	run := s.db.Update
	if s.db.IsReadOnly() {
		run = s.db.View
	}
	err := s.guard(func() error {
		return run(func(tx *bolt.Tx) error {
			problems = checkTx(tx)
			return nil
		})
	})
	if err != nil {
		return s.wrapErr(err)
	}
	// tx.Check read every page.
	s.releaseMap()
	if len(problems) > 0 {
		return damaged(s.path, strings.Join(problems, "; "))
	}
	return nil
}

// errLocked and errEmpty are the locker's refusals; Open words them.
var (
	errLocked = errors.New("locked")
	errEmpty  = errors.New("empty")
)

// flockRetry is how often a held lock is tried again (bbolt's own pace).
const flockRetry = 50 * time.Millisecond

// locker opens the file for bbolt (its OpenFile hook) and takes bbolt's
// lock itself first, so that what bbolt would do to a file it sees empty
// - write a new database - is decided under the lock: a file this open
// created is new; an existing empty one is refused. bbolt's own flock on
// the same descriptor then succeeds at once. A file replaced while the
// lock was awaited (ipam restore renames a backup over it) is opened again,
// so that the agent never runs on an unlinked file.
type locker struct {
	timeout time.Duration
	shared  bool
	created bool
	f       *os.File
}

func (l *locker) open(name string, flag int, mode os.FileMode) (*os.File, error) {
	deadline := time.Now().Add(l.timeout)
	how := syscall.LOCK_EX
	if l.shared {
		how = syscall.LOCK_SH
	}
	for {
		f, created, err := openNoFollow(name, flag, mode)
		if err != nil {
			return nil, err
		}
		if err := flockUntil(f, how, deadline); err != nil {
			f.Close()
			return nil, err
		}
		if !sameFile(f, name) {
			f.Close()
			if time.Now().After(deadline) {
				return nil, errLocked
			}
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if fi.Size() == 0 && !created {
			f.Close()
			return nil, errEmpty
		}
		l.created, l.f = created, f
		return f, nil
	}
}

// close closes the file when bbolt could not (it panicked in Open).
func (l *locker) close() {
	if l.f != nil {
		l.f.Close()
	}
}

// openNoFollow opens an existing file, or creates it (exclusively) when
// flag has O_CREATE and it does not exist; created says which.
func openNoFollow(name string, flag int, mode os.FileMode) (*os.File, bool, error) {
	for {
		f, err := os.OpenFile(name, flag&^os.O_CREATE|syscall.O_NOFOLLOW, mode)
		if err == nil || flag&os.O_CREATE == 0 || !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
		f, err = os.OpenFile(name, flag|os.O_EXCL|syscall.O_NOFOLLOW, mode)
		if errors.Is(err, fs.ErrExist) {
			continue // created by another opener just now: open it
		}
		return f, err == nil, err
	}
}

// flockUntil takes a flock on f, trying until deadline.
func flockUntil(f *os.File, how int, deadline time.Time) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return errLocked
		}
		time.Sleep(flockRetry)
	}
}

// sameFile reports whether f is still the file at name.
func sameFile(f *os.File, name string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(name)
	return err == nil && os.SameFile(a, b)
}
