//go:build linux

package probe

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// nsFile is an open network namespace file and the key of its namespace.
type nsFile struct {
	path string
	fd   int // -1 for the calling thread's own namespace
	key  sockKey
}

func (n *nsFile) close() {
	if n.fd >= 0 {
		_ = unix.Close(n.fd)
		n.fd = -1
	}
}

// openNetns opens the network namespace file at path ("" is the calling
// thread's own) and proves it is one before anything uses it: sdk/netns's
// Open (non-blocking, nsfs, CLONE_NEWNET, checked by descriptor, which
// setns later enters). A path that is not a network namespace is also
// ErrInvalid: a bad request, not a broken node.
func openNetns(path, ifname string) (*nsFile, error) {
	if path == "" {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return nil, fmt.Errorf("%w: own network namespace: %w", ErrNetns, err)
		}
		return &nsFile{fd: -1, key: sockKey{dev: st.Dev, ino: st.Ino, ifname: ifname}}, nil
	}
	fd, err := netns.Open(path)
	switch {
	case errors.Is(err, netns.ErrNotNetns):
		return nil, fmt.Errorf("%w: %w: %w", ErrNetns, ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrNetns, err)
	}
	n := &nsFile{path: path, fd: fd}
	// The device and inode name the namespace.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		n.close()
		return nil, fmt.Errorf("%w: stat %s: %w", ErrNetns, path, err)
	}
	n.key = sockKey{dev: st.Dev, ino: st.Ino, ifname: ifname}
	return n, nil
}
