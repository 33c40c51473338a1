package boltstore

import (
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// batcher is the group commit of Commits that run at the same time: one
// read-write transaction, one fsync. It does what bbolt's DB.Batch does,
// but the transaction runs in the goroutine of one of the committers (the
// leader) rather than in a timer's: there a panic bbolt raises on a
// damaged page is recovered by guard; in bbolt's goroutine it would end
// the process.
type batcher struct {
	mu      sync.Mutex
	pending []*batchCall
	leading bool // a leader is gathering pending
}

type batchCall struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// errSolo tells a call its fn failed inside a batch: it runs again alone,
// so that its error is its own.
var errSolo = errors.New("run again alone")

// update runs fn alone in a read-write transaction, under guard.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.guard(func() error { return s.db.Update(fn) })
}

// batchUpdate runs fn in a transaction shared with the Commits running
// now. fn may run more than once.
func (s *Store) batchUpdate(fn func(*bolt.Tx) error) error {
	c := &batchCall{fn: fn, err: make(chan error, 1)}
	b := &s.batch
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := !b.leading
	b.leading = true
	b.mu.Unlock()
	if lead {
		// Let the others in flight join; an fsync costs more.
		time.Sleep(batchDelay)
		b.mu.Lock()
		calls := b.pending
		b.pending, b.leading = nil, false
		b.mu.Unlock()
		s.runBatch(calls)
	}
	err := <-c.err
	if errors.Is(err, errSolo) {
		err = s.update(fn)
	}
	return err
}

// runBatch commits calls in one transaction; a call whose fn fails is
// taken out and told to run alone, and the rest are tried again.
func (s *Store) runBatch(calls []*batchCall) {
	for len(calls) > 0 {
		failed := -1
		err := s.update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := c.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 && !errors.Is(err, ErrDamaged) {
			calls[failed].err <- errSolo
			calls = append(calls[:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err <- err
		}
		return
	}
}
