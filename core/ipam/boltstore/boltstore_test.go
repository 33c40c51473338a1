package boltstore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
