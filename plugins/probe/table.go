//go:build linux

// The socket table: one reference-counted socket per (namespace, interface),
// closed when idle.

package probe

import (
	"context"
	"time"
)

// entry is a reference-counted socket in the Engine's table.
type entry struct {
	key     sockKey
	ready   chan struct{} // closed once opening finished (sock or err set)
	sock    *ifSock
	err     error
	refs    int
	idleGen uint64
	idle    *time.Timer
	gone    bool // removed from the table; close when refs drops to 0
}

// acquire returns the entry for t's (namespace, interface), opening its
// socket if needed, with one more reference.
func (e *Engine) acquire(ctx context.Context, t Target) (*entry, error) {
	ns, err := openNetns(t.Netns, t.Interface)
	if err != nil {
		return nil, err
	}
	defer ns.close()
	key := ns.key
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	en := e.socks[key]
	if en != nil && en.sock != nil && en.sock.isBroken() {
		// Its interface vanished or its reader stopped: start afresh. An
		// idle one is closed here; a used one by its last user.
		delete(e.socks, key)
		en.gone = true
		if en.refs == 0 {
			if en.idle != nil {
				en.idle.Stop()
			}
			defer en.sock.close()
		}
		en = nil
	}
	if en != nil {
		en.refs++
		en.idleGen++
		if en.idle != nil {
			en.idle.Stop()
			en.idle = nil
		}
		e.mu.Unlock()
		select {
		case <-en.ready:
		case <-ctx.Done():
			e.release(en)
			return nil, ctx.Err()
		}
		if en.err != nil {
			e.release(en)
			return nil, en.err
		}
		return en, nil
	}
	en = &entry{key: key, ready: make(chan struct{}), refs: 1}
	e.socks[key] = en
	e.mu.Unlock()

	// Open outside the lock; later callers for the same key wait on ready.
	s, err := openSock(ns, t.Interface, &e.c, e.opts)
	e.mu.Lock()
	en.sock, en.err = s, err
	if err != nil && e.socks[key] == en {
		delete(e.socks, key)
		en.gone = true
	}
	closed := e.closed
	close(en.ready)
	e.mu.Unlock()
	if err != nil {
		e.release(en)
		return nil, err
	}
	if closed {
		e.release(en)
		return nil, ErrClosed
	}
	e.c.socketsOpened.Add(1)
	return en, nil
}

// release drops a reference; the last one arms the idle timer.
func (e *Engine) release(en *entry) {
	e.mu.Lock()
	en.refs--
	if en.refs > 0 {
		e.mu.Unlock()
		return
	}
	if en.gone || e.closed || *e.opts.IdleTimeout == 0 {
		e.closeLocked(en)
		return
	}
	en.idleGen++
	gen := en.idleGen
	en.idle = time.AfterFunc(*e.opts.IdleTimeout, func() {
		e.mu.Lock()
		if en.refs != 0 || en.idleGen != gen || en.gone {
			e.mu.Unlock()
			return
		}
		e.closeLocked(en)
	})
	e.mu.Unlock()
}

// forget removes an entry whose interface vanished or was replaced, so that
// the next check opens a fresh socket; the old one closes with its last user.
func (e *Engine) forget(en *entry) {
	if !en.sock.isBroken() {
		return
	}
	e.mu.Lock()
	e.unlist(en)
	e.mu.Unlock()
}

// unlist takes en out of the table, unless a fresh entry has taken its key
// already, and marks it gone. e.mu is held.
func (e *Engine) unlist(en *entry) {
	if e.socks[en.key] == en {
		delete(e.socks, en.key)
	}
	en.gone = true
}

// closeLocked unlists en, which has no user left, releases e.mu (held on
// entry) and closes en's socket outside the lock.
func (e *Engine) closeLocked(en *entry) {
	e.unlist(en)
	e.mu.Unlock()
	if en.sock != nil {
		_ = en.sock.close()
	}
}
