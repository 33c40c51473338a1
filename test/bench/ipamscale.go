package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// IPAM at size (section ipam-scale): what a node with a full pool and a
// long history costs. A store is filled in this process first (the same
// allocator and bbolt file the agent uses, group-committed by concurrent
// allocations), then the agent is started on it and measured: time to
// ready, `ipam list` (the CLI forked, and the socket alone), its PSS
// against an agent with an empty store; then allocation cost from an
// empty pool to 95% full.

const (
	scaleLive      = 5000   // live allocations: one full pool at max_allocated_ips
	scaleHistory   = 100000 // history records in the store
	scaleWorkloads = 1000   // workloads the churn is spread over (100 entries each: the default cap)
	scaleListRuns  = 20
	fillPoolSize   = 1000
	fillRuns       = 100
)

const scalePools = `
pool "big" {
  subnet = "10.96.0.0/19"
  conflict_detection = false
  gateway_detection  = false
  ranges = ["10.96.0.1-10.96.19.136"]
}
pool "churn" {
  subnet = "10.97.0.0/22"
  conflict_detection = false
  gateway_detection  = false
}
pool "fill" {
  subnet = "10.98.0.0/22"
  conflict_detection = false
  gateway_detection  = false
  ranges = ["10.98.0.1-10.98.3.232"]
}
`

// scaleSpecs are scalePools as the in-process allocator sees them.
var scaleSpecs = []ipam.PoolSpec{
	{Name: "big", Subnet: "10.96.0.0/19", Ranges: []string{"10.96.0.1-10.96.19.136"}},
	{Name: "churn", Subnet: "10.97.0.0/22"},
	{Name: "fill", Subnet: "10.98.0.0/22", Ranges: []string{"10.98.0.1-10.98.3.232"}},
}

// fillStore writes live allocations of pool "big" (workload "live-N") and
// churn allocate+release cycles of pool "churn" spread over
// scaleWorkloads workloads, each cycle one history record.
func fillStore(s *scope, path string, live, churn int) time.Duration {
	t0 := time.Now()
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		s.Fatal(err)
	}
	defer st.Close()
	var pools []*ipam.Pool
	for _, sp := range scaleSpecs {
		p, err := ipam.NewPool(sp, scaleLive)
		if err != nil {
			s.Fatal(err)
		}
		pools = append(pools, p)
	}
	m, err := ipam.New(ipam.Options{Store: st, Pools: pools, Node: "bench", MaxRetries: 1000})
	if err != nil {
		s.Fatal(err)
	}
	ctx := context.Background()
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	total := int64(live + churn)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total || firstErr.Load() != nil {
					return
				}
				var err error
				if i < int64(live) {
					_, err = m.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprintf("live-%d", i), Interface: "eth0", Workload: fmt.Sprintf("live-%d", i), Pools: []string{"big"}})
				} else {
					var att api.Attachment
					att, err = m.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprintf("churn-%d", i), Interface: "eth0", Workload: fmt.Sprintf("churn-%d", i%scaleWorkloads), Pools: []string{"churn"}})
					if err == nil {
						_, _, err = m.Release(ctx, att.AttachmentKey)
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if i%10000 == 0 && i > 0 {
					progress("ipam-scale: filled %d of %d", i, total)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		s.Fatalf("fill the store: %v", err)
	}
	return time.Since(t0)
}

