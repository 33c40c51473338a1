package boltstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// mappedKiB is how much of path's memory map is resident in this process
// (the Rss of its mappings in /proc/self/smaps): what the process's PSS
// counts for the store's file.
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// A mapping's header: address range, perms, offset, device,
			// inode, then the path when it has one.
			in = len(fields) >= 6 && fields[len(fields)-1] == path
		case in && len(fields) == 3 && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// TestWholeFileWalksLeaveNothingMapped: Open's verify and Check read every
// page of the file through bbolt's memory map; the pages they touched must
// not stay mapped in the agent, where its PSS would count the whole file
// (a store of 100,000 history records is 80 MiB) for as long as it runs.
func TestWholeFileWalksLeaveNothingMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	s := mustOpen(t, path)
	ctx := context.Background()
	value := []byte(strings.Repeat("x", 4000))
	for c := 0; c < 16; c++ {
		var ops []ipam.Op
		for i := 0; i < 256; i++ {
			ops = append(ops, ipam.Op{Key: fmt.Sprintf("history/w/%02d-%03d", c, i), Value: value})
		}
		if _, err := s.Commit(ctx, nil, ops); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const bound = 1024 // KiB: the meta pages and the roots bbolt reads itself
	if fi.Size() < 16<<20 {
		t.Fatalf("the file is %d bytes; the test wants more than 16 MiB", fi.Size())
	}

	s = mustOpen(t, path)
	defer s.Close()
	if got := mappedKiB(t, path); got > bound {
		t.Errorf("after Open: %d KiB of the %d KiB file stay mapped; want at most %d", got, fi.Size()>>10, bound)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mappedKiB(t, path); got > bound {
		t.Errorf("after Verify: %d KiB of the %d KiB file stay mapped; want at most %d", got, fi.Size()>>10, bound)
	}
	// What a read maps, it maps again: the records are all there. A
	// listing this large copies what it read and releases the map too.
	es, err := s.List(ctx, "history/")
	if err != nil || len(es) != 16*256 {
		t.Fatalf("List after the release: %d records, %v", len(es), err)
	}
	for _, e := range es {
		if string(e.Value) != string(value) {
			t.Fatalf("%s: %d bytes, want the %d written", e.Key, len(e.Value), len(value))
		}
	}
	if got := mappedKiB(t, path); got > bound {
		t.Errorf("after a List of 16 MiB: %d KiB of the file stay mapped; want at most %d", got, bound)
	}
	// A small read keeps what it mapped (the allocation path's Gets).
	if e, err := s.Get(ctx, "history/w/00-000"); err != nil || e.Revision == 0 {
		t.Fatalf("Get after the release: %+v, %v", e, err)
	}
}
