package control

import (
	"fmt"
	"os"

	"github.com/spiderpool-agent/spiderpool-agent/core/peercred"
)

// Who may answer on the control socket: api.Client trusts the peer by the
// rule of core/peercred (SO_PEERCRED: root, the client's own user, or a
// DynamicUser in a directory root handed over). The daemon's side is
// checkSocketDir: it refuses to start in a directory that others can write.

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
	if o := peercred.Owner(fi); o != 0 && o != os.Geteuid() {
		return fmt.Errorf("control socket directory %s belongs to uid %d: it must belong to root or to the agent's user (uid %d)", dir, o, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("control socket directory %s is writable by group or others (mode %04o): another user could replace the socket; "+
			"use a directory only root or the agent's user can write (chmod go-w %s)", dir, perm, dir)
	}
	return nil
}
