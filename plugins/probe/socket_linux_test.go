//go:build linux

package probe

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A namespace that cannot be entered is ErrNetns naming its path, and
// nothing is opened.
func TestOpenSockCannotEnter(t *testing.T) {
	const path = "/dev/null" // setns refuses what is no namespace
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ns := &nsFile{path: path, fd: fd}
	defer ns.close()
	s, err := openSock(ns, "eth0", &counters{}, Options{})
	if !errors.Is(err, ErrNetns) || !strings.Contains(err.Error(), "enter "+path) || s != nil {
		t.Errorf("openSock = %v, %v; want ErrNetns naming %s", s, err, path)
	}
}
