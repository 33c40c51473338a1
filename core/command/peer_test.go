package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/httpserve"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// squatEnv makes the test binary act as an impostor agent (see TestMain).
const squatEnv = "SPIDERPOOL_TEST_SQUAT_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(squatEnv); path != "" {
		os.Exit(agenttest.Squat(path))
	}
	os.Exit(m.Run())
}

// With the socket directory world-writable, a process of
// nobody put its own socket on the path and `check` printed its PASS. The
// client must refuse a peer that is not root (or the client's user) with a
// clear error, and never print PASS.
func TestCheckRefusesSocketSquattedByNobody(t *testing.T) {
	const nobody = 65534
	top, err := os.MkdirTemp("", "squat-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	run := filepath.Join(top, "run")
	if err := os.Mkdir(run, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is root's 0700: copy it where
	// nobody can execute it, and let nobody write the socket directory.
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "impostor")
	copyFile(t, self, bin, 0o755)
	sock := filepath.Join(run, "spiderpool.sock")

	startImpostor(t, bin, sock, nobody)
	if fi, err := os.Lstat(sock); err != nil || fi.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Fatalf("the impostor's socket is not nobody's: %v", err)
	}

	out, errOut, code := runCLI(t, nil, "check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24")
	if strings.Contains(strings.ToUpper(out), "PASS") || code == ExitOK {
		t.Fatalf("check believed the impostor: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"refusing to trust the process on " + sock, fmt.Sprintf("uid %d", nobody), "writable by group or others"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error lacks %q:\n%s", want, errOut)
		}
	}
	_, errOut, code = runCLI(t, nil, "status", "--socket", sock)
	if code != ExitFail || !strings.Contains(errOut, "refusing to trust") {
		t.Errorf("status: exit %d, want %d with a refusal:\n%s", code, ExitFail, errOut)
	}

	// The daemon refuses the directory outright.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ln, err := control.Listen(ctx, filepath.Join(run, "other.sock")); err == nil {
		ln.Close()
		t.Error("the daemon listened in a world-writable socket directory")
	} else if !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Listen in a world-writable directory: %v", err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

// debug pprof writes a profile fetched over the control socket to a file,
// and never overwrites an existing one.
func TestDebugPprof(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "agent.sock")
	ln, err := control.Listen(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, control.NewHandler(agenttest.Impostor{}, nil)) }()
	t.Cleanup(func() { cancel(); <-done })

	out := filepath.Join(dir, "heap.pprof")
	_, errOut, code := runCLI(t, nil, "debug", "pprof", "heap", "--socket", sock, "-o", out)
	if code != ExitOK {
		t.Fatalf("debug pprof heap: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(out); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("%s is not a gzipped profile (%d bytes, %v)", out, len(b), err)
	}
	if _, errOut, code = runCLI(t, nil, "debug", "pprof", "heap", "--socket", sock, "-o", out); code != ExitFail || !strings.Contains(errOut, "file exists") {
		t.Errorf("overwriting %s: exit %d: %s", out, code, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "debug", "pprof", "cpu", "--socket", sock, "--seconds", "600"); code != ExitUsage || !strings.Contains(errOut, "--seconds 600") {
		t.Errorf("--seconds 600: exit %d: %s", code, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "debug", "pprof", "cmdline", "--socket", sock); code != ExitUsage || !strings.Contains(errOut, `unknown profile "cmdline"`) {
		t.Errorf("cmdline: exit %d: %s", code, errOut)
	}
}

// status says when gops is on, since any local user can reach it.
func TestStatusWarnsAboutGops(t *testing.T) {
	var b strings.Builder
	if err := writeStatus(&b, state.Agent{Version: "v", PID: 1, Started: true, Gops: "127.0.0.1:5712"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "warning: gops listens on 127.0.0.1:5712: any local user") {
		t.Errorf("status with gops on does not warn:\n%s", b.String())
	}
	b.Reset()
	writeStatus(&b, state.Agent{Version: "v", PID: 1, Started: true})
	if strings.Contains(b.String(), "gops") {
		t.Errorf("status with gops off mentions it:\n%s", b.String())
	}
}

// startImpostor runs this test binary as uid on sock (see TestMain and
// agenttest.Squat) until the test ends.
func startImpostor(t *testing.T, bin, sock string, uid int) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), squatEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make([]byte, len("listening"))
	if _, err := io.ReadFull(stdout, line); err != nil {
		t.Fatalf("the server as uid %d did not start: %v", uid, err)
	}
}

// The packaged unit runs the agent as a DynamicUser= in a RuntimeDirectory=
// that root created and handed over: the client (root) must trust that,
// and nothing looser.
func TestClientTrustsADynamicUserOnlyInARootGivenDirectory(t *testing.T) {
	const dyn = 61184 // systemd's DynamicUser range starts here
	cases := []struct {
		name        string
		parentOwner int
		parentMode  os.FileMode
		dirMode     os.FileMode
		want        string // "" for trusted
	}{
		{"RuntimeDirectory", 0, 0o755, 0o750, ""},
		{"directory writable by its group", 0, 0o755, 0o770, "writable by group or others"},
		{"parent owned by the user", dyn, 0o755, 0o750, "belongs to uid 61184, not root"},
		{"parent writable by others", 0, 0o1777, 0o750, "writable by group or others"},
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top, err := os.MkdirTemp("", "dyn-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(top) })
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.Chmod(top, 0o755))
			bin := filepath.Join(top, "server")
			copyFile(t, self, bin, 0o755)
			parent := filepath.Join(top, "run")
			must(os.Mkdir(parent, 0o755))
			must(os.Chown(parent, tc.parentOwner, tc.parentOwner))
			must(os.Chmod(parent, tc.parentMode))
			dir := filepath.Join(parent, "spidernet")
			must(os.Mkdir(dir, 0o700))
			must(os.Chown(dir, dyn, dyn))
			must(os.Chmod(dir, tc.dirMode))
			sock := filepath.Join(dir, "spiderpool.sock")
			startImpostor(t, bin, sock, dyn)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = (&control.Client{SocketPath: sock}).Status(ctx)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("a DynamicUser agent in a root-given directory is not trusted: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Status = %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}
