// Package packaging tests what packaging/ ships: the systemd unit (verify,
// hardening score, the settings the agent relies on), the packaged
// configuration and environment file, the Debian package built by
// `make deb` installed and removed on this machine, the unit's credentials
// emulated around the installed binary, `make install`, and the sd_notify
// conversation the unit's Type=notify and WatchdogSec= depend on.
//
// Everything runs as root, as in CI; a missing tool fails the test with the
// package to install, it never skips.
package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.MainLazy(m)) }

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// repoRoot is the module's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			rootErr = fmt.Errorf("go list -m: %w", err)
			return
		}
		root = strings.TrimSpace(string(out))
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return root
}

// repoFile is the path of a file in the repository.
func repoFile(t testing.TB, rel string) string {
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

// readRepoFile reads the file at rel (slash-separated) in the repository.
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// requireTool fails the test unless name is on PATH, naming the Debian
// package that has it.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("this test needs %s (Debian package %s): %v", name, pkg, err)
	}
	return p
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test installs packages, builds network namespaces and drops privileges: run it as root")
	}
}

// run runs a command and returns its combined output; it fails the test
// when the command fails.
func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	binsOnce sync.Once
	bins     agenttest.Binaries
	binsErr  error
)

// agentBinaries builds the agent and the plugins once for this process.
func agentBinaries(t testing.TB) agenttest.Binaries {
	t.Helper()
	binsOnce.Do(func() { bins, binsErr = agenttest.Build() })
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}
