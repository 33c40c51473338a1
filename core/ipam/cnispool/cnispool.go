// Package cnispool is the node-local spool of CNI DELs that could not reach
// the agent. Runtimes do not retry a failed DEL (Podman logs it and forgets
// the container), so when the CNI plugin cannot deliver a DEL within its
// wait it writes the DEL here instead, and the agent applies the spool when
// it starts - before it serves allocations - and every few seconds while it
// runs.
//
// One file per (container id, interface), named by a hash of the key, so a
// repeated DEL replaces its earlier file and the spool never holds more
// than one DEL per key. Files are written whole (a temporary file, fsync,
// rename, fsync of the directory) with mode 0600. The spool is bounded:
// MaxFiles files of at most MaxFileBytes each; a full spool refuses the DEL
// and says so.
//
// The reader treats every file as hostile: it opens names relative to the
// directory it checked, with O_NOFOLLOW and O_NONBLOCK (a symlink or a FIFO
// put in the spool does nothing), and accepts only a regular file with one
// link, owned by the agent's user, of at most MaxFileBytes, holding exactly
// one strict JSON Record whose key is valid and matches the file's name.
//
// The package links only the standard library, golang.org/x/sys/unix and
// core/api's validation: the CNI plugin, which is exec'd once per workload
// interface, writes the spool.
package cnispool

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// DefaultDir is the spool of the packaged agent and of the plugin unless
// their configurations name another (the agent's ipam.cni_spool_dir, the
// network configuration's ipam.spool_dir): it is under the agent's
// StateDirectory.
const DefaultDir = "/var/lib/spiderpool/cni-spool"

// Bounds of the spool. A record is a few hundred bytes.
const (
	MaxFiles     = 4096
	MaxFileBytes = 4096
	// staleTemp: a temporary file older than this was left by a plugin
	// that died between create and rename; the reader removes it.
	staleTemp = time.Minute
	// maxFuture: a record from the future (beyond clock jitter) would beat
	// every later ADD of its key; it is refused.
	maxFuture = time.Minute
)

const (
	filePrefix = "del-"
	fileSuffix = ".json"
	tempPrefix = ".tmp-"
)

// Record is one spooled DEL.
type Record struct {
	Version     int    `json:"version"` // 1
	ContainerID string `json:"container_id"`
	Interface   string `json:"interface"`
	// Network is the CNI network's name, for the agent's log.
	Network string `json:"network,omitempty"`
	// DeletedAt is when the plugin gave up delivering the DEL: an
	// allocation of the same key made after it is a new ADD that wins.
	DeletedAt time.Time `json:"deleted_at"`
}

// ErrFull is wrapped by Write when the spool holds MaxFiles files.
var ErrFull = errors.New("the CNI spool is full")

// FileName is the spool file of a key.
func FileName(containerID, iface string) string {
	h := sha256.Sum256([]byte(containerID + "\x00" + iface))
	return filePrefix + hex.EncodeToString(h[:20]) + fileSuffix
}

func (r Record) validate() error {
	if r.Version != 1 {
		return fmt.Errorf("version %d, want 1", r.Version)
	}
	if err := (api.AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}).Validate(); err != nil {
		return err
	}
	if len(r.Network) > 256 {
		return errors.New("network: longer than 256 bytes")
	}
	if r.DeletedAt.IsZero() {
		return errors.New("deleted_at: missing")
	}
	return nil
}

// checkDir: the spool directory must be a directory (not a symlink) owned
// by this process's user and writable by nobody else, or anyone could put
// DELs of other workloads in it.
func checkDir(path string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("CNI spool %s is not a directory", path)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("CNI spool %s is owned by uid %d, not by uid %d (this process)", path, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("CNI spool %s is writable by group or others (mode %04o): make it 0700", path, st.Mode&0o7777)
	}
	return nil
}

// openDir opens dir without following a symlink in its last part and
// checks it; create makes it (0700, and its parents) when missing.
func openDir(dir string, create bool) (*os.File, error) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, fmt.Errorf("CNI spool %q is not a clean absolute path", dir)
	}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create the CNI spool: %w", err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open CNI spool", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat CNI spool", Path: dir, Err: err}
	}
	if err := checkDir(dir, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// Write spools rec in dir, replacing an earlier DEL of the same key.
func Write(dir string, rec Record) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("spool a DEL: %w", err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(data) > MaxFileBytes {
		return fmt.Errorf("spool a DEL: the record is %d bytes, more than %d", len(data), MaxFileBytes)
	}
	d, err := openDir(dir, true)
	if err != nil {
		return err
	}
	defer d.Close()
	name := FileName(rec.ContainerID, rec.Interface)
	names, err := d.Readdirnames(MaxFiles + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("list the CNI spool %s: %w", dir, err)
	}
	replaces := false
	for _, n := range names {
		if n == name {
			replaces = true
		}
	}
	if !replaces && len(names) >= MaxFiles {
		return fmt.Errorf("%w: %s holds %d files, the most it takes (is the agent applying it? start it: systemctl start spiderpool-agent)", ErrFull, dir, len(names))
	}
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	tmp := tempPrefix + name + "-" + hex.EncodeToString(rnd)
	dfd := int(d.Fd())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &fs.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = unix.Renameat(dfd, tmp, dfd, name)
	}
	if werr != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), werr)
	}
	// The rename is durable only once the directory is.
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync the CNI spool %s: %w", dir, err)
	}
	return nil
}

