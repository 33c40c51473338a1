package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadErrWithin loads in a goroutine and fails the test when Load has not
// returned within a generous bound: the old code blocked for ever on a
// FIFO, so a hang must be a failure, not a stuck test binary.
func loadErrWithin(t *testing.T, opts LoadOptions) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		_, err := Load(opts)
		if err == nil {
			done <- ""
			return
		}
		done <- err.Error()
	}()
	select {
	case msg := <-done:
		if msg == "" {
			t.Fatal("Load succeeded, want an error")
		}
		return msg
	case <-time.After(30 * time.Second):
		t.Fatal("Load has not returned after 30s: it hangs on the file")
		return ""
	}
}

// Each of these hung or exhausted memory in the daemon
// (config show, SIGHUP); each must be a clear error naming the file.
func TestConfigFilesAreReadWithBounds(t *testing.T) {
	cases := map[string]struct {
		make func(t *testing.T, path string)
		want string
	}{
		"fifo": {func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is a named pipe (FIFO), not a regular file"},
		"symlink to /dev/zero": {func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, "is a character device, not a regular file"},
		"oversized": {func(t *testing.T, path string) {
			// Valid HCL (a comment), so only the size can refuse it.
			big := "# " + strings.Repeat("x", MaxFileBytes) + "\n"
			if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "a configuration file may have at most 1048576 (1 MiB)"},
		"directory": {func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "is a directory, not a regular file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, file := range []string{"x.hcl", ConfYMLName} {
				dir := writeDir(t, map[string]string{"a.hcl": "log_level = \"debug\"\n"})
				path := filepath.Join(dir, file)
				tc.make(t, path)
				msg := loadErrWithin(t, LoadOptions{ConfigDir: dir})
				wantContains(t, msg, path, tc.want)
			}
			// --config-dir naming the file itself.
			dir := t.TempDir()
			path := filepath.Join(dir, "one.hcl")
			tc.make(t, path)
			if name != "directory" { // a directory is read as a config dir
				wantContains(t, loadErrWithin(t, LoadOptions{ConfigDir: path}), path, tc.want)
			}
		})
	}
}

// A file at the limit is read; a symlink to a regular file is followed.
func TestConfigFileAtLimitAndSymlink(t *testing.T) {
	dir := t.TempDir()
	body := "log_level = \"debug\"\n# "
	body += strings.Repeat("x", MaxFileBytes-len(body)-1) + "\n"
	real := filepath.Join(dir, "real.conf")
	if err := os.WriteFile(real, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "a.hcl")); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	if c.LogLevel != "debug" {
		t.Fatalf("log_level = %q, want debug from the symlinked 1 MiB file", c.LogLevel)
	}
}

// A relative socket_path or plugin_dir depends on the
// daemon's working directory; it is refused with the file's position, and
// from the environment and flags too.
func TestPathSettingsMustBeAbsolute(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.hcl": "log_level = \"info\"\nsocket_path = \"run/agent.sock\"\nplugin_dir = \"plugins\"\n"})
	msg := loadErr(t, LoadOptions{ConfigDir: dir})
	wantContains(t, msg, filepath.Join(dir, "a.hcl")+":2:", filepath.Join(dir, "a.hcl")+":3:", "an absolute path")

	msg = loadErr(t, LoadOptions{Lookup: env(map[string]string{"SPIDERPOOL_SOCKET_PATH": "x.sock", "SPIDERPOOL_PLUGIN_DIR": "./p"})})
	wantContains(t, msg, "SPIDERPOOL_SOCKET_PATH", "SPIDERPOOL_PLUGIN_DIR", "an absolute path")

	msg = loadErr(t, LoadOptions{Flags: []Flag{{Key: "socket_path", Value: "x.sock", Name: "--socket-path"}}})
	wantContains(t, msg, "--socket-path", "an absolute path")
}
