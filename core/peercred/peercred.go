// Package peercred decides whether a client may believe the process on the
// other end of a unix socket, by its kernel credentials (SO_PEERCRED). The
// agent's control client and the IPAM client of the CNI plugin share it, so
// it uses the standard library only.
//
// With a socket directory that others can write, anyone could put a socket
// of their own on the path, and a client that believed it would print a PASS
// the agent never gave. A peer is trusted only when:
//
//   - it runs as root or as the client's own user; or
//   - it runs as another user U (systemd's DynamicUser=, the packaged unit)
//     and the socket file and its directory belong to U, the directory is
//     writable by U alone, and the directory's parent belongs to root and
//     is writable by root alone: then only root can have made that
//     directory and handed it to U (RuntimeDirectory=).
package peercred

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// UntrustedPeerError is a client's error when the process on the socket is
// not one it may believe.
type UntrustedPeerError struct {
	Path     string
	PID, UID int
	Reason   string
}

func (e *UntrustedPeerError) Error() string {
	return fmt.Sprintf("refusing to trust the process on %s (pid %d, uid %d): %s; "+
		"a spiderpool-agent runs as root, or under its own user in a directory root gave it", e.Path, e.PID, e.UID, e.Reason)
}

// Trust reads the credentials of the process on c, connected to the socket
// at path, and applies the rule for a client running as this process's
// effective user.
func Trust(c *net.UnixConn, path string) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("read the credentials of the process on %s: %w", path, err)
	}
	var (
		cred *syscall.Ucred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		gerr = err
	}
	if gerr != nil {
		return fmt.Errorf("read the credentials of the process on %s: %w", path, gerr)
	}
	return TrustCred(int(cred.Pid), int(cred.Uid), os.Geteuid(), path)
}

// TrustCred applies the rule to a peer (pid, uid) on the socket at path for
// a client running as euid.
func TrustCred(pid, uid, euid int, path string) error {
	if uid == 0 || uid == euid {
		return nil
	}
	untrusted := func(format string, a ...any) error {
		return &UntrustedPeerError{Path: path, PID: pid, UID: uid, Reason: fmt.Sprintf(format, a...)}
	}
	sock, err := os.Lstat(path)
	if err != nil {
		return untrusted("cannot inspect the socket file: %v", err)
	}
	if Owner(sock) != uid {
		return untrusted("the socket file belongs to uid %d", Owner(sock))
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return untrusted("cannot inspect the socket directory: %v", err)
	}
	switch {
	case di.Mode().Perm()&0o022 != 0:
		return untrusted("the socket directory %s is writable by group or others (mode %04o)", dir, di.Mode().Perm())
	case Owner(di) != uid:
		return untrusted("the socket directory %s belongs to uid %d, not to the process's user", dir, Owner(di))
	}
	parent := filepath.Dir(dir)
	pi, err := os.Stat(parent)
	if err != nil {
		return untrusted("cannot inspect %s: %v", parent, err)
	}
	switch {
	case Owner(pi) != 0:
		return untrusted("%s, which holds the socket directory, belongs to uid %d, not root", parent, Owner(pi))
	case pi.Mode().Perm()&0o022 != 0:
		return untrusted("%s, which holds the socket directory, is writable by group or others (mode %04o)", parent, pi.Mode().Perm())
	}
	return nil
}

// Owner is the uid that owns a file, or -1 when the platform does not say.
func Owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
