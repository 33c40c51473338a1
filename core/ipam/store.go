package ipam

import (
	"context"
	"errors"
	"time"
)

// Store is where IPAM keeps its records. It is a small revisioned
// key-value store with atomic multi-key commits guarded by compare
// conditions - the shape of etcd's transactions - so that the embedded
// bbolt store (boltstore) and a shared etcd store implement the same thing:
//
//   - every key has a revision: the store-wide revision of the commit that
//     last wrote it (etcd's ModRevision); 0 means the key does not exist;
//   - Commit applies all its operations or none, and only if every Cond
//     holds (Cond{Key, Revision: 0} = "must not exist", etcd's
//     CreateRevision == 0; Cond{Key, Revision: r} = "unchanged since r",
//     etcd's ModRevision == r); otherwise it returns an error wrapping
//     ErrCompareFailed and changes nothing;
//   - a commit that returned nil is durable (fsync'd, or acknowledged by a
//     quorum).
//
// IPAM owns the key layout (see keys.go) and the JSON values; a store
// never interprets them. Keys are printable and contain no NUL.
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the entry at key; an absent key is an Entry with
	// Revision 0 and no error.
	Get(ctx context.Context, key string) (Entry, error)
	// List returns every entry whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Entry, error)
	// Commit applies ops atomically if every cond holds and returns the
	// revision it wrote (the new revision of every key it put).
	Commit(ctx context.Context, conds []Cond, ops []Op) (int64, error)
	// Close releases the store. Calls after Close fail.
	Close() error
}

// Entry is one key with its value and revision.
type Entry struct {
	Key   string
	Value []byte
	// Revision is the revision of the commit that last wrote the key; 0
	// when the key does not exist.
	Revision int64
}

// Cond is a compare condition of a Commit: the key's revision must equal
// Revision (0: the key must not exist).
type Cond struct {
	Key      string
	Revision int64
}

// Op is one write of a Commit: a put of Value, or a delete when Delete is
// set (deleting an absent key is not an error).
type Op struct {
	Key    string
	Value  []byte
	Delete bool
	// TTL, when positive, says the record is worthless after this long
	// (quarantine). IPAM checks expiry itself from the value, so a store
	// may ignore TTL (boltstore does); a shared store may attach a lease
	// so that the key disappears on its own.
	TTL time.Duration
}

// ErrCompareFailed is wrapped by Commit when a Cond did not hold: another
// writer got there first. IPAM re-reads and retries up to
// ipam.update_max_retries times.
var ErrCompareFailed = errors.New("store: a compare condition failed")

// ErrStoreClosed is wrapped by calls on a closed store.
var ErrStoreClosed = errors.New("store: closed")

// ErrOutcomeUnknown is wrapped by a Commit that was sent but got no
// answer: it may or may not have been applied. IPAM re-reads the key every
// writer compares (the attachment) before retrying, so that an allocation
// is neither duplicated nor lost.
var ErrOutcomeUnknown = errors.New("store: commit outcome unknown")
