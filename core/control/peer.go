package control

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who may answer on the control socket. With a socket directory that others
// can write, anyone could put a socket of their own on the path, and a
// client that believed it would print a PASS the agent never gave (issue 10
// item 10). So the client asks the kernel who the peer is (SO_PEERCRED) and
// trusts it only when:
//
//   - it runs as root or as the client's own user; or
//   - it runs as another user U (systemd's DynamicUser=, the packaged
//     unit) and the socket file and its directory belong to U, the
//     directory is writable by U alone, and the directory's parent belongs
//     to root and is writable by root alone: then only root can have made
//     that directory and handed it to U (RuntimeDirectory=).
//
// The daemon's side is checkSocketDir: it refuses to start in a directory
// that others can write.

// UntrustedPeerError is the client's error when the process on the socket
// is not one it may believe.
type UntrustedPeerError struct {
	Path     string
	PID, UID int
	Reason   string
}

func (e *UntrustedPeerError) Error() string {
	return fmt.Sprintf("refusing to trust the process on %s (pid %d, uid %d): %s; "+
		"a spiderpool-agent runs as root, or under its own user in a directory root gave it", e.Path, e.PID, e.UID, e.Reason)
}

// peerCred returns the credentials of the process at the other end of c.
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, gerr
}

// trustPeer decides whether the process on c, connected to the socket at
// path, is one the client may believe (see above).
func trustPeer(c *net.UnixConn, path string) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("read the credentials of the process on %s: %w", path, err)
	}
	uid := int(cred.Uid)
	if uid == 0 || uid == os.Geteuid() {
		return nil
	}
	untrusted := func(format string, a ...any) error {
		return &UntrustedPeerError{Path: path, PID: int(cred.Pid), UID: uid, Reason: fmt.Sprintf(format, a...)}
	}
	sock, err := os.Lstat(path)
	if err != nil {
		return untrusted("cannot inspect the socket file: %v", err)
	}
	if owner(sock) != uid {
		return untrusted("the socket file belongs to uid %d", owner(sock))
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return untrusted("cannot inspect the socket directory: %v", err)
	}
	switch {
	case di.Mode().Perm()&0o022 != 0:
		return untrusted("the socket directory %s is writable by group or others (mode %04o)", dir, di.Mode().Perm())
	case owner(di) != uid:
		return untrusted("the socket directory %s belongs to uid %d, not to the process's user", dir, owner(di))
	}
	parent := filepath.Dir(dir)
	pi, err := os.Stat(parent)
	if err != nil {
		return untrusted("cannot inspect %s: %v", parent, err)
	}
	switch {
	case owner(pi) != 0:
		return untrusted("%s, which holds the socket directory, belongs to uid %d, not root", parent, owner(pi))
	case pi.Mode().Perm()&0o022 != 0:
		return untrusted("%s, which holds the socket directory, is writable by group or others (mode %04o)", parent, pi.Mode().Perm())
	}
	return nil
}

func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkSocketDir refuses a socket directory that someone other than root or
// the daemon's own user could write to: another user could then remove the
// socket and put their own in its place, for clients to believe.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control socket directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control socket directory %s is not a directory", dir)
	}
	if o := owner(fi); o != 0 && o != os.Geteuid() {
		return fmt.Errorf("control socket directory %s belongs to uid %d: it must belong to root or to the agent's user (uid %d)", dir, o, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("control socket directory %s is writable by group or others (mode %04o): another user could replace the socket; "+
			"use a directory only root or the agent's user can write (chmod go-w %s)", dir, perm, dir)
	}
	return nil
}
