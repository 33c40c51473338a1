package ipam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// BenchmarkAllocateRelease: one Allocate and one Release on the real bbolt
// file (fsync on every commit), without the control API around them, for
// a pool without and with detection (a table that answers at once: the
// cost of the commits, not of a reply window). It reports the commits per
// allocation, which is what the one-commit path changes:
//
//	go test -run '^$' -bench AllocateRelease -count 5 ./core/ipam/
func BenchmarkAllocateRelease(b *testing.B) {
	for _, bc := range []struct {
		name  string
		pools []PoolSpec
	}{
		{"detection=off/one-pool", []PoolSpec{plain4}},
		{"detection=off/dual-stack", []PoolSpec{plain4, plain6}},
		{"detection=on/one-pool", []PoolSpec{v4}},
	} {
		// 1: one allocation at a time (a CNI ADD on a quiet node); more:
		// as many goroutines as the benchmark's concurrency rows (rounded
		// to a multiple of the CPUs), whose commits share fsyncs.
		for _, conc := range []int{1, 16, 128} {
			procs := runtime.GOMAXPROCS(0)
			par := (conc + procs - 1) / procs
			goroutines := par * procs
			if conc == 1 {
				goroutines = 1
			}
			b.Run(fmt.Sprintf("%s/goroutines=%d", bc.name, goroutines), func(b *testing.B) {
				s := openBolt(b)
				st := &racyStore{Store: s}
				var pools []*Pool
				var names []string
				for _, sp := range bc.pools {
					p := mustPool(b, sp)
					pools = append(pools, p)
					names = append(names, sp.Name)
				}
				m := mustNew(b, Options{Store: st, Pools: pools, Node: "node-a", Checker: &tableChecker{}, Links: noLinks{}, MaxRetries: 100})
				ctx := context.Background()
				var seq atomic.Int64
				one := func() bool {
					cid := fmt.Sprint("c", seq.Add(1))
					if err := cycle(ctx, m, req(cid, names...)); err != nil {
						b.Error(err)
						return false
					}
					return true
				}
				b.ResetTimer()
				if conc == 1 {
					for i := 0; i < b.N && one(); i++ {
					}
				} else {
					b.SetParallelism(par)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() && one() {
						}
					})
				}
				b.StopTimer()
				// Less the release's one commit.
				b.ReportMetric(float64(st.commits.Load()-seq.Load())/float64(seq.Load()), "alloc-commits/op")
			})
		}
	}
}

// BenchmarkAllocateReleaseHistory: one workload's allocate+release cycle
// on the real bbolt file when the workload already has a history of n
// entries (written as a build before per-entry history keys left it, so
// the same benchmark measures the old layout; the first cycle, which
// moves such a history, is not timed). An allocation's cost must not grow
// with the history:
//
//	go test -run '^$' -bench AllocateReleaseHistory -benchtime 200x ./core/ipam/
func BenchmarkAllocateReleaseHistory(b *testing.B) {
	for _, n := range []int{10, 1000, 3000} {
		b.Run(fmt.Sprintf("history=%d", n), func(b *testing.B) {
			m, _ := historyFixture(b, n, min(n, MaxHistoryCap), nil)
			mustCycle(b, m, historyReq(-1))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mustCycle(b, m, historyReq(i))
			}
		})
	}
}

// BenchmarkList5000: `ipam list` inside the agent with 5,000 allocations
// on the real bbolt file: List (the store's listing and the decode), List
// and the answer's JSON encoding (what the control API wrote before), and
// ListJSON (what it writes now):
//
//	go test -run '^$' -bench List5000 -benchmem ./core/ipam/
func BenchmarkList5000(b *testing.B) {
	s := openBolt(b)
	p := mustPool(b, PoolSpec{Name: "big", Subnet: "10.96.0.0/19", Ranges: []string{"10.96.0.1-10.96.19.136"}, Gateway: "10.96.0.0"})
	m := mustNew(b, Options{Store: s, Pools: []*Pool{p}, Node: "node-a", Links: noLinks{}, MaxRetries: 1000})
	ctx := context.Background()
	var seq atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			for i := seq.Add(1); i <= 5000; i = seq.Add(1) {
				if _, err := m.Allocate(ctx, req(fmt.Sprint("c", i), "big")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Run("list", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l, err := m.List(ctx, "", ""); err != nil || len(l) != 5000 {
				b.Fatal(len(l), err)
			}
		}
	})
	b.Run("listjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.ListJSON(ctx, "", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := m.List(ctx, "", "")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(l); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllocateFill: one allocate+release in a pool of 1,000 addresses
// (detection off, the real bbolt file) held at a fill level: the candidate
// walk from the allocation's hash must not make a nearly full pool slower
// than an empty one:
//
//	go test -run '^$' -bench AllocateFill -benchtime 200x ./core/ipam/
func BenchmarkAllocateFill(b *testing.B) {
	m, p, st := fillFixture(b)
	held := 0
	for _, level := range []int{0, 50, 90, 95} {
		for ; held < p.Size()*level/100; held++ {
			mustAllocate(b, m, req(fmt.Sprint("held-", held), "fill"))
		}
		b.Run(fmt.Sprintf("fill=%d%%", level), func(b *testing.B) {
			gets := st.gets.Load()
			for i := 0; b.Loop(); i++ {
				mustCycle(b, m, req(fmt.Sprintf("c%d-%d", level, i), "fill"))
			}
			b.ReportMetric(float64(st.gets.Load()-gets)/float64(b.N), "gets/op")
		})
	}
}
