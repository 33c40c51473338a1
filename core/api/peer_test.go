package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/peercred"
)

// TestTrustRule: root and our own user are believed; another user only
// when root handed it a directory of its own.
func TestTrustRule(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root")
	}
	const other = 65534
	parent := t.TempDir() // root's, mode 0700 or 0755
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "run")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []int{0, 1000} {
		if err := peercred.TrustCred(1, uid, 1000, sock); err != nil {
			t.Errorf("uid %d for a client of uid 1000: %v", uid, err)
		}
	}
	// Another user, files still root's: refused.
	err := peercred.TrustCred(42, other, 0, sock)
	var up *UntrustedPeerError
	if !errors.As(err, &up) || up.PID != 42 || !strings.Contains(err.Error(), "socket file belongs to uid 0") {
		t.Fatalf("%v", err)
	}
	// Handed over by root (DynamicUser=): believed.
	for _, p := range []string{dir, sock} {
		if err := os.Chown(p, other, other); err != nil {
			t.Fatal(err)
		}
	}
	if err := peercred.TrustCred(42, other, 0, sock); err != nil {
		t.Fatalf("a directory root handed over: %v", err)
	}
	// The directory writable by others: refused.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := peercred.TrustCred(42, other, 0, sock); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("%v", err)
	}
}