// Entry is an accepted spool file.
type Entry struct {
	Name   string
	Record Record
	dev    uint64
	ino    uint64
}

// Refused is a spool file the reader would not accept, and why. Scan has
// removed it (it is nobody's DEL), unless Kept says it could not.
type Refused struct {
	Name string
	Why  string
	Kept error
}

// Scan reads the spool: the DELs to apply, and the files it refused (and
// removed). A missing directory is an empty spool. It never blocks on a
// file and reads at most MaxFiles entries of MaxFileBytes each.
func Scan(dir string, now time.Time) ([]Entry, []Refused, error) {
	d, err := openDir(dir, false)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(MaxFiles + 64)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("list the CNI spool %s: %w", dir, err)
	}
	dfd := int(d.Fd())
	var (
		entries []Entry
		refused []Refused
	)
	for _, name := range names {
		if strings.HasPrefix(name, tempPrefix) {
			var st unix.Stat_t
			if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
				now.Sub(time.Unix(st.Mtim.Unix())) > staleTemp {
				_ = unix.Unlinkat(dfd, name, 0)
			}
			continue
		}
		e, err := readEntry(dfd, name, now)
		if err != nil {
			r := Refused{Name: name, Why: err.Error()}
			if uerr := unix.Unlinkat(dfd, name, 0); uerr != nil && !errors.Is(uerr, unix.ENOENT) {
				r.Kept = uerr
			}
			refused = append(refused, r)
			continue
		}
		entries = append(entries, e)
	}
	return entries, refused, nil
}

// readEntry opens name in the directory dfd and decodes it, refusing
// anything but a small regular file of ours holding one valid record.
func readEntry(dfd int, name string, now time.Time) (Entry, error) {
	if !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
		return Entry{}, errors.New("not a spool file name (del-<hash>.json)")
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return Entry{}, errors.New("a symlink")
		}
		return Entry{}, fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Entry{}, fmt.Errorf("stat: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return Entry{}, fmt.Errorf("not a regular file (mode %o)", st.Mode&unix.S_IFMT)
	case int(st.Uid) != os.Geteuid():
		return Entry{}, fmt.Errorf("owned by uid %d, not %d", st.Uid, os.Geteuid())
	case st.Nlink != 1:
		return Entry{}, fmt.Errorf("has %d links; a spool file has one", st.Nlink)
	case st.Size > MaxFileBytes:
		return Entry{}, fmt.Errorf("%d bytes, more than %d", st.Size, MaxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return Entry{}, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxFileBytes {
		return Entry{}, fmt.Errorf("more than %d bytes", MaxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rec Record
	if err := dec.Decode(&rec); err != nil {
		return Entry{}, fmt.Errorf("not a spool record: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Entry{}, errors.New("not a spool record: more after the JSON object")
	}
	if err := rec.validate(); err != nil {
		return Entry{}, fmt.Errorf("not a spool record: %w", err)
	}
	if FileName(rec.ContainerID, rec.Interface) != name {
		return Entry{}, errors.New("the record's key does not match the file's name")
	}
	if rec.DeletedAt.After(now.Add(maxFuture)) {
		return Entry{}, fmt.Errorf("deleted_at %s is in the future", rec.DeletedAt.Format(time.RFC3339))
	}
	return Entry{Name: name, Record: rec, dev: uint64(st.Dev), ino: st.Ino}, nil
}

// Remove deletes e's file once it is applied, unless the file was replaced
// since Scan read it (a later DEL of the same key, to be applied next).
func Remove(dir string, e Entry) error {
	d, err := openDir(dir, false)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), e.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &fs.PathError{Op: "stat", Path: filepath.Join(dir, e.Name), Err: err}
	}
	if uint64(st.Dev) != e.dev || st.Ino != e.ino {
		return nil
	}
	if err := unix.Unlinkat(int(d.Fd()), e.Name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: filepath.Join(dir, e.Name), Err: err}
	}
	return nil
}
