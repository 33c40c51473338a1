package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// faultIPAMEtcdAgents: the shared-pool acceptance as a fault row: three agents
// on three node namespaces share one pool in a 3-member etcd, 300
// allocations each at once; the etcd leader and one agent are killed -9
// in the middle. The survivors' allocations must all succeed (each
// request retried by its client), no address twice, and the dead agent's
// allocations reclaimed by a survivor's GC only after its heartbeat lease
// expired plus the grace period.
func faultIPAMEtcdAgents(s *scope, b *bins) []faultRow {
	const per = 300
	l := newEtcdAgentLab(s, b)
	gc := "  gc_interval = \"1s\"\n  gc_grace_period = \"2s\"\n"
	agents := []*agent{l.start("fault", "f-n0", "etcd", gc), l.start("fault", "f-n1", "etcd", gc), l.start("fault", "f-n2", "etcd", gc)}
	row := faultRow{
		fault: "kill -9 the etcd leader and one agent mid-burst (3 agents, one etcd pool)",
		done:  "3 agents in 3 node namespaces x 300 allocations at 8 concurrent each on a 3-member etcd; after 300 successes the leader is killed, after 100 of its own the third agent",
	}
	var (
		mu       sync.Mutex
		held     = map[netip.Addr]string{}
		dups     int
		failures atomic.Int64
		total    atomic.Int64
		killedAt time.Time
		leader   = "(not killed)"
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	doomedCtx, killDoomed := context.WithCancel(ctx)
	defer killDoomed()
	var leaderOnce, agentOnce sync.Once
	start := time.Now()
	for ai, a := range agents {
		c := &ipamapi.Client{SocketPath: a.Socket}
		actx := ctx
		if ai == 2 {
			actx = doomedCtx
		}
		next := make(chan int, per)
		for i := 0; i < per; i++ {
			next <- i
		}
		close(next)
		var mine atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					id := fmt.Sprintf("f%d-%d", ai, i)
					for actx.Err() == nil {
						rctx, rcancel := context.WithTimeout(actx, 10*time.Second)
						att, err := c.Allocate(rctx, ipamapi.AllocateRequest{ContainerID: id, Interface: "eth0", Pools: []string{"bench"}})
						rcancel()
						if err != nil {
							if failures.Add(1)%200 == 1 {
								progress("ipam-etcd-agents: agent %d: %v", ai, err)
							}
							time.Sleep(50 * time.Millisecond) // a client's back-off
							continue
						}
						mu.Lock()
						addr := att.Addresses[0].Address.Addr()
						if prev, ok := held[addr]; ok && prev != id {
							dups++
						}
						held[addr] = id
						mu.Unlock()
						if total.Add(1) == per {
							leaderOnce.Do(func() {
								lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
								defer lcancel()
								if m, err := l.cluster.Leader(lctx); err == nil {
									m.Kill()
									leader = m.Name
								}
							})
						}
						if ai == 2 && mine.Add(1) == 100 {
							agentOnce.Do(func() {
								agents[2].Cmd.Process.Kill()
								killedAt = time.Now()
								killDoomed()
							})
						}
						break
					}
				}
			}()
		}
	}
	wg.Wait()
	burst := time.Since(start)
	survivors := int(total.Load())
	c0 := &ipamapi.Client{SocketPath: agents[0].Socket}
	c1 := &ipamapi.Client{SocketPath: agents[1].Socket}
	// The dead agent's allocations: gone only after its lease expired.
	var reclaimed time.Duration
	var usage0, usage1 ipamapi.PoolUsage
	for deadline := time.Now().Add(100 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		list, err := c0.List(ctx, "bench", "")
		if err != nil {
			continue
		}
		dead := 0
		for _, a := range list {
			if a.Node == "f-n2" {
				dead++
			}
		}
		if dead == 0 {
			reclaimed = time.Since(killedAt)
			break
		}
	}
	if u, err := c0.Pools(ctx); err == nil && len(u) == 1 {
		usage0 = u[0]
	}
	if u, err := c1.Pools(ctx); err == nil && len(u) == 1 {
		usage1 = u[0]
	}
	row.numbers = fmt.Sprintf("%d allocations in %v (%d failed attempts retried by clients, leader %s killed); dead agent's allocations reclaimed %v after its kill (lease 10s + seen interval 30s + grace 2s at most); ipam pools on the two survivors: %d/%d allocated, %d/%d reserved",
		survivors, burst.Round(time.Millisecond), failures.Load(), leader, reclaimed.Round(time.Second), usage0.Allocated, usage1.Allocated, usage0.Reserved, usage1.Reserved)
	survivorAllocs := usage0.Allocated
	switch {
	case killedAt.IsZero():
		row.did = "the agent was not killed"
	case dups > 0:
		row.did = fmt.Sprintf("%d addresses given twice", dups)
	case reclaimed == 0:
		row.did = "the dead agent's allocations were not reclaimed within 100s"
	case reclaimed < 12*time.Second:
		row.did = "the dead agent's allocations were reclaimed before its lease could expire"
	case survivorAllocs != 2*per || usage1.Allocated != 2*per || usage0.Reserved+usage1.Reserved != 0:
		row.did = fmt.Sprintf("the survivors' usage is wrong: %+v %+v", usage0, usage1)
	default:
		row.did = fmt.Sprintf("every survivor allocation succeeded, none twice; both survivors show %d allocated; the dead node's allocations reclaimed after its lease expired", 2*per)
		row.held = true
	}
	return []faultRow{row}
}
