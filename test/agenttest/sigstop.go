package agenttest

import (
	"syscall"
	"testing"
)

// SIGSTOP stops pid, as a hung plugin, and kills it when the test ends. A
// pid <= 0 fails the test: it would signal the test's own process group.
func SIGSTOP(t testing.TB, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no plugin process to stop (pid %d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
}
