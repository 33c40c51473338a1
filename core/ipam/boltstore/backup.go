package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// Check is the whole check of a store: bbolt's consistency check, then
// IPAM's (ipam.Consistent: no address held twice, every record agrees with
// its attachment) on one snapshot, so that commits running meanwhile cannot
// show as a disagreement. It returns how many records the snapshot holds.
func (s *Store) Check(ctx context.Context) (records int, err error) {
	if err := s.Verify(ctx); err != nil {
		return 0, err
	}
	err = s.Snapshot(ctx, func(snap ipam.Store) error {
		all, err := snap.List(ctx, "")
		records = len(all)
		if err != nil {
			return err
		}
		return ipam.Consistent(ctx, snap)
	})
	return records, err
}

// Snapshot calls fn with a read-only Store over one read transaction: what
// fn reads is the store at one revision. Its Commit fails.
func (s *Store) Snapshot(ctx context.Context, fn func(ipam.Store) error) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return fn(&snapshot{tx: tx, path: s.path}) })
}

type snapshot struct {
	tx   *bolt.Tx
	path string
}

func (s *snapshot) Get(ctx context.Context, key string) (ipam.Entry, error) {
	if err := ctx.Err(); err != nil {
		return ipam.Entry{}, err
	}
	raw := s.tx.Bucket(bucketKV).Get([]byte(key))
	if raw == nil {
		return ipam.Entry{Key: key}, nil
	}
	return decode([]byte(key), raw)
}

func (s *snapshot) List(ctx context.Context, prefix string) ([]ipam.Entry, error) {
	return list(ctx, s.tx, prefix)
}

func (s *snapshot) Commit(context.Context, []ipam.Cond, []ipam.Op) (int64, error) {
	return 0, fmt.Errorf("IPAM store %s: a snapshot is read-only", s.path)
}

func (s *snapshot) Close() error { return nil }

// BackupInfo describes a backup written.
type BackupInfo struct {
	Path     string
	Bytes    int64
	Revision int64
}

// ctxWriter stops a copy when its context ends: a backup is bounded.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Backup writes a consistent copy of the store to path while it is in use
// (bbolt's tx.WriteTo in one read transaction; commits go on): into a
// temporary file next to path, mode 0600, fsync'd and verified by opening it
// as Open would, then renamed over path. An existing path is refused unless
// force, and is never the store's own file.
func (s *Store) Backup(ctx context.Context, path string, force bool) (BackupInfo, error) {
	if !filepath.IsAbs(path) {
		return BackupInfo{}, fmt.Errorf("backup file %q: give an absolute path", path)
	}
	path = filepath.Clean(path)
	if err := refuseTarget(path, s.path, force); err != nil {
		return BackupInfo{}, err
	}
	var info BackupInfo
	err := installFile(path, func(tmp *os.File) error {
		return s.view(ctx, func(tx *bolt.Tx) error {
			n, err := tx.WriteTo(ctxWriter{ctx: ctx, w: tmp})
			info.Bytes = n
			if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
				info.Revision = int64(binary.BigEndian.Uint64(v))
			}
			return err
		})
	}, nil)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("back up IPAM store %s to %s: %w", s.path, path, err)
	}
	info.Path = path
	return info, nil
}

// refuseTarget refuses to write over an existing file unless force, over
// anything but a regular file, and over the store itself.
func refuseTarget(path, store string, force bool) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file (%s)", path, fi.Mode().Type())
	}
	if st, err := os.Stat(store); err == nil && os.SameFile(fi, st) {
		return fmt.Errorf("%s is the IPAM store itself (ipam.db_path): give another file", path)
	}
	if !force {
		return fmt.Errorf("%s exists: give --force to replace it", path)
	}
	return nil
}

// installFile writes a file at path atomically: fill writes a temporary
// file in path's directory (mode 0600), which is fsync'd, checked by
// verify when given, and renamed over path; the directory is fsync'd so
// that the rename survives a crash. On failure the temporary file goes.
func installFile(path string, fill func(*os.File) error, verify func(tmp string) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := checkCopy(tmp.Name()); err != nil {
		return err
	}
	if verify != nil {
		if err := verify(tmp.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkCopy opens a copy as the agent would and runs its check, so that a
// bad copy is never installed.
func checkCopy(path string) error {
	c, err := Open(path, Options{ReadOnly: true, OpenTimeout: time.Second})
	if err != nil {
		return fmt.Errorf("the copy does not verify: %w", err)
	}
	return c.Close()
}

// Restore installs the backup file at dbPath, offline: the backup is copied
// next to dbPath, the copy is verified (bbolt's check, then check, given
// the copy open; ipam.Consistent, or nil to skip it) and renamed over
// dbPath while holding dbPath's lock, so that an agent running on it makes
// Restore fail naming its pid, and an agent starting meanwhile opens the
// restored file (Open re-opens a file replaced while it waited).
func Restore(backup, dbPath string, check func(ipam.Store) error) (err error) {
	if dbPath == "" {
		return errors.New("no IPAM store path (ipam.db_path)")
	}
	src, err := os.Open(backup)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("backup %s: not a regular file", backup)
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fmt.Errorf("IPAM store %s: create its directory: %w", dbPath, err)
	}
	if fi, err := os.Lstat(dbPath); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("IPAM store %s: not a regular file (%s)", dbPath, fi.Mode().Type())
	}
	if st, err := os.Stat(dbPath); err == nil {
		if bi, err := src.Stat(); err == nil && os.SameFile(st, bi) {
			return fmt.Errorf("backup %s is the IPAM store itself", backup)
		}
	}
	// The store's lock, held until the rename is done. A missing store
	// file is created empty for the lock (the rename replaces it).
	lk, created, err := openNoFollow(dbPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("IPAM store %s: %w", dbPath, err)
	}
	defer lk.Close()
	defer func() {
		// An empty file left at dbPath would be refused at the next start.
		if err != nil && created && sameFile(lk, dbPath) {
			os.Remove(dbPath)
		}
	}()
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("IPAM store %s is in use by %s: stop the agent first (systemctl stop spiderpool-agent)", dbPath, holder(dbPath))
		}
		return fmt.Errorf("IPAM store %s: lock: %w", dbPath, err)
	}
	err = installFile(dbPath, func(tmp *os.File) error {
		// The agent may run as another user than the one restoring
		// (systemd's DynamicUser): the copy gets the owner of the file it
		// replaces, or of the directory.
		owner, err := os.Stat(dbPath)
		if err != nil || owner.Size() == 0 {
			owner, err = os.Stat(filepath.Dir(dbPath))
		}
		if err != nil {
			return err
		}
		if st, ok := owner.Sys().(*syscall.Stat_t); ok {
			if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		_, err = io.Copy(tmp, src)
		return err
	}, func(tmp string) error {
		if check == nil {
			return nil
		}
		c, err := Open(tmp, Options{ReadOnly: true, OpenTimeout: time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := check(c); err != nil {
			return fmt.Errorf("backup %s: %w", backup, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore %s to %s: %w", backup, dbPath, err)
	}
	return nil
}
