package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// execFDMin is the lowest descriptor number the binary is kept at in the
// agent. os/exec renumbers the child's descriptors 0..len(ExtraFiles)+2 and
// borrows the numbers just above them while it shuffles; a descriptor this
// high is never one of those, so /proc/self/fd/N still names the binary when
// the child calls execve.
const execFDMin = 100

// execChildFD is the binary's descriptor in the plugin process: the second
// ExtraFiles entry, after the lifeline at 3.
const execChildFD = 4

// trustedBinary is a plugin binary opened once: the descriptor that was
// checked (and hashed) is the one that is executed, so that swapping the
// file or a symlink to it after the check changes nothing.
type trustedBinary struct {
	file *os.File // O_RDONLY|O_CLOEXEC, at execFDMin or above
	// wouldRefuse is why the daemon would refuse this binary, when it was
	// opened for a command that runs a binary its user named (see
	// Options.UserNamed); empty when the binary passes the rule.
	wouldRefuse string
}

// execPath is what exec.Cmd.Path must be to run exactly this descriptor
// when it is handed to the child as descriptor childFD (an ExtraFiles
// entry). execve resolves /proc/self/fd/N in the child, after the fork, so
// the path names the checked file there. The descriptor stays open in the
// plugin (without O_CLOEXEC): a script's interpreter opens the script by
// that same path after execve, which a close-on-exec descriptor would not
// survive (the fexecve-and-scripts problem).
func (b *trustedBinary) execPath(childFD int) string {
	return fmt.Sprintf("/proc/self/fd/%d", childFD)
}

func (b *trustedBinary) Close() error { return b.file.Close() }

// openBinary opens the plugin binary at path for execution, in the way
// sshd's StrictModes treats authorized_keys: the file must be a regular,
// executable file owned by root or by the agent's own user and writable by
// nobody else, and so must every directory above it, both along the path
// as written and along the path with its symlinks resolved. A sticky
// world-writable directory such as /tmp is refused too: whoever can create
// a name in it can put a symlink where the plugin is expected. When want
// is set ("sha256:<hex>") the descriptor's content must have that digest.
// Every failure is permanent: it names the path and what is wrong.
//
// userNamed relaxes the owner and mode rule into a note (wouldRefuse):
// the rule protects a root daemon from a file someone else can change,
// not a developer from the binary they just built and named themselves.
// The file must still be a regular executable with the wanted digest.
//
// opened, when not nil, runs between the open and the checks (tests use it
// to swap the file under the agent).
func openBinary(path, want string, userNamed bool, opened func()) (*trustedBinary, error) {
	euid := os.Geteuid()
	if !filepath.IsAbs(path) {
		return nil, permanent("plugin binary %s: the path must be absolute", path)
	}
	path = filepath.Clean(path)
	resolved, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, permanent("plugin binary %s does not exist", path)
	}
	if err != nil {
		return nil, permanent("plugin binary %s: %w", path, err)
	}
	// O_NONBLOCK: a FIFO put in the plugin's place must not hang the open;
	// O_NOFOLLOW: the resolved path has no symlink left in its last part,
	// and one that appeared since is an attack.
	fd, err := unix.Open(resolved, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, permanent("plugin binary %s: open %s: %w", path, resolved, err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, execFDMin)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("plugin binary %s: duplicate descriptor: %w", path, err)
	}
	f := os.NewFile(uintptr(high), resolved)
	bin := &trustedBinary{file: f}
	fail := func(err error) (*trustedBinary, error) {
		f.Close()
		return nil, err
	}
	if opened != nil {
		opened()
	}
	var st unix.Stat_t
	if err := unix.Fstat(high, &st); err != nil {
		return fail(fmt.Errorf("plugin binary %s: fstat: %w", path, err))
	}
	mode := fs.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail(permanent("plugin binary %s is not a regular file", path))
	}
	if mode&0o111 == 0 {
		return fail(permanent("plugin binary %s is not executable (mode %v)", path, mode))
	}
	// The owner and mode rule: a refusal, or only a note when the user
	// named the binary.
	var rule error
	if why := unsafeOwnerMode(int(st.Uid), uint32(st.Mode), euid); why != "" {
		rule = permanent("plugin binary %s (%s) %s", path, resolved, why)
	}
	for _, p := range []string{path, resolved} {
		if rule != nil {
			break
		}
		if err := checkDirs(p, euid); err != nil {
			rule = permanent("plugin binary %s: %w", path, err)
		}
	}
	if rule != nil && !userNamed {
		return fail(rule)
	}
	if rule != nil {
		bin.wouldRefuse = rule.Error()
	}
	if want != "" {
		got, err := hashFile(f)
		if err != nil {
			return fail(permanent("plugin binary %s: %w", path, err))
		}
		if !strings.EqualFold(want, got) {
			return fail(permanent("checksum mismatch for %s: expected %s, actual %s", path, want, got))
		}
	}
	return bin, nil
}

// checkDirs applies the owner and mode rule to every directory above path,
// following symlinks (a symlinked directory is judged by its target; the
// directory holding the symlink is itself one of the prefixes).
func checkDirs(path string, euid int) error {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return fmt.Errorf("directory %s: %w", dir, err)
		}
		if why := unsafeOwnerMode(int(st.Uid), uint32(st.Mode), euid); why != "" {
			return fmt.Errorf("directory %s %s", dir, why)
		}
		if dir == "/" {
			return nil
		}
	}
}

// unsafeOwnerMode says why a file or directory with this owner and mode
// could be changed by someone other than root or the agent, or "".
func unsafeOwnerMode(uid int, mode uint32, euid int) string {
	perm := fs.FileMode(mode & 0o7777)
	if uid != 0 && uid != euid {
		return fmt.Sprintf("is owned by uid %d, not by root or the agent's user (uid %d)", uid, euid)
	}
	if mode&0o022 != 0 {
		sticky := ""
		if mode&syscall.S_ISVTX != 0 {
			sticky = " (the sticky bit does not help: anyone can still create a name in it)"
		}
		return fmt.Sprintf("is writable by group or others (mode %04o)%s", uint32(perm), sticky)
	}
	return ""
}

// hashFile hashes the whole file from its start, whatever its offset.
func hashFile(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// fileSHA256 hashes the file at path (tests and tools use it).
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hashFile(f)
}
