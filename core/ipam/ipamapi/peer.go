package ipamapi

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// The client believes only a peer it can trust, by the rule of the agent's
// control client (core/control/peer.go; issue 10 item 10): a process
// running as root or as the client's own user; or as another user U
// (systemd's DynamicUser=) when the socket file and its directory belong to
// U, the directory is writable by U alone, and its parent belongs to root
// and is writable by root alone. Written again here with the standard
// library only, so that the CNI plugin links nothing more.

// UntrustedPeerError: the process on the socket is not one to believe.
type UntrustedPeerError struct {
	Path     string
	PID, UID int
	Reason   string
}

func (e *UntrustedPeerError) Error() string {
	return fmt.Sprintf("refusing to trust the process on %s (pid %d, uid %d): %s; "+
		"a spiderpool-agent runs as root, or under its own user in a directory root gave it", e.Path, e.PID, e.UID, e.Reason)
}

// trustPeer reads the peer's credentials (SO_PEERCRED) and applies the rule.
func trustPeer(c *net.UnixConn, path string) error {
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
	return trustCred(int(cred.Pid), int(cred.Uid), os.Geteuid(), path)
}

// trustCred applies the rule to a peer (pid, uid) for a client running as
// euid.
func trustCred(pid, uid, euid int, path string) error {
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

func owner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
