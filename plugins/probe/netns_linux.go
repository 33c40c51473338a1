//go:build linux

package probe

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
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
// thread's own) and proves it is one before anything uses it.
//
// Every path comes from a request, so it is hostile until checked: a FIFO
// would block a plain open(2) for ever (pinning an OS thread each time), a
// device or a regular file would make setns fail only after the thread
// changed state. So the file is opened O_NONBLOCK (a FIFO opens at once,
// with no writer) and O_CLOEXEC, then checked by descriptor, not by path:
// it must live on nsfs (fstatfs NSFS_MAGIC) and be a network namespace
// (NS_GET_NSTYPE == CLONE_NEWNET). Symlinks are followed: /proc/PID/ns/net
// is a magic link, and whatever a link points at faces the same checks.
// The descriptor is what setns later enters, so the path cannot be swapped
// between the check and the use.
func openNetns(path, ifname string) (*nsFile, error) {
	if path == "" {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return nil, fmt.Errorf("%w: own network namespace: %w", ErrNetns, err)
		}
		return &nsFile{fd: -1, key: sockKey{dev: st.Dev, ino: st.Ino, ifname: ifname}}, nil
	}
	fd, err := openNonblock(path)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrNetns, path, err)
	}
	n := &nsFile{path: path, fd: fd}
	st, err := n.verify()
	if err != nil {
		n.close()
		return nil, err
	}
	n.key = sockKey{dev: st.Dev, ino: st.Ino, ifname: ifname}
	return n, nil
}

func openNonblock(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// verify checks that n.fd is a network namespace and returns its stat,
// whose device and inode name the namespace.
func (n *nsFile) verify() (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(n.fd, &st); err != nil {
		return st, fmt.Errorf("%w: stat %s: %w", ErrNetns, n.path, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(n.fd, &sfs); err != nil {
		return st, fmt.Errorf("%w: statfs %s: %w", ErrNetns, n.path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return st, fmt.Errorf("%w: %w: %s is %s, not a namespace file (nsfs)", ErrNetns, ErrInvalid, n.path, fileKind(st.Mode))
	}
	t, err := unix.IoctlRetInt(n.fd, unix.NS_GET_NSTYPE)
	switch {
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL):
		// A kernel before 4.11: nsfs, but of unknown type; setns with
		// CLONE_NEWNET refuses any other type.
	case err != nil:
		return st, fmt.Errorf("%w: namespace type of %s: %w", ErrNetns, n.path, err)
	case t != unix.CLONE_NEWNET:
		return st, fmt.Errorf("%w: %w: %s is a %s namespace, not a network namespace", ErrNetns, ErrInvalid, n.path, nsTypeName(t))
	}
	return st, nil
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
