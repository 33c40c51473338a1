package tuner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// faultyFile wraps a real file and fails where told.
type faultyFile struct {
	file
	writeErr, closeErr error
	short              bool
}

func (f *faultyFile) Write(b []byte) (int, error) {
	if f.writeErr != nil {
		return 0, f.writeErr
	}
	if f.short {
		n, err := f.file.Write(b[:len(b)/2])
		return n, err
	}
	return f.file.Write(b)
}

func (f *faultyFile) Close() error {
	err := f.file.Close()
	if f.closeErr != nil {
		return f.closeErr
	}
	return err
}

// TestWriteErrors injects the errors a kernel gives on writing a sysctl.
// tmpfs or ext4 cannot produce EINVAL for a value, nor an error that shows
// only on close, so these go through the tuner's file seam; the namespace
// tests in test/sysctl produce real EACCES and EINVAL.
func TestWriteErrors(t *testing.T) {
	const victim = "net/ipv4/conf/all/forwarding"
	tests := []struct {
		name    string
		ff      faultyFile
		openErr error
		errPart string
	}{
		{name: "EACCES on open", openErr: &os.PathError{Op: "open", Path: victim, Err: syscall.EACCES}, errPart: "permission denied"},
		{name: "EPERM on write", ff: faultyFile{writeErr: syscall.EPERM}, errPart: "operation not permitted"},
		{name: "EROFS on open", openErr: &os.PathError{Op: "open", Path: victim, Err: syscall.EROFS}, errPart: "read-only file system"},
		{name: "EINVAL: the kernel rejects the value", ff: faultyFile{writeErr: syscall.EINVAL}, errPart: "invalid argument"},
		{name: "error only on close", ff: faultyFile{closeErr: syscall.EIO}, errPart: "close " + victim + ": input/output error"},
		{name: "short write", ff: faultyFile{short: true}, errPart: "short write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkTree(t, initNS)
			tu := configured(t, root, Settings{EnableIPv4: true})
			realOpen := tu.openFile
			tu.openFile = func(r *os.Root, name string, flag int) (file, error) {
				if name != victim || flag&os.O_WRONLY == 0 {
					return realOpen(r, name, flag)
				}
				if tt.openErr != nil {
					return nil, tt.openErr
				}
				f, err := realOpen(r, name, flag)
				if err != nil {
					return nil, err
				}
				ff := tt.ff
				ff.file = f
				return &ff, nil
			}
			rep := tu.Apply(context.Background())
			if !rep.Degraded {
				t.Error("report not degraded")
			}
			ks := byKey(t, rep, "net.ipv4.conf.all.forwarding")
			if ks.State != StateFailed || !strings.Contains(ks.Error, tt.errPart) || ks.Failures != 1 {
				t.Errorf("victim: %+v, want failed with %q", ks, tt.errPart)
			}
			if !strings.Contains(ks.Error, `write "1"`) {
				t.Errorf("error %q does not say what was written", ks.Error)
			}
			if ks.Previous != "0" {
				t.Errorf("previous %q, want 0", ks.Previous)
			}
			for _, c := range rep.Changes {
				if c.Key == ks.Key {
					t.Errorf("failed write reported as change %+v", c)
				}
			}
			if other := byKey(t, rep, "net.ipv4.conf.all.rp_filter"); other.State != StateApplied {
				t.Errorf("other key: %+v", other)
			}
			// Failures count per pass. Put the old value back: with an
			// error on close the value may have reached the file.
			writeFile(t, root, victim, "0\n")
			if ks := byKey(t, tu.Reconcile(context.Background()), ks.Key); ks.Failures != 2 || ks.Drifts != 0 {
				t.Errorf("after second pass: %+v", ks)
			}
			// Once the fault is gone the key applies.
			tu.openFile = realOpen
			rep = tu.Reconcile(context.Background())
			if ks := byKey(t, rep, ks.Key); ks.State != StateApplied || ks.Error != "" || ks.Failures != 2 || rep.Degraded {
				t.Errorf("after the fault: %+v degraded %v", ks, rep.Degraded)
			}
		})
	}
}