func benchIPAMScale(s *scope, b *bins, out io.Writer) []target {
	lan := netlab.NewStdLAN(s)
	poolDir := s.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(scalePools), 0o644); err != nil {
		s.Fatal(err)
	}
	cfg := func(db string) string {
		return fmt.Sprintf("ipam {\n  db_path = %q\n}\nplugin \"sysctl-tuner\" { enabled = false }\nplugin \"ip-conflict\" { enabled = false }\nplugin \"gateway-detector\" { enabled = false }\n", db)
	}
	emptyDB := filepath.Join(s.TempDir(), "empty.db")
	fullDB := filepath.Join(s.TempDir(), "full.db")
	progress("ipam-scale: filling a store with %d live allocations and %d history records", scaleLive, scaleHistory)
	var took time.Duration
	if *scaleDB != "" && fileExists(*scaleDB) {
		copyFile(s, *scaleDB, fullDB)
	} else {
		took = fillStore(s, fullDB, scaleLive, scaleHistory-scaleLive)
		if *scaleDB != "" {
			copyFile(s, fullDB, *scaleDB)
		}
	}
	fi, err := os.Stat(fullDB)
	if err != nil {
		s.Fatal(err)
	}

	start := func(name, db string) (*agent, time.Duration) {
		a := startAgent(s, b, agentOpts{name: name, nsPath: lan.Node.Path, args: []string{"--ipam-config-dir", poolDir}, config: cfg(db)})
		return a, a.waitReady(60 * time.Second)
	}
	// Idle PSS: an agent on an empty store, 2 s after ready (as the memory
	// section measures idle).
	idle, idleReady := start("ipam-idle", emptyDB)
	time.Sleep(2 * time.Second)
	idleMem := smapsRollup(idle.pid())
	idlePSS := idleMem["Pss"]
	idle.stop()

	t := newTable("IPAM at size: 5,000 allocations and 100,000 history records",
		"row", "value", "target", "met")
	var targets []target
	var ready sample
	var a *agent
	for i := 0; i < 3; i++ {
		var r time.Duration
		a, r = start("ipam-full", fullDB)
		ready = append(ready, r)
		if i < 2 {
			a.stop()
		}
	}
	c := &api.Client{SocketPath: a.Socket}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all, err := c.List(ctx, "", "")
	if err != nil || len(all) != scaleLive {
		s.Fatalf("ipam list: %d allocations, %v; want %d", len(all), err, scaleLive)
	}
	var viaSocket, viaCLI sample
	for i := 0; i < scaleListRuns; i++ {
		t0 := time.Now()
		if _, err := c.List(ctx, "", ""); err != nil {
			s.Fatal(err)
		}
		viaSocket = append(viaSocket, time.Since(t0))
		code, d, outp := runIn(lan.Node.Path, 30*time.Second, b.agent, "ipam", "list", "--socket", a.Socket)
		if code != 0 {
			s.Fatalf("ipam list exited %d: %s", code, outp)
		}
		viaCLI = append(viaCLI, d)
	}
	time.Sleep(2 * time.Second)
	fullMem := smapsRollup(a.pid())
	fullPSS := fullMem["Pss"]

	listOK := viaCLI.p99() < 100*time.Millisecond
	readyOK := ready.max() < time.Second
	pssOK := fullPSS-idlePSS <= 10*1024
	t.add("`ipam list` of 5,000 (CLI forked, p50 / p99)", ms(viaCLI.p50())+" / "+ms(viaCLI.p99())+" ms", "< 100 ms", metStr(listOK))
	t.add("the same through the socket alone (p50 / p99)", ms(viaSocket.p50())+" / "+ms(viaSocket.p99())+" ms", "", "")
	t.add("start to ready on that store (3 starts, max)", ms(ready.max())+" ms", "< 1 s", metStr(readyOK))
	t.add("start to ready on an empty store", ms(idleReady)+" ms", "", "")
	t.add("agent PSS: idle, empty store / 5,000 allocations + history, after the lists", mib(idlePSS)+" / "+mib(fullPSS)+" MiB", "within 10 MiB", metStr(pssOK))
	t.add("of which anonymous (idle / full)", mib(idleMem["Pss_Anon"])+" / "+mib(fullMem["Pss_Anon"])+" MiB", "", "")
	t.add("of which file-backed: the binary and the store's map (idle / full)", mib(idleMem["Pss_File"])+" / "+mib(fullMem["Pss_File"])+" MiB", "", "")
	targets = append(targets,
		target{what: "`ipam list` of 5,000 allocations (CLI, p99)", want: "< 100 ms", got: ms(viaCLI.p99()) + " ms", met: listOK,
			why: "the listing's cost: see the IPAM at size table"},
		target{what: "start with 100,000 history records, ready (max of 3)", want: "< 1 s", got: ms(ready.max()) + " ms", met: readyOK,
			why: "the start's work over the store: see the IPAM at size table"},
		target{what: "agent PSS with 5,000 allocations + history", want: "idle + 10 MiB", got: fmt.Sprintf("%s MiB over idle", mib(fullPSS-idlePSS)), met: pssOK,
			why: "memory held after listings: see the IPAM at size table"})
	fill := "filled in " + took.Round(time.Second).String()
	if took == 0 {
		fill = "copied from " + *scaleDB + ", filled by an earlier run"
	}
	t.note("The store (%.1f MiB, %d live allocations of pool big, %d allocate+release cycles of pool churn over %d workloads: one history record each) was %s in the bench's process by the agent's allocator on the same bbolt file; the agent then started on it with detection plugins off. Lists: %d of each, alternating.",
		float64(fi.Size())/(1<<20), scaleLive, scaleHistory-scaleLive, scaleWorkloads, fill, scaleListRuns)
	t.write(out)

	targets = append(targets, benchFill(s, c, out)...)
	return targets
}

