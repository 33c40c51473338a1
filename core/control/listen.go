package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// probeTimeout bounds how long Listen waits for an agent already on the
// socket to answer.
const probeTimeout = time.Second

// maxSocketPath is the longest path a unix socket can be bound to
// (sun_path is 108 bytes with its NUL).
const maxSocketPath = 107

// AlreadyRunningError is Listen's error when a live agent answers on the
// socket.
type AlreadyRunningError struct {
	PID  int
	Path string
}

func (e *AlreadyRunningError) Error() string {
	return fmt.Sprintf("another spiderpool-agent is running (pid %d) on %s", e.PID, e.Path)
}

// Listen opens the control socket at path, mode 0600, creating its
// directory (mode 0750) when missing. A directory that group or others can
// write, or that belongs to anyone but root or this process's user, is
// refused (another user could replace the socket). When the path exists:
//
//   - a socket that a live agent answers on is an *AlreadyRunningError;
//   - a socket nothing listens on (connection refused) is stale and removed;
//   - a socket that answers but not as an agent, or anything that is not a
//     socket, is refused with an error naming the path: Listen never
//     removes what it does not know to be stale.
//
// Closing the listener removes the socket file, unless another process has
// replaced it meanwhile.
func Listen(ctx context.Context, path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket: no path given")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes, a unix socket path has at most %d", path, len(path), maxSocketPath)
	}
	if err := makeDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := checkSocketDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := clearStale(ctx, path); err != nil {
		return nil, err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		// Another agent bound the path between our look and our bind.
		if perr := clearStale(ctx, path); perr != nil {
			return nil, perr
		}
		ln, err = lc.Listen(ctx, "unix", path)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // socketListener removes it, if still ours
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket %s: set mode 0600: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &socketListener{UnixListener: ul, path: path, file: fi}, nil
}

func makeDir(dir string) error {
	_, err := os.Stat(dir)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create control socket directory %s: %w", dir, err)
	}
	// MkdirAll's mode passes through the umask; make the last one exact.
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("control socket directory %s: set mode 0750: %w", dir, err)
	}
	return nil
}

// clearStale makes path free for a new socket, or says why it cannot be.
func clearStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("control socket %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control socket %s: the path exists and is %s, not a socket: refusing to replace it", path, describe(fi.Mode()))
	}

	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	a, err := (&api.Client{SocketPath: path}).Status(pctx)
	switch {
	case err == nil:
		return &AlreadyRunningError{PID: a.PID, Path: path}
	case errors.Is(err, syscall.ECONNREFUSED):
		// Nothing listens: a socket left by an agent that died.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale control socket %s: %w", path, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed meanwhile
	}
	return fmt.Errorf("control socket %s is in use but does not answer as a spiderpool-agent (%v): refusing to replace it", path, err)
}

func describe(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return "a " + m.Type().String() + " file"
}

// socketListener removes its socket file on Close, but only when the path
// still is the socket it created.
type socketListener struct {
	*net.UnixListener
	path string
	file fs.FileInfo
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}