// TestReadBackMismatch: the kernel may store something other than what was
// written (it prints "1" after "01" is written to arp_notify).
func TestReadBackMismatch(t *testing.T) {
	root := mkTree(t, initNS)
	tu := configured(t, root, Settings{Set: map[string]string{"net.ipv4.conf.all.arp_notify": "01"}})
	realOpen := tu.openFile
	tu.openFile = func(r *os.Root, name string, flag int) (file, error) {
		f, err := realOpen(r, name, flag)
		if err != nil || flag&os.O_WRONLY == 0 {
			return f, err
		}
		return &kernelLike{file: f}, nil
	}
	ks := byKey(t, tu.Apply(context.Background()), "net.ipv4.conf.all.arp_notify")
	if ks.State != StateFailed || ks.Actual != "1" || !strings.Contains(ks.Error, `reads back "1"`) {
		t.Errorf("%+v", ks)
	}
}

// kernelLike strips leading zeros as the kernel's integer parser does.
type kernelLike struct{ file }

func (k *kernelLike) Write(b []byte) (int, error) {
	_, err := k.file.Write([]byte(strings.TrimLeft(string(b), "0")))
	return len(b), err
}

// TestReadOnlyMount makes a key fail as root for real: a read-only bind
// mount gives EROFS whatever the caller's privileges (file mode bits do
// not stop root).
func TestReadOnlyMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to bind-mount (make test runs as root; a skipped test would count as passing)")
	}
	root := mkTree(t, initNS)
	p := filepath.Join(root, "net/ipv4/conf/all/forwarding")
	if err := syscall.Mount(p, p, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(p, 0); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	})
	if err := syscall.Mount("", p, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	tu := configured(t, root, Settings{EnableIPv4: true})
	rep := tu.Apply(context.Background())
	ks := byKey(t, rep, "net.ipv4.conf.all.forwarding")
	if ks.State != StateFailed || !strings.Contains(ks.Error, "read-only file system") || ks.Actual != "0" || !rep.Degraded {
		t.Errorf("%+v degraded %v", ks, rep.Degraded)
	}
	if got := readFile(t, root, "net/ipv4/conf/all/forwarding"); got != "0\n" {
		t.Errorf("read-only file changed to %q", got)
	}
}

// TestStaysInsideRoot: a symlink under the root that points outside is not
// followed out (os.Root), and invalid keys never reach the file system.
func TestStaysInsideRoot(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := mkTree(t, initNS)
	if err := os.Symlink(outside, filepath.Join(root, "net/ipv4/escape")); err != nil {
		t.Fatal(err)
	}
	tu := configured(t, root, Settings{Set: map[string]string{"net.ipv4.escape": "pwned"}})
	ks := byKey(t, tu.Apply(context.Background()), "net.ipv4.escape")
	if ks.State != StateFailed || ks.Actual != "" {
		t.Errorf("%+v", ks)
	}
	if b, _ := os.ReadFile(outside); string(b) != "secret\n" {
		t.Errorf("outside file became %q", b)
	}
	for _, key := range []string{"../../../outside", "/etc/passwd", "net/../../outside"} {
		err := tu.Configure(Settings{Set: map[string]string{key: "x"}})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Configure with key %q: %v", key, err)
		}
	}
}

func TestMissingRoot(t *testing.T) {
	tu := configured(t, filepath.Join(t.TempDir(), "nope"), DefaultSettings())
	rep := tu.Apply(context.Background())
	if !rep.Degraded {
		t.Error("not degraded")
	}
	for _, ks := range rep.Keys {
		if ks.State != StateFailed || !strings.Contains(ks.Error, "sysctl root") {
			t.Errorf("%+v", ks)
		}
	}
}
