package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/storefault"
)

// fill makes a store at path holding n allocations, made by the allocator
// (the records and their sizes are IPAM's own), and closes it.
func fill(t testing.TB, path string, n int) {
	t.Helper()
	s := mustOpen(t, path)
	defer s.Close()
	m := allocator(t, s)
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				cid := fmt.Sprintf("ctr-%05d", i)
				if _, err := m.Allocate(context.Background(), ipam.AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: "default/" + cid, Pools: []string{"big"}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func allocator(t testing.TB, s ipam.Store) *ipam.IPAM {
	t.Helper()
	p, err := ipam.NewPool(ipam.PoolSpec{Name: "big", Subnet: "10.64.0.0/16"}, 70000)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ipam.New(ipam.Options{Store: s, Pools: []*ipam.Pool{p}, Node: "node-a", MaxRetries: 100})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refused asserts err is the damaged-store refusal naming the file and
// what to do.
func refused(t *testing.T, err error, path string, what ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("a damaged store was opened")
	}
	if !errors.Is(err, boltstore.ErrDamaged) {
		t.Errorf("error %v does not wrap ErrDamaged", err)
	}
	for _, want := range append([]string{path, "ipam restore", "mv " + path}, what...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// An existing store file emptied (0 bytes) is refused and left as it is:
// bbolt would write a new, empty store into it and every address would
// be handed out again.
func TestEmptyFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	fill(t, path, 85)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := boltstore.Open(path, boltstore.Options{})
	refused(t, err, path, "empty (0 bytes)")
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the refused file was changed: %v %v", fi.Size(), err)
	}
	// A missing file is a first start: created.
	fresh := filepath.Join(t.TempDir(), "sub", "ipam.db")
	s := mustOpen(t, fresh)
	s.Close()
	// And opened again as the store it is.
	if s, err = boltstore.Open(fresh, boltstore.Options{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestTruncatedAndForeignFilesRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		what   string
	}{
		{"truncated to half its pages", func(t *testing.T, path string) {
			if _, err := storefault.TruncateInUse(path); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"truncated to one page", func(t *testing.T, path string) {
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
		}, "not a readable bbolt file"},
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("pool \"lan\" {}\n", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a readable bbolt file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ipam.db")
			fill(t, path, 85)
			tc.damage(t, path)
			_, err := boltstore.Open(path, boltstore.Options{})
			refused(t, err, path, tc.what)
		})
	}
}

// A page of random bytes in the records' bucket: Open refuses the file
// with an error (no panic, which would end the test binary).
func TestCorruptPageRefusedAtOpen(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ipam.db")
			fill(t, path, 300)
			pgid, err := storefault.CorruptBucketPage(path, storefault.Bucket, seed)
			if err != nil {
				t.Fatal(err)
			}
			_, err = boltstore.Open(path, boltstore.Options{})
			refused(t, err, path)
			t.Logf("page %d: %v", pgid, err)
			// The offline check says the same.
			_, err = boltstore.Open(path, boltstore.Options{ReadOnly: true})
			refused(t, err, path)
		})
	}
}

