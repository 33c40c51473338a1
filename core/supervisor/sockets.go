package supervisor

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// go-plugin gives every plugin process a directory of its own for its
// unix socket (os.MkdirTemp(TempDir, "plugin-dir")) and removes it in
// Client.Kill. An agent killed with -9 never calls Kill, and its plugins'
// directories stayed in /tmp for ever, one set per agent life. So the
// agent makes one directory of its own, named with its pid, that holds
// its plugins' directories, and sweeps those of dead agents at start, as
// sweep does for the plugin cgroups.

// socketDirPrefix starts the name of an agent's socket directory under
// os.TempDir(): spiderpool-plugins-<agent pid>. Short, because a unix
// socket path has at most 107 bytes and go-plugin puts
// plugin-dir<n>/plugin<n> below it. Every Supervisor of a process shares
// it (go-plugin's directories below are unique).
const socketDirPrefix = "spiderpool-plugins-"

// goPluginSocketTail is the longest path go-plugin adds below TempDir
// for a socket (os.MkdirTemp and os.CreateTemp add up to 10 digits).
const goPluginSocketTail = len("/plugin-dir0123456789/plugin0123456789")

// maxSocketPath is the longest unix socket path Linux takes (sun_path,
// with its terminating NUL).
const maxSocketPath = 107

// sweepBatch bounds the directory entries read at once while sweeping.
const sweepBatch = 256

// makeSocketDir creates this agent's socket directory (mode 0700) and
// returns its path, or "" when it cannot: go-plugin then uses
// os.TempDir() itself, as it would without this agent's help.
func makeSocketDir(log hclog.Logger) string {
	dir := filepath.Join(os.TempDir(), socketDirPrefix+strconv.Itoa(os.Getpid()))
	if len(dir)+goPluginSocketTail > maxSocketPath {
		log.Warn("the temporary directory's path is too long for a socket directory of the agent's own: plugins' sockets go to the temporary directory, where a kill -9 leaves them", "dir", os.TempDir())
		return ""
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) && ownDir(dir) {
		// Another Supervisor of this process made it, or an earlier
		// process with this pid (a reboot that kept /tmp) left it:
		// either way this user's, and go-plugin's directories below
		// are unique.
		err = nil
	}
	if err != nil {
		log.Warn("no socket directory of the agent's own: plugins' sockets go to the temporary directory, where a kill -9 leaves them", "error", err)
		return ""
	}
	return dir
}

// ownDir says whether path is a directory itself (not a symlink to one)
// owned by this process's user: one an agent of this user made.
func ownDir(path string) bool {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Uid == uint32(os.Geteuid())
}

// socketDirPID reads the agent's pid from the name of a socket directory.
func socketDirPID(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, socketDirPrefix)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != s {
		return 0, false
	}
	return pid, true
}

// sweepSocketDirs removes the socket directories that agents which died
// without stopping (kill -9, a crash) left in os.TempDir(). It leaves
// alone this agent's own, that of an agent still running (its pid is
// alive: another agent on this host, as in tests), anything that is not
// a directory of this user (a symlink planted under such a name, another
// user's directory), and everything not named like one. os.RemoveAll
// does not follow symlinks inside. It returns how many it removed.
func sweepSocketDirs(log hclog.Logger) int {
	tmp := os.TempDir()
	d, err := os.Open(tmp)
	if err != nil {
		return 0
	}
	defer d.Close()
	n := 0
	for {
		ents, err := d.ReadDir(sweepBatch)
		for _, e := range ents {
			pid, ok := socketDirPID(e.Name())
			if !ok || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
				continue
			}
			path := filepath.Join(tmp, e.Name())
			if !ownDir(path) {
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				log.Warn("could not remove a dead agent's plugin socket directory", "dir", path, "error", err)
				continue
			}
			n++
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warn("could not read the temporary directory for dead agents' plugin sockets", "dir", tmp, "error", err)
			}
			return n
		}
	}
}
