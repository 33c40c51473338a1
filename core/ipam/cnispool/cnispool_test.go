package cnispool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func rec(id string, at time.Time) Record {
	return Record{Version: 1, ContainerID: id, Interface: "eth0", Network: "net", DeletedAt: at}
}

// TestWriteScanRemove: a written DEL is read back whole, mode 0600; a
// second DEL of the key replaces the first; Remove leaves a file that was
// replaced after the scan.
func TestWriteScanRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	now := time.Now().UTC()
	if err := Write(dir, rec("c1", now)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName("c1", "eth0")))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("spool file: %v %v, want mode 0600", st, err)
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Errorf("spool dir mode %v, want 0700", dst.Mode().Perm())
	}
	es, ref, err := Scan(dir, now)
	if err != nil || len(ref) != 0 || len(es) != 1 || es[0].Record.ContainerID != "c1" || !es[0].Record.DeletedAt.Equal(now) {
		t.Fatalf("Scan: %+v %+v %v", es, ref, err)
	}
	later := now.Add(time.Second)
	if err := Write(dir, rec("c1", later)); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, es[0]); err != nil {
		t.Fatal(err)
	}
	es, _, _ = Scan(dir, now)
	if len(es) != 1 || !es[0].Record.DeletedAt.Equal(later) {
		t.Fatalf("after Remove of the replaced file: %+v, want the later DEL kept", es)
	}
	if err := Remove(dir, es[0]); err != nil {
		t.Fatal(err)
	}
	if es, _, _ = Scan(dir, now); len(es) != 0 {
		t.Fatalf("after Remove: %+v", es)
	}
	if es, ref, err := Scan(filepath.Join(dir, "missing"), now); err != nil || es != nil || ref != nil {
		t.Errorf("a missing spool: %v %v %v, want empty", es, ref, err)
	}
}

// TestHostileFiles: what is not a small regular file of ours holding one
// valid record is refused and removed without being followed, blocked on
// or read past the bound; the target of a symlink is untouched, and a good
// record beside them is still applied.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC()
	if err := Write(dir, rec("good", now)); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(outside, []byte(`{"version":1,"container_id":"x","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	name := func(id string) string { return filepath.Join(dir, FileName(id, "eth0")) }
	write := func(id, data string) {
		t.Helper()
		if err := os.WriteFile(name(id), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, name("x")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(name("fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	write("huge", `{"version":1,"container_id":"huge","interface":"eth0","network":"`+strings.Repeat("a", 2*MaxFileBytes)+`","deleted_at":"2026-01-01T00:00:00Z"}`)
	write("badjson", `{"version":1,"container_id":`)
	write("unknown", `{"version":1,"container_id":"unknown","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z","release_all":true}`)
	write("two", `{"version":1,"container_id":"two","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z"}{}`)
	write("badkey", `{"version":1,"container_id":"../etc","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z"}`)
	write("renamed", `{"version":1,"container_id":"other","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z"}`)
	write("future", `{"version":1,"container_id":"future","interface":"eth0","deleted_at":"2999-01-01T00:00:00Z"}`)
	write("notmine", `{"version":1,"container_id":"notmine","interface":"eth0","deleted_at":"2026-01-01T00:00:00Z"}`)
	if err := os.Chown(name("notmine"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, name("hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var (
		es  []Entry
		ref []Refused
		err error
	)
	go func() { es, ref, err = Scan(dir, now); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Scan blocked (on the FIFO?)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Record.ContainerID != "good" {
		t.Errorf("accepted %+v, want only the good record", es)
	}
	why := map[string]string{}
	for _, r := range ref {
		why[r.Name] = r.Why
		if r.Kept != nil {
			t.Errorf("%s: not removed: %v", r.Name, r.Kept)
		}
	}
	for id, want := range map[string]string{"x": "symlink", "fifo": "not a regular file", "huge": "more than", "badjson": "not a spool record",
		"unknown": "unknown field", "two": "more after", "badkey": "container_id", "renamed": "does not match", "future": "future",
		"notmine": "owned by uid 65534", "hardlink": "links"} {
		if w, ok := why[FileName(id, "eth0")]; !ok || !strings.Contains(w, want) {
			t.Errorf("%s: refused %v with %q, want a reason with %q", id, ok, w, want)
		}
	}
	if !strings.Contains(why["README"], "not a spool file name") {
		t.Errorf("README: %q", why["README"])
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("%d files left in the spool, want the good one: %v", len(left), left)
	}
	if data, err := os.ReadFile(outside); err != nil || !strings.Contains(string(data), `"x"`) {
		t.Errorf("the symlink's target was harmed: %q %v", data, err)
	}
}

// TestUntrustedDir: a spool that is a symlink or writable by others is
// refused by both sides, naming it.
func TestUntrustedDir(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{open, link} {
		if err := Write(d, rec("c1", time.Now())); err == nil || !strings.Contains(err.Error(), d) {
			t.Errorf("Write to %s: %v, want an error naming it", d, err)
		}
		if _, _, err := Scan(d, time.Now()); err == nil || !strings.Contains(err.Error(), d) {
			t.Errorf("Scan of %s: %v, want an error naming it", d, err)
		}
	}
}

// TestFull: a full spool refuses a new DEL with ErrFull, and still takes a
// repeated DEL of a key it holds.
func TestFull(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxFiles {
		if err := os.WriteFile(filepath.Join(dir, FileName("c"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "eth0")), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := Write(dir, rec("new", time.Now()))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "4096 files") {
		t.Fatalf("Write to a full spool: %v, want ErrFull saying how many files", err)
	}
	if err := Write(dir, rec("ca", time.Now())); err != nil {
		t.Errorf("a repeated DEL of a spooled key: %v", err)
	}
}
