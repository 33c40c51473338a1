package boltstore_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// mustOpen opens the store file at path, which must succeed; the caller
// closes it.
func mustOpen(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (ipam.Store, func(ipam.Store) ipam.Store) {
		path := filepath.Join(t.TempDir(), "ipam.db")
		s := mustOpen(t, path)
		return s, func(old ipam.Store) ipam.Store {
			old.Close()
			s := mustOpen(t, path)
			return s
		}
	})
}

// TestLockedByAnotherProcess: a second opener waits the timeout and names
// the process holding the file.
func TestLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	s := mustOpen(t, path)
	s.Close()
	// flock(1) holds the same kind of lock bbolt takes, in another process.
	cmd := exec.Command("flock", "-x", path, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		locks, _ := os.ReadFile("/proc/locks")
		if strings.Contains(string(locks), " "+itoa(cmd.Process.Pid)+" ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	_, err := boltstore.Open(path, boltstore.Options{OpenTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("opened a locked store")
	}
	took := time.Since(start)
	// bbolt retries the lock every 50ms and stops one step early.
	if took < 200*time.Millisecond {
		t.Errorf("gave up after %v, well before the 300ms timeout", took)
	}
	for _, want := range []string{path, "locked by", "pid " + itoa(cmd.Process.Pid), "ipam.db_path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestRefusesNonRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ipam.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := boltstore.Open(path, boltstore.Options{OpenTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Open of a directory: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ipam.db"))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Commit(ctx, nil, []ipam.Op{{Key: "k", Value: []byte("v")}}); err == nil {
		t.Fatal("Commit with a cancelled context succeeded")
	}
	if e, _ := s.Get(context.Background(), "k"); e.Revision != 0 {
		t.Fatal("a cancelled commit wrote")
	}
}

// oldFile writes, with bbolt itself, a store file as the agent that keyed
// address records per pool (format 1) left it, a commit a revision.
func oldFile(t *testing.T, commits ...[]ipam.Op) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam.db")
	if err := storetest.WriteFormat1(path, commits...); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileFormat(t *testing.T, path string) (uint64, []string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var f uint64
	var keys []string
	db.View(func(tx *bolt.Tx) error {
		f = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("format")))
		return tx.Bucket([]byte("kv")).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	})
	return f, keys
}

// holder is container cid's eth0 holding addr of pool in format 1, on node n1.
func holder(pool, addr, cid string) []ipam.Op {
	return storetest.PerPoolHolder(pool, netip.MustParseAddr(addr), cid, "n1")
}

// A format 1 file opens as format 2 with its address records keyed per
// domain: the records are the same, the store is consistent, and opening it
// again moves nothing.
func TestOpenMigratesPerPoolKeys(t *testing.T) {
	var commits [][]ipam.Op
	for i := 0; i < 120; i++ { // more than one migration commit
		pool := "lan"
		if i%2 == 1 {
			pool = "dmz"
		}
		commits = append(commits, holder(pool, fmt.Sprintf("10.20.%d.%d", i%2, 10+i), fmt.Sprintf("c%d", i)))
	}
	q, _ := json.Marshal(ipam.AddressRecord{Pool: "lan", Address: netip.MustParseAddr("10.20.0.250"), State: ipam.StateQuarantined, Until: time.Now().Add(time.Hour)})
	path := oldFile(t, append(commits, []ipam.Op{{Key: "pools/lan/addrs/10.20.0.250", Value: q}})...)
	s := mustOpen(t, path)
	if s.Migrated() != 121 {
		t.Errorf("moved %d records, want 121", s.Migrated())
	}
	if err := ipam.Consistent(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(context.Background(), "domains/default/addrs/10.20.1.11")
	var rec ipam.AddressRecord
	if err != nil || json.Unmarshal(e.Value, &rec) != nil || rec.Pool != "dmz" || rec.Owner.ContainerID != "c1" {
		t.Fatalf("moved record %s: %+v %v", e.Value, rec, err)
	}
	s.Close()
	f, keys := fileFormat(t, path)
	if f != 2 {
		t.Errorf("format %d after the move, want 2", f)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "pools/") {
			t.Errorf("old key left: %s", k)
		}
	}
	s, err = boltstore.Open(path, boltstore.Options{})
	if err != nil || s.Migrated() != 0 {
		t.Fatalf("reopen: moved %d, %v", s.Migrated(), err)
	}
	s.Close()
}

// Two old records giving one address to two holders are refused, naming
// both; the file is left as it was (format 1, every key), so the previous
// agent can still open it to release one of them.
func TestOpenRefusesAddressHeldTwice(t *testing.T) {
	path := oldFile(t, holder("ovA", "10.90.0.20", "c1"), holder("ovB", "10.90.0.20", "c2"), holder("ovB", "10.90.0.21", "c3"))
	_, before := fileFormat(t, path)
	_, err := boltstore.Open(path, boltstore.Options{})
	var dup *ipam.DuplicateError
	if !errors.As(err, &dup) {
		t.Fatalf("opened: %v", err)
	}
	for _, want := range []string{path, `10.90.0.20: pool "ovA" (container c1 interface eth0, allocated, node n1) and pool "ovB" (container c2 interface eth0, allocated, node n1)`,
		"nothing was changed", "spiderpool-agent ipam release --container-id ID --interface IF"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nlacks %q", err, want)
		}
	}
	f, after := fileFormat(t, path)
	if f != 1 || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused file changed: format %d, keys %v (before %v)", f, after, before)
	}
}
