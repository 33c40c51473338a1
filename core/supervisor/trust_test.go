package supervisor

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// copyBinary copies a fixture plugin to dst with the given mode.
func copyBinary(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// mkdir makes dir with exactly mode (past the umask, sticky bit included).
func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// syscall.Chmod: os.Chmod takes the sticky bit as os.ModeSticky only.
	if err := syscall.Chmod(dir, uint32(mode)); err != nil {
		t.Fatal(err)
	}
}

// TestStrictModes: a plugin binary, or a directory above it, that someone
// other than root could change is refused with a reason naming the path
// and what is wrong; the other plugin keeps running.
func TestStrictModes(t *testing.T) {
	base := agenttest.TrustedTempDir(t)
	ok := binaries["ok"]

	// pluginIn makes the directory base/name with mode, owned by uid when
	// it is not root, holding the fixture as "plugin" (mode 0755).
	pluginIn := func(name string, mode os.FileMode, uid int) (dir, bin string) {
		dir = filepath.Join(base, name)
		mkdir(t, dir, mode)
		bin = filepath.Join(dir, "plugin")
		copyBinary(t, ok, bin, 0o755)
		if uid != 0 {
			if err := os.Chown(dir, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		return dir, bin
	}

	safeDir, safe := pluginIn("safe", 0o755, 0)

	worldBin := filepath.Join(safeDir, "world-writable")
	copyBinary(t, ok, worldBin, 0o777)

	nobodyBin := filepath.Join(safeDir, "nobody")
	copyBinary(t, ok, nobodyBin, 0o755)
	if err := os.Chown(nobodyBin, 65534, 65534); err != nil {
		t.Fatal(err)
	}

	groupDir, groupBin := pluginIn("group", 0o775, 0)
	nobodyDir, nobodyDirBin := pluginIn("nobodys", 0o755, 65534)

	// A sticky world-writable directory, as /tmp: whoever can create a
	// name there can plant the symlink the attack swaps.
	stickyDir, stickyBin := pluginIn("sticky", 0o1777, 0)
	stickyLink := filepath.Join(stickyDir, "link")
	if err := os.Symlink(safe, stickyLink); err != nil {
		t.Fatal(err)
	}
	// A safe link to a binary in an unsafe directory.
	safeLink := filepath.Join(safeDir, "link-to-group")
	if err := os.Symlink(groupBin, safeLink); err != nil {
		t.Fatal(err)
	}
	// What t.TempDir gives: below the sticky /tmp.
	tmpBin := filepath.Join(t.TempDir(), "plugin")
	copyBinary(t, ok, tmpBin, 0o755)

	tests := []struct {
		name, path string
		want       []string
	}{
		{"binary mode 0777", worldBin, []string{worldBin, "is writable by group or others (mode 0777)"}},
		{"binary owned by nobody", nobodyBin, []string{nobodyBin, "is owned by uid 65534, not by root or the agent's user (uid 0)"}},
		{"group-writable parent", groupBin, []string{"directory " + groupDir + " is writable by group or others (mode 0775)"}},
		{"parent owned by nobody", nobodyDirBin, []string{"directory " + nobodyDir + " is owned by uid 65534"}},
		{"sticky world-writable parent", stickyBin, []string{"directory " + stickyDir + " is writable by group or others (mode 1777) (the sticky bit does not help"}},
		{"symlink in a sticky directory to a safe binary", stickyLink, []string{stickyLink, "directory " + stickyDir + " is writable"}},
		{"safe symlink to a binary in an unsafe directory", safeLink, []string{safeLink, "directory " + groupDir + " is writable"}},
		{"below /tmp", tmpBin, []string{tmpBin, "directory /tmp is writable by group or others (mode 1777)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := spec("bad", "ok")
			bad.Path = tt.path
			good := spec("good", "ok")
			good.Path = safe
			s := start(t, nil, bad, good)
			p := pluginState(t, s, "bad")
			if p.State != api.Disabled || p.PID != 0 {
				t.Errorf("bad plugin is %s (pid %d), want disabled and never started", p.State, p.PID)
			}
			for _, w := range tt.want {
				if !strings.Contains(p.LastError, w) {
					t.Errorf("reason %q does not say %q", p.LastError, w)
				}
			}
			if g := pluginState(t, s, "good"); g.State != api.Ready {
				t.Errorf("the plugin in a safe place is %s (%s), want ready", g.State, g.LastError)
			}
		})
	}
}

// TestExecutesTheHashedFile swaps the symlink that is the plugin's path
// for one to another binary after the agent opened the binary and before
// it hashed and executed it: the agent must run what it hashed. (Hashing
// by path and then executing by path, it ran the other binary.)
func TestExecutesTheHashedFile(t *testing.T) {
	base := agenttest.TrustedTempDir(t)
	pinned := filepath.Join(base, "pinned")
	other := filepath.Join(base, "other")
	copyBinary(t, binaries["ok"], pinned, 0o755)
	copyBinary(t, binaries["mute"], other, 0o755)
	link := filepath.Join(base, "plugin")
	if err := os.Symlink(pinned, link); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(pinned)
	if err != nil {
		t.Fatal(err)
	}
	swapped := false
	opts := testOptions(t, nil)
	opts.testHookOpened = func() {
		if swapped {
			return
		}
		swapped = true
		tmp := filepath.Join(base, "plugin.new")
		if err := os.Symlink(other, tmp); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Error(err)
		}
	}
	sp := spec("p", "ok")
	sp.Path, sp.Checksum = link, sum
	s := startWith(t, opts, sp)
	if !swapped {
		t.Fatal("the hook did not run")
	}
	p := pluginState(t, s, "p")
	if p.State != api.Ready || p.Version != "0.0.1-ok" {
		t.Fatalf("plugin: %+v; want the pinned binary (version 0.0.1-ok) ready", p)
	}
	var exe, want syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(p.PID)+"/exe", &exe); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(pinned, &want); err != nil {
		t.Fatal(err)
	}
	if exe.Dev != want.Dev || exe.Ino != want.Ino {
		t.Errorf("the plugin process runs inode %d, want the hashed file's %d", exe.Ino, want.Ino)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(string(cmdline), "\x00"); got != link {
		t.Errorf("argv[0] is %q, want the configured path %q", got, link)
	}
}

// TestWrapperScriptRuns: a plugin may be a script that execs the real
// binary (an environment wrapper). The kernel hands the interpreter the
// path it executed, /proc/self/fd/N, which must still be open after
// execve for the interpreter to read the script.
func TestWrapperScriptRuns(t *testing.T) {
	base := agenttest.TrustedTempDir(t)
	real := filepath.Join(base, "real")
	copyBinary(t, binaries["ok"], real, 0o755)
	wrapper := filepath.Join(base, "wrapper")
	script := "#!/bin/sh\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(wrapper)
	if err != nil {
		t.Fatal(err)
	}
	sp := spec("p", "ok")
	sp.Path, sp.Checksum = wrapper, sum
	s := startWith(t, testOptions(t, nil), sp)
	if p := pluginState(t, s, "p"); p.State != api.Ready || p.Version != "0.0.1-ok" {
		t.Fatalf("plugin behind a wrapper script: %+v; want ready", p)
	}
}

// TestDialRunsAUserNamedBinary: `plugin run` and `plugin docs` run the
// binary their user named, wherever it was built; the daemon's refusal is
// a note on the Conn, said once, not an error. The file must still be an
// executable regular file.
func TestDialRunsAUserNamedBinary(t *testing.T) {
	tmpBin := filepath.Join(t.TempDir(), "plugin") // below the sticky /tmp
	copyBinary(t, binaries["ok"], tmpBin, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, tmpBin, "", 5*time.Second, sdk.AgentSettings{}, nil)
	if err != nil {
		t.Fatalf("Dial(%s) = %v, want it to run", tmpBin, err)
	}
	defer c.Close(context.Background())
	if !strings.Contains(c.WouldRefuse, "directory /tmp is writable by group or others") {
		t.Errorf("WouldRefuse = %q, want the daemon's reason", c.WouldRefuse)
	}
	if c.Info.Name == "" {
		t.Error("no info from the plugin")
	}

	notExec := filepath.Join(t.TempDir(), "plugin")
	copyBinary(t, binaries["ok"], notExec, 0o644)
	if c, err := Dial(ctx, notExec, "", 5*time.Second, sdk.AgentSettings{}, nil); err == nil {
		c.Close(context.Background())
		t.Error("Dial ran a file that is not executable")
	}
}
