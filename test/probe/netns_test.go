package probe_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// threads is the Threads line of /proc/self/status.
func threads(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// A namespace path that is not a network namespace file is
// refused at once, naming the path, and pins nothing. A FIFO used to block
// open(2) for ever on a locked OS thread, one per check, and the check
// never returned (its context was not looked at).
func TestNetnsPathMustBeANetworkNamespace(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("not a namespace"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, probe.Options{})
	cases := []struct {
		path, says string
	}{
		{fifo, "is a FIFO"},
		{link, "is a FIFO"},
		{regular, "is a regular file"},
		{dir, "is a directory"},
		{"/dev/zero", "is a character device"},
		{"/proc/self/ns/mnt", "is a mount namespace"},
		{"/proc/self/ns/uts", "is a UTS namespace"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		tg := on(l.Node, netlab.Free4)
		tg.Netns = c.path
		_, err := e.CheckConflict(ctx, tg, probe.Params{})
		cancel()
		expectErr(t, err, probe.ErrNetns, c.path, c.says, "not a")
		expectErr(t, err, probe.ErrInvalid)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: refused only after %v", c.path, d)
		}
	}
	// Missing and unreadable paths are namespace errors, not invalid ones.
	tg := on(l.Node, netlab.Free4)
	tg.Netns = filepath.Join(dir, "missing")
	_, err := e.CheckConflict(t.Context(), tg, probe.Params{})
	expectErr(t, err, probe.ErrNetns, "missing", "no such file")

	// Many checks at once against the FIFO leave no thread behind.
	before := threads(t)
	var wg sync.WaitGroup
	for i := 0; i < 500; i++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tg := on(l.Node, fmt.Sprintf("10.0.1.%d", i%250+1))
			tg.Netns = fifo
			if _, err := e.CheckConflict(ctx, tg, probe.Params{}); err == nil {
				t.Errorf("check with netns %s: no error", fifo)
			}
		})
	}
	wg.Wait()
	after := threads(t)
	t.Logf("threads before %d, after 500 checks against a FIFO %d", before, after)
	// The runtime may start threads while goroutines sit in syscalls (more
	// on a loaded machine) and keeps them idle; a pinned thread per check
	// would be 500 more.
	if after > before+100 {
		t.Fatalf("threads grew from %d to %d over 500 checks against a FIFO", before, after)
	}
	// And the real namespace still works, by either path.
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
}
