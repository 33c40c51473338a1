// Package storetest is the conformance suite of ipam.Store: any store
// implementation (the embedded bbolt store, a shared etcd store) runs Run
// in its own tests and must pass every case. It also holds the fixtures
// the IPAM's own tests share with those through the agent (test/ipam,
// test/ipamtrust), so that both start from one definition: a store file of
// the per-pool layout (WriteFormat1, PerPoolHolder), allocations at once
// (AllocateAtOnce, NoneTwice) and the paths that are not a network
// namespace (NotNetnsPaths, FIFO).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// Factory returns a new, empty store; the suite closes it. reopen, when
// not nil, closes s and opens the same data again (for durability cases).
type Factory func(t *testing.T) (s ipam.Store, reopen func(s ipam.Store) ipam.Store)

// Run runs every case against stores from f.
func Run(t *testing.T, f Factory) {
	t.Run("AbsentKey", func(t *testing.T) { absentKey(t, f) })
	t.Run("CreateIfAbsent", func(t *testing.T) { createIfAbsent(t, f) })
	t.Run("UpdateIfUnchanged", func(t *testing.T) { updateIfUnchanged(t, f) })
	t.Run("AllOrNothing", func(t *testing.T) { allOrNothing(t, f) })
	t.Run("Delete", func(t *testing.T) { deleteKey(t, f) })
	t.Run("ListPrefix", func(t *testing.T) { listPrefix(t, f) })
	t.Run("RevisionsIncrease", func(t *testing.T) { revisionsIncrease(t, f) })
	t.Run("ConcurrentCreate", func(t *testing.T) { concurrentCreate(t, f) })
	t.Run("Durable", func(t *testing.T) { durable(t, f) })
	t.Run("Closed", func(t *testing.T) { closed(t, f) })
}

func open(t *testing.T, f Factory) (ipam.Store, func(ipam.Store) ipam.Store) {
	s, reopen := f(t)
	t.Cleanup(func() { s.Close() })
	return s, reopen
}

func commit(t *testing.T, s ipam.Store, conds []ipam.Cond, ops []ipam.Op) int64 {
	t.Helper()
	rev, err := s.Commit(context.Background(), conds, ops)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return rev
}

func get(t *testing.T, s ipam.Store, key string) ipam.Entry {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return e
}

func absentKey(t *testing.T, f Factory) {
	s, _ := open(t, f)
	e := get(t, s, "a/b")
	if e.Revision != 0 || e.Value != nil {
		t.Fatalf("absent key: %+v, want revision 0 and no value", e)
	}
}

func createIfAbsent(t *testing.T, f Factory) {
	s, _ := open(t, f)
	rev := commit(t, s, []ipam.Cond{{Key: "k", Revision: 0}}, []ipam.Op{{Key: "k", Value: []byte("v1")}})
	e := get(t, s, "k")
	if e.Revision != rev || string(e.Value) != "v1" {
		t.Fatalf("after create: %+v, want revision %d value v1", e, rev)
	}
	_, err := s.Commit(context.Background(), []ipam.Cond{{Key: "k", Revision: 0}}, []ipam.Op{{Key: "k", Value: []byte("v2")}})
	if !errors.Is(err, ipam.ErrCompareFailed) {
		t.Fatalf("second create: %v, want ErrCompareFailed", err)
	}
	if e := get(t, s, "k"); string(e.Value) != "v1" {
		t.Fatalf("a failed create changed the value to %q", e.Value)
	}
}

func updateIfUnchanged(t *testing.T, f Factory) {
	s, _ := open(t, f)
	r1 := commit(t, s, nil, []ipam.Op{{Key: "k", Value: []byte("v1")}})
	r2 := commit(t, s, []ipam.Cond{{Key: "k", Revision: r1}}, []ipam.Op{{Key: "k", Value: []byte("v2")}})
	if r2 <= r1 {
		t.Fatalf("revision went from %d to %d", r1, r2)
	}
	_, err := s.Commit(context.Background(), []ipam.Cond{{Key: "k", Revision: r1}}, []ipam.Op{{Key: "k", Value: []byte("stale")}})
	if !errors.Is(err, ipam.ErrCompareFailed) {
		t.Fatalf("update with a stale revision: %v, want ErrCompareFailed", err)
	}
	if e := get(t, s, "k"); string(e.Value) != "v2" || e.Revision != r2 {
		t.Fatalf("after a stale update: %+v", e)
	}
}

func allOrNothing(t *testing.T, f Factory) {
	s, _ := open(t, f)
	r := commit(t, s, nil, []ipam.Op{{Key: "a", Value: []byte("1")}})
	// The second condition fails: nothing of the commit may appear.
	_, err := s.Commit(context.Background(),
		[]ipam.Cond{{Key: "a", Revision: r}, {Key: "b", Revision: 7}},
		[]ipam.Op{{Key: "a", Value: []byte("2")}, {Key: "c", Value: []byte("3")}, {Key: "a", Delete: true}})
	if !errors.Is(err, ipam.ErrCompareFailed) {
		t.Fatalf("commit with a failing condition: %v", err)
	}
	if e := get(t, s, "a"); string(e.Value) != "1" || e.Revision != r {
		t.Fatalf("a changed: %+v", e)
	}
	if e := get(t, s, "c"); e.Revision != 0 {
		t.Fatalf("c was written by a failed commit: %+v", e)
	}
	// A commit of several keys gives them one revision.
	r2 := commit(t, s, []ipam.Cond{{Key: "x", Revision: 0}, {Key: "y", Revision: 0}},
		[]ipam.Op{{Key: "x", Value: []byte("1")}, {Key: "y", Value: []byte("2")}})
	if get(t, s, "x").Revision != r2 || get(t, s, "y").Revision != r2 {
		t.Fatalf("keys of one commit have different revisions")
	}
}

