//go:build linux

// Package netns runs a function inside a network namespace given by path,
// such as a CheckRequest's Netns (/var/run/netns/NAME, /proc/PID/ns/net).
//
// A network namespace belongs to an OS thread, not to a goroutine, and the
// Go scheduler moves goroutines between threads; so Do runs the function on
// a goroutine locked to its own thread, which joins the namespace first and
// goes back afterwards. Should going back fail, the thread is never unlocked,
// and the Go runtime ends it with the goroutine instead of reusing a thread
// left in the wrong namespace. The path is opened with Open: non-blocking
// (a FIFO put there cannot hang the plugin), and it must be a network
// namespace file of nsfs before setns is called. DoAt does the same for a
// namespace the caller has already opened with Open.
//
// Sockets opened inside the function keep working in that namespace after
// Do returns, on any thread: a detector may open its socket with Do and use
// it outside.
package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNotNetns is wrapped by Do when path is not a network namespace.
var ErrNotNetns = errors.New("not a network namespace")

// Do runs fn in the network namespace at path and returns fn's error. An
// empty path runs fn in the caller's namespace. fn runs on a goroutine of
// its own; it must not start goroutines that expect to stay in the
// namespace (new goroutines run on any thread).
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := Open(path)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer unix.Close(target)
	return DoAt(target, path, fn)
}

// DoAt is Do for a network namespace already open at fd, as Open returns
// it; name, its path, appears in errors only. The caller keeps and closes
// fd. It exists for a caller that opened and checked a namespace with Open
// and keeps that file (to key a cache by its inode, say): entering the
// descriptor it checked enters the namespace it checked, where a second
// Open of the path would enter whatever the path names by then.
//
// The error is fn's, unchanged, when the thread went in and came back.
// When the thread could not go in, fn did not run and the error says why
// ("netns: enter NAME: ..."). When it could not come back, fn ran, its
// error is joined with "netns: return from NAME: ...", and the thread is
// discarded.
func DoAt(fd int, name string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, clean := run(name, fd, fn)
		if clean {
			runtime.UnlockOSThread()
		}
		// Otherwise the goroutine ends locked and the runtime ends the
		// thread with it.
		done <- err
	}()
	return <-done
}

// run joins the namespace on the locked thread, calls fn, and goes back.
// clean is false when the thread could not be put back.
func run(path string, target int, fn func() error) (err error, clean bool) {
	back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open this thread's namespace: %w", err), true
	}
	defer unix.Close(back)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: enter %s: %w", path, err), true
	}
	ferr := fn()
	if err := unix.Setns(back, unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("netns: return from %s: %w (the thread is discarded)", path, err)), false
	}
	return ferr, true
}

// NotNetnsError is Open's error for a path that opened but is not a
// network namespace; errors.Is(err, ErrNotNetns) holds for it. Kind says
// what the path is instead: "a FIFO", "a directory", "a UTS namespace".
type NotNetnsError struct {
	Path string
	Kind string
}

func (e *NotNetnsError) Error() string {
	return fmt.Sprintf("%s is %s, not a network namespace", e.Path, e.Kind)
}

// Is makes errors.Is(err, ErrNotNetns) hold.
func (e *NotNetnsError) Is(target error) bool { return target == ErrNotNetns }

// Open opens the network namespace file at path (/var/run/netns/NAME,
// /proc/PID/ns/net) and proves it is one before anything uses it. The
// caller closes the descriptor; setns(fd, CLONE_NEWNET) enters it.
//
// Every path comes from a request, so it is hostile until checked: a FIFO
// would block a plain open(2) for ever (pinning an OS thread each time), a
// device or a regular file would make setns fail only after the thread
// changed state. So the file is opened O_NONBLOCK (a FIFO opens at once,
// with no writer) and O_CLOEXEC, then checked by descriptor, not by path:
// it must live on nsfs (fstatfs NSFS_MAGIC) and be a network namespace
// (NS_GET_NSTYPE == CLONE_NEWNET). Symlinks are followed: /proc/PID/ns/net
// is a magic link, and whatever a link points at faces the same checks.
// The descriptor is what the caller enters, so the path cannot be swapped
// between the check and the use. A path that is not a network namespace is
// a *NotNetnsError naming what it is.
func Open(path string) (int, error) {
	fd, err := openNonblock(path)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	if err := verify(fd, path); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func openNonblock(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// verify checks that fd is a network namespace file.
func verify(fd int, path string) error {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		return &NotNetnsError{Path: path, Kind: fileKind(st.Mode) + " (not a namespace file of nsfs)"}
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	switch {
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL):
		// A kernel before 4.11: nsfs, but of unknown type; setns with
		// CLONE_NEWNET refuses any other type.
	case err != nil:
		return fmt.Errorf("namespace type of %s: %w", path, err)
	case t != unix.CLONE_NEWNET:
		return &NotNetnsError{Path: path, Kind: "a " + nsTypeName(t) + " namespace"}
	}
	return nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "an unknown kind of file"
}

func nsTypeName(t int) string {
	switch t {
	case unix.CLONE_NEWNS:
		return "mount"
	case unix.CLONE_NEWUTS:
		return "UTS"
	case unix.CLONE_NEWIPC:
		return "IPC"
	case unix.CLONE_NEWUSER:
		return "user"
	case unix.CLONE_NEWPID:
		return "PID"
	case unix.CLONE_NEWCGROUP:
		return "cgroup"
	case unix.CLONE_NEWTIME:
		return "time"
	}
	return fmt.Sprintf("type %#x", t)
}
