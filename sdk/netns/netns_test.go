//go:build linux

package netns

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// namespace makes a named network namespace with a veth pair "d0"/"d1"
// and removes it when the test ends.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("sdkns-%d-%d", os.Getpid(), rand.IntN(1e6))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	return "/var/run/netns/" + name
}

func selfNetns(t *testing.T) string {
	t.Helper()
	l, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDoRunsInTheNamespaceAndComesBack(t *testing.T) {
	path := namespace(t)
	before := selfNetns(t)
	if _, err := net.InterfaceByName("d0"); err == nil {
		t.Fatal("d0 exists outside the namespace; the test proves nothing")
	}
	var inside string
	err := Do(path, func() error {
		inside = selfNetns(t)
		_, err := net.InterfaceByName("d0")
		return err
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside == before {
		t.Errorf("fn ran in the caller's namespace %s", inside)
	}
	// Many goroutines later, no thread is left in the namespace.
	for range 50 {
		if got := selfNetns(t); got != before {
			t.Fatalf("a thread was left in %s", got)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDoPassesFnsError(t *testing.T) {
	want := errors.New("boom")
	if err := Do(namespace(t), func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do = %v", err)
	}
	if err := Do("", func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do(\"\") = %v", err)
	}
}

// DoAt enters the namespace open at the descriptor, not whatever its path
// names by the time fn runs: here the path is given to a new namespace
// after the descriptor was opened.
func TestDoAtEntersTheNamespaceItWasGiven(t *testing.T) {
	path := namespace(t)
	fd, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	for _, args := range [][]string{{"netns", "del", name}, {"netns", "add", name}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	before := selfNetns(t)
	var inside string
	err = DoAt(fd, path, func() error {
		inside = selfNetns(t)
		_, err := net.InterfaceByName("d0") // only in the first namespace
		return err
	})
	if err != nil {
		t.Fatalf("DoAt: %v", err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); inside != want {
		t.Errorf("fn ran in %s, want %s (the namespace at fd)", inside, want)
	}
	if got := selfNetns(t); got != before {
		t.Errorf("the caller's thread is in %s, was in %s", got, before)
	}
	// The caller still owns fd: DoAt did not close it.
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Errorf("fd after DoAt: %v", err)
	}
	want := errors.New("boom")
	if err := DoAt(fd, path, func() error { return want }); err != want {
		t.Errorf("DoAt = %v, want fn's error unchanged", err)
	}
}

// A descriptor that is no namespace cannot be entered: fn does not run and
// the error names the namespace.
func TestDoAtRefusesWhatItCannotEnter(t *testing.T) {
	_, file, _ := notNamespaces(t)
	fd, err := syscall.Open(file, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	ran := false
	err = DoAt(fd, "the-name", func() error { ran = true; return nil })
	if err == nil || !strings.Contains(err.Error(), "enter the-name") {
		t.Errorf("DoAt(a regular file) = %v, want an error entering the-name", err)
	}
	if ran {
		t.Error("fn ran although the thread could not enter")
	}
}

// notNamespaces makes, in a new directory, a regular file and a FIFO: paths
// that are not network namespaces, the FIFO one that blocks a careless
// open.
func notNamespaces(t *testing.T) (dir, file, fifo string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo = filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file, fifo
}

func TestDoRefusesWhatIsNotANetworkNamespace(t *testing.T) {
	dir, file, fifo := notNamespaces(t)
	ran := false
	fn := func() error { ran = true; return nil }
	for _, path := range []string{file, fifo, "/proc/self/ns/mnt", "/proc/self/ns/uts"} {
		done := make(chan error, 1)
		go func() { done <- Do(path, fn) }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotNetns) {
				t.Errorf("Do(%s) = %v, want ErrNotNetns", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Do(%s) hangs", path)
		}
	}
	if err := Do(filepath.Join(dir, "missing"), fn); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Do(missing) = %v", err)
	}
	if ran {
		t.Error("fn ran although the path was refused")
	}
}

// Open names what a refused path is, so that an API can say it; it never
// blocks on a FIFO, and follows links to what they point at.
func TestOpenNamesWhatThePathIs(t *testing.T) {
	dir, file, fifo := notNamespaces(t)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{
		file:                "a regular file",
		fifo:                "a FIFO",
		link:                "a FIFO",
		dir:                 "a directory",
		"/dev/zero":         "a character device",
		"/proc/self/ns/uts": "a UTS namespace",
		"/proc/self/ns/mnt": "a mount namespace",
	} {
		fd, err := Open(path)
		var ne *NotNetnsError
		if !errors.As(err, &ne) || !errors.Is(err, ErrNotNetns) || !strings.HasPrefix(ne.Kind, kind) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %d, %v; want a NotNetnsError saying %q", path, fd, err, kind)
		}
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
	fd, err := Open(namespace(t))
	if err != nil {
		t.Fatalf("Open(a network namespace) = %v", err)
	}
	syscall.Close(fd)
	if fd, err := Open("/proc/self/ns/net"); err != nil {
		t.Errorf("Open(/proc/self/ns/net) = %v", err)
	} else {
		syscall.Close(fd)
	}
}
