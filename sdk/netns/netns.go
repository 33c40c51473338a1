//go:build linux

// Package netns runs a function inside a network namespace given by path,
// such as a CheckRequest's Netns (/var/run/netns/NAME, /proc/PID/ns/net).
//
// A network namespace belongs to an OS thread, not to a goroutine, and the
// Go scheduler moves goroutines between threads; so Do runs the function on
// a goroutine locked to its own thread, which joins the namespace first and
// goes back afterwards. Should going back fail, the thread is never unlocked,
// and the Go runtime ends it with the goroutine instead of reusing a thread
// left in the wrong namespace. The path is opened non-blocking (a FIFO put
// there cannot hang the plugin) and must be a network namespace file of
// nsfs before setns is called.
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
	target, err := open(path)
	if err != nil {
		return err
	}
	defer unix.Close(target)

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, clean := run(path, target, fn)
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

// nsfsMagic is NSFS_MAGIC from linux/magic.h.
const nsfsMagic = 0x6e736673

// open opens path and checks that it is a network namespace.
func open(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, fmt.Errorf("netns: open %s: %w", path, err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netns: statfs %s: %w", path, err)
	}
	if fs.Type != nsfsMagic {
		unix.Close(fd)
		return -1, fmt.Errorf("netns: %s: %w (not a namespace file of nsfs)", path, ErrNotNetns)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netns: %s: namespace type: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, fmt.Errorf("netns: %s: %w (another kind of namespace)", path, ErrNotNetns)
	}
	return fd, nil
}
