// Package boltstore is IPAM's embedded store: one bbolt file per node
// (default /var/lib/spiderpool/ipam.db), implementing ipam.Store.
//
// Every Commit is applied in one bbolt read-write transaction, fsync'd
// before it returns, so a kill -9 at any point leaves either the whole
// commit or none of it. Commits that run at the same time share a
// transaction (bbolt's Batch) and so one fsync; each still sees the ones
// before it, and a failed condition fails only its own commit. Revisions are a store-wide counter kept in the same file,
// bumped once per commit, like etcd's. The file is locked (flock) while
// open: a second agent on the same file waits OpenTimeout and then fails
// with an error naming the process that holds it.
package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// DefaultPath is the store file of the packaged agent (systemd's
// StateDirectory=spiderpool).
const DefaultPath = "/var/lib/spiderpool/ipam.db"

// DefaultOpenTimeout bounds the wait for another process's lock.
const DefaultOpenTimeout = 2 * time.Second

// formatVersion is the layout of the file; a newer one is refused.
//
//	1: address records keyed per pool (pools/<pool>/addrs/<address>)
//	2: address records keyed per layer-2 domain (domains/<domain>/addrs/<address>)
//
// Open moves a format 1 file's records (ipam.MigrateKeys) and only then
// writes 2, so an agent that reads only format 1 refuses a moved file
// rather than seeing every address free, and a file whose move was refused
// is still a format 1 file the previous agent can open.
const formatVersion = 2

// formatPerPool is the format whose address records MigrateKeys moves.
const formatPerPool = 1

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("revision")
	keyFormat  = []byte("format")
)

// Store is an open bbolt file.
type Store struct {
	db   *bolt.DB
	path string
	// inflight counts Commits running: when there are several, they go
	// through the group commit (batch) and share one fsync.
	inflight atomic.Int64
	batch    batcher
	// failed is set, for good, by the first panic bbolt raised on this
	// file (a damaged page): every later call returns it.
	failed atomic.Pointer[error]
	// migrated counts the address records Open moved to the per-domain
	// layout.
	migrated int
}

// batchDelay is how long a commit waits for others to join its batch,
// only when other commits are in flight: an fsync costs more.
const batchDelay = time.Millisecond

var _ ipam.Store = (*Store)(nil)

// Options of Open.
type Options struct {
	// OpenTimeout bounds the wait for the file lock; 0 is DefaultOpenTimeout.
	OpenTimeout time.Duration
	// ReadOnly opens an existing file for reading under a shared lock
	// (offline checks): a running agent's exclusive lock makes it wait
	// OpenTimeout and fail naming that agent.
	ReadOnly bool
}

// Open opens the store at path, creating it (with its directory, mode
// 0700) only when the file does not exist. An existing file is verified
// before it is used: an empty, truncated or foreign file, or one that
// fails bbolt's consistency check, is refused with ErrDamaged - never
// re-initialised, since an empty store would hand out every address again.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("IPAM store: no path (ipam.db_path)")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("IPAM store %s: create its directory: %w", path, err)
		}
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("IPAM store %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	lk := &locker{timeout: opts.OpenTimeout, shared: opts.ReadOnly}
	var db *bolt.DB
	err := guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout, ReadOnly: opts.ReadOnly, OpenFile: lk.open})
		return err
	})
	var p *panicError
	switch {
	case err == nil:
	case errors.As(err, &p):
		// bbolt panicked half-way through Open: its *DB is lost, the file
		// (and its lock) is ours to close.
		lk.close()
		return nil, damaged(path, p.Error())
	case errors.Is(err, errLocked), errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("IPAM store %s is locked by %s; waited %v (is another spiderpool-agent running with the same ipam.db_path?)", path, holder(path), opts.OpenTimeout)
	case errors.Is(err, errEmpty):
		return nil, damaged(path, "the file is empty (0 bytes)")
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch),
		strings.Contains(err.Error(), "file size too small"):
		return nil, damaged(path, fmt.Sprintf("not a readable bbolt file (%v)", err))
	default:
		return nil, fmt.Errorf("IPAM store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	fresh := lk.created
	if !fresh {
		if fresh, err = s.verify(context.Background()); err != nil {
			db.Close()
			return nil, err
		}
	}
	if opts.ReadOnly {
		if fresh {
			db.Close()
			return nil, fmt.Errorf("IPAM store %s holds no store yet", path)
		}
		s.releaseMap()
		return s, nil
	}
	format := uint64(formatVersion)
	err = s.guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			if !fresh {
				// verify saw both buckets.
				var ferr error
				format, ferr = checkFormat(tx.Bucket(bucketMeta))
				return ferr
			}
			if _, err := tx.CreateBucketIfNotExists(bucketKV); err != nil {
				return err
			}
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			return meta.Put(keyFormat, u64(formatVersion))
		})
	})
	if err == nil && format == formatPerPool {
		err = s.migrate()
	}
	if err != nil {
		db.Close()
		if errors.Is(err, ErrDamaged) {
			return nil, err
		}
		return nil, fmt.Errorf("IPAM store %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	// verify read every page; the agent keeps only what it reads later.
	s.releaseMap()
	return s, nil
}

// checkFormat reads the file's format version: one this agent reads
// (formatPerPool files are migrated by Open), or an error.
func checkFormat(meta *bolt.Bucket) (uint64, error) {
	v := meta.Get(keyFormat)
	if len(v) != 8 {
		return 0, errors.New("the file has no valid format version")
	}
	f := binary.BigEndian.Uint64(v)
	if f > formatVersion || f < formatPerPool {
		return 0, fmt.Errorf("the file has format %d; this agent reads formats %d-%d: upgrade the agent", f, formatPerPool, formatVersion)
	}
	return f, nil
}

// migrate moves a format 1 file's address records to the per-domain
// layout, then records format 2.
func (s *Store) migrate() error {
	n, err := ipam.MigrateKeys(context.Background(), s)
	s.migrated = n
	if err != nil {
		return err
	}
	return s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyFormat, u64(formatVersion))
		})
	})
}

