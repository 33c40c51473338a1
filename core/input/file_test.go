package input

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFileBounds(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(small, 1024, "a test file", nil); err != nil || string(b) != "secret\n" {
		t.Fatalf("ReadFile(small) = %q, %v", b, err)
	}
	if _, err := ReadFile(big, 1024, "a test file", nil); err == nil || !strings.Contains(err.Error(), big+" is 2048 bytes: a test file may have at most 1024 (1 KiB)") {
		t.Errorf("ReadFile(big) = %v, want the size error naming the limit", err)
	}
	if _, err := ReadFile(fifo, 1024, "a test file", nil); err == nil || !strings.Contains(err.Error(), fifo+" is a named pipe (FIFO), not a regular file") {
		t.Errorf("ReadFile(fifo) = %v, want it refused at once", err)
	}
	// The check sees the file before anything is read, and its error is
	// the answer.
	refused := errors.New("refused")
	_, err := ReadFile(small, 1024, "a test file", func(fi fs.FileInfo) error {
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("check saw mode %v", fi.Mode())
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Errorf("ReadFile with a refusing check = %v, want %v", err, refused)
	}
}