// A page damaged while the store is open (the disk, or someone writing to
// the file): the read that meets it fails with an error naming the file
// instead of bbolt's panic, and the store stays failed - later calls,
// commits included, are refused.
func TestCorruptPageWhileOpenFailsTheStore(t *testing.T) {
	path, s, damage := openFilled(t)
	ctx := context.Background()
	if _, err := s.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	damage(7)
	_, err := s.List(ctx, "")
	if !errors.Is(err, boltstore.ErrDamaged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("List over a damaged page: %v", err)
	}
	if s.Failed() == nil {
		t.Fatal("the store is not marked failed")
	}
	if _, err := s.Commit(ctx, nil, []ipam.Op{{Key: "k", Value: []byte("v")}}); !errors.Is(err, boltstore.ErrDamaged) {
		t.Fatalf("Commit on a failed store: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, boltstore.ErrDamaged) {
		t.Fatalf("Get on a failed store: %v", err)
	}
}

// Commits that run at the same time go through the group commit; a
// damaged page met inside it fails every commit of the batch with the
// error, and none panics.
func TestCorruptPageUnderConcurrentCommits(t *testing.T) {
	_, s, damage := openFilled(t)
	damage(11)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Commit(context.Background(), nil, []ipam.Op{{Key: fmt.Sprintf("x/%d", i), Value: []byte("v")}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boltstore.ErrDamaged) {
			t.Errorf("commit %d: %v", i, err)
		}
	}
}

// Open's full check (bbolt's tx.Check plus reading every record) on a
// store of 5,000 allocations: what a start costs. The bound is for a
// loaded 2-core machine; the time is logged.
func TestOpenCheckTime5000(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	fill(t, path, 5000)
	fi, _ := os.Stat(path)
	var best time.Duration
	for range 5 {
		start := time.Now()
		s, err := boltstore.Open(path, boltstore.Options{})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		err = s.Verify(context.Background())
		check := time.Since(start)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if best == 0 || took < best {
			best = took
		}
		t.Logf("open with checks: %v (of which tx.Check alone about %v)", took, check)
	}
	t.Logf("5000 allocations, %d bytes: best open %v", fi.Size(), best)
	if best > 2*time.Second {
		t.Errorf("opening a 5000-allocation store took %v", best)
	}
}

// A backup taken while commits run is a store of its own that opens and
// checks clean, and Restore installs it.
func TestBackupUnderCommitsAndRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ipam.db")
	s := mustOpen(t, path)
	m := allocator(t, s)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cid := fmt.Sprintf("w%d-%d", w, i)
				if _, err := m.Allocate(ctx, ipam.AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: cid, Pools: []string{"big"}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	backups := []string{}
	for i := range 5 {
		b := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
		info, err := s.Backup(ctx, b, false)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != info.Bytes {
			t.Fatalf("backup file %v %v, info %+v", fi, err, info)
		}
		backups = append(backups, b)
	}
	close(stop)
	wg.Wait()
	// Refused: an existing file without force, the store itself, a
	// relative path.
	if _, err := s.Backup(ctx, backups[0], false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("backup over an existing file: %v", err)
	}
	if _, err := s.Backup(ctx, path, true); err == nil || !strings.Contains(err.Error(), "store itself") {
		t.Errorf("backup over the store: %v", err)
	}
	if _, err := s.Backup(ctx, "backup.db", false); err == nil {
		t.Error("backup to a relative path")
	}
	if _, err := s.Backup(ctx, backups[0], true); err != nil {
		t.Errorf("backup --force: %v", err)
	}
	// Restore refuses while the store is open (an agent running on it).
	if err := boltstore.Restore(backups[4], path, nil); err == nil || !strings.Contains(err.Error(), "stop the agent") {
		t.Errorf("restore under a running agent: %v", err)
	}
	s.Close()
	var n int
	for _, b := range backups {
		c, err := boltstore.Open(b, boltstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Check(ctx); err != nil {
			t.Errorf("backup %s: %v", b, err)
		}
		es, err := allocator(t, c).List(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		n = len(es)
		c.Close()
	}
	if err := boltstore.Restore(backups[4], path, func(st ipam.Store) error { return ipam.Consistent(ctx, st) }); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	defer s.Close()
	es, err := allocator(t, s).List(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n || n == 0 {
		t.Errorf("restored store holds %d attachments, the backup %d", len(es), n)
	}
}

// openFilled opens a store of 300 allocations and returns its path, the
// open store (closed at the test's end) and damage, which overwrites the
// root page of the records' bucket with random bytes of seed under it.
func openFilled(t *testing.T) (string, *boltstore.Store, func(seed uint64)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam.db")
	fill(t, path, 300)
	pgid, pageSize, err := storefault.BucketPage(path, storefault.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	t.Cleanup(func() { s.Close() })
	return path, s, func(seed uint64) {
		t.Helper()
		if err := storefault.Overwrite(path, int64(pgid)*int64(pageSize), pageSize, seed); err != nil {
			t.Fatal(err)
		}
	}
}