// Migrated is how many address records Open moved from the per-pool to the
// per-domain layout (0 for a file already in it).
func (s *Store) Migrated() int { return s.migrated }

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// holder names the process holding a lock on path, from /proc/locks.
func holder(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "another process"
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "another process"
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
	want := fmt.Sprintf(":%d", st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || !strings.HasSuffix(fields[5], want) {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if name := strings.TrimSpace(string(comm)); name != "" {
			return fmt.Sprintf("pid %d (%s)", pid, name)
		}
		return fmt.Sprintf("pid %d", pid)
	}
	return "another process"
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// value layout: 8 bytes revision, then the value.
func encode(rev int64, v []byte) []byte {
	out := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(out, uint64(rev))
	copy(out[8:], v)
	return out
}

func decode(key, raw []byte) (ipam.Entry, error) {
	if err := checkRecord(key, raw); err != nil {
		return ipam.Entry{}, err
	}
	return ipam.Entry{Key: string(key), Revision: int64(binary.BigEndian.Uint64(raw)), Value: bytes.Clone(raw[8:])}, nil
}

// checkRecord is decode's check without its copy of the value: Open's
// verify walks every record and keeps none.
func checkRecord(key, raw []byte) error {
	if len(raw) < 8 {
		return fmt.Errorf("record %q is corrupt (%d bytes)", key, len(raw))
	}
	return nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrapErr(s.guard(func() error { return s.db.View(fn) }))
}

// wrapErr words bbolt's "closed" as the Store contract's.
func (s *Store) wrapErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %s", ipam.ErrStoreClosed, s.path)
	}
	return err
}

// Get implements ipam.Store.
func (s *Store) Get(ctx context.Context, key string) (ipam.Entry, error) {
	var e ipam.Entry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			e = ipam.Entry{Key: key}
			return nil
		}
		var err error
		e, err = decode([]byte(key), raw)
		return err
	})
	return e, err
}

// List implements ipam.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]ipam.Entry, error) {
	var out []ipam.Entry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = list(ctx, tx, prefix)
		size := 0
		for _, e := range out {
			size += len(e.Value)
		}
		if size >= releaseAfter {
			s.releaseMapIn(tx)
		}
		return err
	})
	return out, err
}

func list(ctx context.Context, tx *bolt.Tx, prefix string) ([]ipam.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []ipam.Entry
	c := tx.Bucket(bucketKV).Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		e, err := decode(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Commit implements ipam.Store: one read-write transaction, durable when
// it returns.
func (s *Store) Commit(ctx context.Context, conds []ipam.Cond, ops []ipam.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for _, op := range ops {
		if op.Key == "" || strings.IndexByte(op.Key, 0) >= 0 {
			return 0, fmt.Errorf("IPAM store: invalid key %q", op.Key)
		}
	}
	update := s.update
	if s.inflight.Add(1) > 1 {
		// A batch may run fn more than once (and rolls a batch back when
		// one fn fails, re-running that one alone): fn only sets rev.
		update = s.batchUpdate
	}
	defer s.inflight.Add(-1)
	var rev int64
	err := update(func(tx *bolt.Tx) error {
		kv, meta := tx.Bucket(bucketKV), tx.Bucket(bucketMeta)
		for _, c := range conds {
			var have int64
			if raw := kv.Get([]byte(c.Key)); raw != nil {
				e, err := decode([]byte(c.Key), raw)
				if err != nil {
					return err
				}
				have = e.Revision
			}
			if have != c.Revision {
				return fmt.Errorf("%w: %s is at revision %d, expected %d", ipam.ErrCompareFailed, c.Key, have, c.Revision)
			}
		}
		var cur uint64
		if v := meta.Get(keyRev); v != nil {
			cur = binary.BigEndian.Uint64(v)
		}
		rev = int64(cur + 1)
		for _, op := range ops {
			if op.Delete {
				if err := kv.Delete([]byte(op.Key)); err != nil {
					return err
				}
				continue
			}
			if err := kv.Put([]byte(op.Key), encode(rev, op.Value)); err != nil {
				return err
			}
		}
		return meta.Put(keyRev, u64(uint64(rev)))
	})
	err = s.wrapErr(err)
	if errors.Is(err, ipam.ErrStoreClosed) || errors.Is(err, ErrDamaged) {
		return 0, err
	}
	if err != nil && !errors.Is(err, ipam.ErrCompareFailed) {
		return 0, fmt.Errorf("IPAM store %s: commit: %w", s.path, err)
	}
	return rev, err
}
