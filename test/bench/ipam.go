package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// IPAM rows: allocate + release through the control API, with detection
// off (the store and the API alone) and on (an ARP probe of each candidate
// on the node's interface, one 100 ms window), at concurrency 1, 16 and
// 128. Every row also checks that no address was held by two workloads at
// once and counts errors.

const benchPools = `
pool "nodetect" {
  subnet             = "10.90.0.0/22"
  conflict_detection = false
}
pool "detect" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.100-10.0.0.250"]
  conflict_detection = true
}
`

type ipamRow struct {
	pool        string
	concurrency int
	ops         int
}

func benchIPAM(s *scope, b *bins, out io.Writer) []target {
	lan := netlab.NewStdLAN(s)
	poolDir := s.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(benchPools), 0o644); err != nil {
		s.Fatal(err)
	}
	db := filepath.Join(s.TempDir(), "ipam.db")
	a := startAgent(s, b, agentOpts{name: "ipam", nsPath: lan.Node.Path, args: []string{"--ipam-config-dir", poolDir},
		config: fmt.Sprintf("ipam {\n  db_path = %q\n}\nplugin \"sysctl-tuner\" { enabled = false }\n", db)})
	a.waitReady(30 * time.Second)
	c := &api.Client{SocketPath: a.Socket}

	rows := []ipamRow{
		{"nodetect", 1, 300}, {"nodetect", 16, 2000}, {"nodetect", 128, 3000},
		{"detect", 1, 20}, {"detect", 16, 160}, {"detect", 128, 512},
	}
	t := newTable("IPAM: allocate + release through the control API",
		"detection", "concurrency", "allocations", "allocations/s", "allocate p50 ms", "allocate p99 ms", "release p50 ms", "errors", "duplicates")
	var targets []target
	for _, r := range rows {
		progress("ipam: pool %s, concurrency %d, %d allocations", r.pool, r.concurrency, r.ops)
		res := runIPAMRow(c, lan.Node.Path, r)
		det := "off"
		if r.pool == "detect" {
			det = "on (ARP, 100ms window)"
		}
		t.add(det, r.concurrency, r.ops, fmt.Sprintf("%.0f", res.rate), res.alloc.p50(), res.alloc.p99(), res.release.p50(), res.errors, res.duplicates)
		if res.firstErr != "" {
			t.note("- %s c=%d first error: %s", r.pool, r.concurrency, res.firstErr)
		}
		targets = append(targets, target{
			what: fmt.Sprintf("IPAM %s c=%d: errors and duplicates", det, r.concurrency), want: "0 and 0",
			got: fmt.Sprintf("%d and %d", res.errors, res.duplicates), met: res.errors == 0 && res.duplicates == 0,
		})
	}
	t.note("Each allocation is one POST /v1/ipam/allocate and one POST /v1/ipam/release. Detection off: the allocation is one fsync'd bbolt transaction (attachment, address and the workload's history together); detection on: reserve in the bbolt file, check, commit with the workload's history (two fsync'd transactions). A duplicate is an address returned while another workload held it.")
	t.note("Numbers to compare (design notes): Spiderpool ~5 pods/s cluster-wide, whereabouts ~10 allocations/s.")
	t.write(out)
	return targets
}

type ipamResult struct {
	alloc, release     sample
	rate               float64
	errors, duplicates int
	firstErr           string
}

func runIPAMRow(c *api.Client, netns string, r ipamRow) ipamResult {
	var (
		mu      sync.Mutex
		res     ipamResult
		held    = map[netip.Addr]bool{}
		next    atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.errors++
		if res.firstErr == "" {
			res.firstErr = err.Error()
		}
	}
	for w := 0; w < r.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(r.ops) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				key := api.AttachmentKey{ContainerID: fmt.Sprintf("bench-%s-%d-%d", r.pool, r.concurrency, i), Interface: "eth0"}
				req := api.AllocateRequest{ContainerID: key.ContainerID, Interface: "eth0", Pools: []string{r.pool}}
				if r.pool == "detect" {
					req.Netns = netns
				}
				t0 := time.Now()
				att, err := c.Allocate(ctx, req)
				took := time.Since(t0)
				if err != nil {
					cancel()
					fail(err)
					continue
				}
				addr := att.Addresses[0].Address.Addr()
				mu.Lock()
				res.alloc = append(res.alloc, took)
				if held[addr] {
					res.duplicates++
				}
				held[addr] = true
				// Forget it before the release: until the release
				// commits the store still holds it, so nobody else can
				// get it meanwhile.
				delete(held, addr)
				mu.Unlock()
				t1 := time.Now()
				_, err = c.Release(ctx, api.ReleaseRequest{ContainerID: key.ContainerID, Interface: "eth0"})
				rt := time.Since(t1)
				cancel()
				if err != nil {
					fail(err)
					continue
				}
				mu.Lock()
				res.release = append(res.release, rt)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.rate = float64(len(res.alloc)) / time.Since(started).Seconds()
	return res
}
