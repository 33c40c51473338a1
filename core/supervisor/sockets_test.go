package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// The sweep removes only socket directories of dead agents that are
// directories of this user: not a live agent's, not a planted symlink's
// target, not another user's, not anything else in the directory.
func TestSweepSocketDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := deadPID(t)
	mk := func(name string) string {
		t.Helper()
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(dir, "plugin-dir123"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "plugin-dir123", "plugin456"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stale := mk(fmt.Sprintf("%s%d", socketDirPrefix, dead))
	live := mk(fmt.Sprintf("%s%d", socketDirPrefix, os.Getppid()))
	own := mk(fmt.Sprintf("%s%d", socketDirPrefix, os.Getpid()))
	others := mk(fmt.Sprintf("%s%d", socketDirPrefix, deadPID(t)))
	if err := os.Chown(others, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	victim := mk("victim")
	link := filepath.Join(tmp, fmt.Sprintf("%s%d", socketDirPrefix, deadPID(t)))
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	unrelated := mk("plugin-dir999")
	malformed := mk(fmt.Sprintf("%s%d-x", socketDirPrefix, deadPID(t)))

	if n := sweepSocketDirs(hclog.NewNullLogger()); n != 1 {
		t.Errorf("swept %d directories, want 1", n)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the dead agent's %s is still there (%v)", stale, err)
	}
	for _, keep := range []string{live, own, others, unrelated, malformed, filepath.Join(victim, "plugin-dir123", "plugin456"), link} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}

	// This agent's own directory is private, shared by its Supervisors,
	// and named so that the next agent's sweep can tell whose it is.
	if err := os.RemoveAll(own); err != nil {
		t.Fatal(err)
	}
	dir := makeSocketDir(hclog.NewNullLogger())
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 || dir != own {
		t.Fatalf("makeSocketDir = %s: %v %v", dir, fi, err)
	}
	if again := makeSocketDir(hclog.NewNullLogger()); again != dir {
		t.Errorf("a second Supervisor's makeSocketDir = %q, want %q", again, dir)
	}
	// A temporary directory whose path leaves no room for go-plugin's
	// socket path below ours: go-plugin's default, not a failure to start.
	t.Setenv("TMPDIR", filepath.Join(tmp, strings.Repeat("d", 60)))
	if got := makeSocketDir(hclog.NewNullLogger()); got != "" {
		t.Errorf("makeSocketDir under a long TMPDIR = %q, want none", got)
	}
	if pid, ok := socketDirPID(filepath.Base(dir)); !ok || pid != os.Getpid() {
		t.Errorf("socketDirPID(%s) = %d %v", filepath.Base(dir), pid, ok)
	}
}