func deleteKey(t *testing.T, f Factory) {
	s, _ := open(t, f)
	r := commit(t, s, nil, []ipam.Op{{Key: "k", Value: []byte("v")}})
	_, err := s.Commit(context.Background(), []ipam.Cond{{Key: "k", Revision: r + 100}}, []ipam.Op{{Key: "k", Delete: true}})
	if !errors.Is(err, ipam.ErrCompareFailed) {
		t.Fatalf("guarded delete with a wrong revision: %v", err)
	}
	commit(t, s, []ipam.Cond{{Key: "k", Revision: r}}, []ipam.Op{{Key: "k", Delete: true}})
	if e := get(t, s, "k"); e.Revision != 0 {
		t.Fatalf("deleted key still there: %+v", e)
	}
	commit(t, s, nil, []ipam.Op{{Key: "never", Delete: true}})
	// Deleted then created again: create-if-absent holds.
	commit(t, s, []ipam.Cond{{Key: "k", Revision: 0}}, []ipam.Op{{Key: "k", Value: []byte("again")}})
}

func listPrefix(t *testing.T, f Factory) {
	s, _ := open(t, f)
	for _, k := range []string{"pools/b/addrs/2", "pools/a/addrs/1", "pools/a/addrs/3", "pools/ab/addrs/9", "workloads/x"} {
		commit(t, s, nil, []ipam.Op{{Key: k, Value: []byte(k)}})
	}
	es, err := s.List(context.Background(), "pools/a/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Key)
		if string(e.Value) != e.Key || e.Revision == 0 {
			t.Errorf("entry %+v", e)
		}
	}
	if fmt.Sprint(got) != "[pools/a/addrs/1 pools/a/addrs/3]" {
		t.Fatalf("List(pools/a/) = %v", got)
	}
	es, err = s.List(context.Background(), "nothing/")
	if err != nil || len(es) != 0 {
		t.Fatalf("List of an empty prefix: %v %v", es, err)
	}
}

func revisionsIncrease(t *testing.T, f Factory) {
	s, _ := open(t, f)
	var last int64
	for i := range 20 {
		r := commit(t, s, nil, []ipam.Op{{Key: fmt.Sprintf("k%d", i%3), Value: []byte("v")}})
		if r <= last {
			t.Fatalf("commit %d has revision %d after %d", i, r, last)
		}
		last = r
	}
}

// concurrentCreate: 32 writers race to create the same 8 keys; each key is
// created exactly once.
func concurrentCreate(t *testing.T, f Factory) {
	s, _ := open(t, f)
	var mu sync.Mutex
	won := map[string][]int{}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for k := range 8 {
				key := fmt.Sprintf("race/%d", k)
				_, err := s.Commit(context.Background(), []ipam.Cond{{Key: key, Revision: 0}}, []ipam.Op{{Key: key, Value: []byte(fmt.Sprint(w))}})
				if err == nil {
					mu.Lock()
					won[key] = append(won[key], w)
					mu.Unlock()
				} else if !errors.Is(err, ipam.ErrCompareFailed) {
					t.Errorf("writer %d: %v", w, err)
				}
			}
		})
	}
	wg.Wait()
	for k := range 8 {
		key := fmt.Sprintf("race/%d", k)
		if len(won[key]) != 1 {
			t.Fatalf("%s created by %v, want exactly one writer", key, won[key])
		}
		if e := get(t, s, key); string(e.Value) != fmt.Sprint(won[key][0]) {
			t.Fatalf("%s = %q, written by %v", key, e.Value, won[key])
		}
	}
}

func durable(t *testing.T, f Factory) {
	s, reopen := f(t)
	if reopen == nil {
		s.Close()
		t.Log("the store cannot be reopened by this factory")
		return
	}
	r := commit(t, s, nil, []ipam.Op{{Key: "d", Value: []byte("kept")}})
	s = reopen(s)
	t.Cleanup(func() { s.Close() })
	if e := get(t, s, "d"); string(e.Value) != "kept" || e.Revision != r {
		t.Fatalf("after reopen: %+v, want value kept at revision %d", e, r)
	}
	if r2 := commit(t, s, nil, []ipam.Op{{Key: "d", Value: []byte("x")}}); r2 <= r {
		t.Fatalf("revision after reopen %d <= %d: revisions must never go back", r2, r)
	}
}

func closed(t *testing.T, f Factory) {
	s, _ := f(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), nil, []ipam.Op{{Key: "k", Value: []byte("v")}}); err == nil {
		t.Fatal("Commit on a closed store succeeded")
	}
	if _, err := s.Get(context.Background(), "k"); err == nil {
		t.Fatal("Get on a closed store succeeded")
	}
}
