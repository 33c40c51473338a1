package storetest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FIFO makes a FIFO at path and, when t ends, opens it once for writing:
// a reader still stuck in open(2) on it (what the deadline of an
// allocation leaves behind) goes then.
func FIFO(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0); err == nil {
			syscall.Close(fd)
		}
	})
}

// NotNetns is a path that is not a network namespace and what the refusal
// of it as one must say of its kind.
type NotNetns struct{ Path, Says string }

// NotNetnsPaths makes, in a new directory of t's, a path of each kind an
// allocation must refuse as its namespace before it reserves anything: a
// FIFO (an open would block), a symlink to it, a directory, a regular
// file, a character device, a namespace of another type and a missing
// file.
func NotNetnsPaths(t testing.TB) []NotNetns {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	FIFO(t, fifo)
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []NotNetns{
		{fifo, "is a FIFO"},
		{link, "is a FIFO"},
		{dir, "is a directory"},
		{regular, "is a regular file"},
		{"/dev/zero", "is a character device"},
		{"/proc/self/ns/uts", "is a UTS namespace"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
	}
}
