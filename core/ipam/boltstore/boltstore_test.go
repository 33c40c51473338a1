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

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (ipam.Store, func(ipam.Store) ipam.Store) {
		path := filepath.Join(t.TempDir(), "ipam.db")
		s, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s, func(old ipam.Store) ipam.Store {
			old.Close()
			s, err := boltstore.Open(path, boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// TestLockedByAnotherProcess: a second opener waits the timeout and names
// the process holding the file.
func TestLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
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
	_, err = boltstore.Open(path, boltstore.Options{OpenTimeout: 300 * time.Millisecond})
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
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
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
// address records per pool (format 1) left it.
func oldFile(t *testing.T, records map[string]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u64 := func(v uint64) []byte { b := make([]byte, 8); binary.BigEndian.PutUint64(b, v); return b }
	err = db.Update(func(tx *bolt.Tx) error {
		kv, err := tx.CreateBucket([]byte("kv"))
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		rev := uint64(0)
		for k, v := range records {
			rev++
			js, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if err := kv.Put([]byte(k), append(u64(rev), js...)); err != nil {
				return err
			}
		}
		if err := meta.Put([]byte("revision"), u64(rev)); err != nil {
			return err
		}
		return meta.Put([]byte("format"), u64(1))
	})
	if err != nil {
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

func allocated(pool, addr, cid string) (string, ipam.AddressRecord, string, ipam.Attachment) {
	a := netip.MustParseAddr(addr)
	owner := ipam.AttachmentKey{ContainerID: cid, Interface: "eth0"}
	return "pools/" + pool + "/addrs/" + addr, ipam.AddressRecord{Pool: pool, Address: a, State: ipam.StateAllocated, Owner: owner, Node: "n1"},
		"attachments/" + cid + "/eth0", ipam.Attachment{AttachmentKey: owner, Node: "n1", State: ipam.StateAllocated, Workload: cid,
			Addresses: []ipam.AllocatedIP{{Pool: pool, Address: netip.PrefixFrom(a, 24)}}}
}

// A format 1 file opens as format 2 with its address records keyed per
// domain: the records are the same, the store is consistent, and opening it
// again moves nothing.
func TestOpenMigratesPerPoolKeys(t *testing.T) {
	recs := map[string]any{}
	for i := 0; i < 120; i++ { // more than one migration commit
		pool := "lan"
		if i%2 == 1 {
			pool = "dmz"
		}
		k, r, ak, a := allocated(pool, fmt.Sprintf("10.20.%d.%d", i%2, 10+i), fmt.Sprintf("c%d", i))
		recs[k], recs[ak] = r, a
	}
	recs["pools/lan/addrs/10.20.0.250"] = ipam.AddressRecord{Pool: "lan", Address: netip.MustParseAddr("10.20.0.250"), State: ipam.StateQuarantined, Until: time.Now().Add(time.Hour)}
	path := oldFile(t, recs)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
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
	recs := map[string]any{}
	k1, r1, ak1, a1 := allocated("ovA", "10.90.0.20", "c1")
	k2, r2, ak2, a2 := allocated("ovB", "10.90.0.20", "c2")
	k3, r3, ak3, a3 := allocated("ovB", "10.90.0.21", "c3")
	recs[k1], recs[ak1], recs[k2], recs[ak2], recs[k3], recs[ak3] = r1, a1, r2, a2, r3, a3
	path := oldFile(t, recs)
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