// benchFill times allocate+release of one more address in pool "fill"
// (1,000 addresses, detection off) at fill levels from empty to 95%: the
// candidate walk must not make a nearly full pool slower.
func benchFill(s *scope, c *api.Client, out io.Writer) []target {
	t := newTable("IPAM: allocation cost by fill level (pool of 1,000, detection off, through the socket)",
		"fill", "allocate p50 ms", "allocate p99 ms", "vs empty (p50)")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	held := 0
	var base time.Duration
	worst := 0.0
	for _, level := range []int{0, 25, 50, 75, 90, 95} {
		for ; held < fillPoolSize*level/100; held++ {
			if _, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprintf("fill-%d", held), Interface: "eth0", Pools: []string{"fill"}}); err != nil {
				s.Fatalf("fill to %d%%: %v", level, err)
			}
		}
		var lat sample
		for i := -10; i < fillRuns; i++ { // 10 not timed: the first after a change of level warms the caches
			key := api.AttachmentKey{ContainerID: fmt.Sprintf("probe-%d-%d", level, i), Interface: "eth0"}
			t0 := time.Now()
			if _, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: key.ContainerID, Interface: "eth0", Pools: []string{"fill"}}); err != nil {
				s.Fatalf("allocate at %d%%: %v", level, err)
			}
			if i >= 0 {
				lat = append(lat, time.Since(t0))
			}
			if _, err := c.Release(ctx, api.ReleaseRequest{ContainerID: key.ContainerID, Interface: "eth0"}); err != nil {
				s.Fatal(err)
			}
		}
		if level == 0 {
			base = lat.p50()
		}
		ratio := float64(lat.p50()) / float64(base)
		worst = max(worst, ratio)
		t.add(fmt.Sprintf("%d%%", level), ms(lat.p50()), ms(lat.p99()), fmt.Sprintf("%.2fx", ratio))
	}
	t.note("%d allocations per level, each released before the next (the pool stays at its level). Each is one fsync'd commit: the fsync dominates and varies with the disk; flat means the candidate walk adds nothing visible at 95%%.", fillRuns)
	t.write(out)
	ok := worst <= 1.5
	return []target{{what: "allocation from empty to 95% full (p50, worst level vs empty)", want: "flat (<= 1.5x)", got: fmt.Sprintf("%.2fx", worst), met: ok,
		why: "the candidate walk of a nearly full pool: see the fill table"}}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func copyFile(s *scope, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		s.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		s.Fatal(err)
	}
}
