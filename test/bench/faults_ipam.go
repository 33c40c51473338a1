package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// faultIPAMKill: kill -9 of the agent while 64 clients allocate with
// conflict detection on (so reservations are in the store, waiting for
// their probe), then a restart on the same store file. Held when no
// answered allocation was lost, no address is held twice, and no
// reservation is left after the restart.
func faultIPAMKill(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	poolDir := s.TempDir()
	pools := "pool \"k\" {\n  subnet = \"10.0.0.0/24\"\n  ranges = [\"10.0.0.100-10.0.0.250\"]\n}\n"
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(pools), 0o644); err != nil {
		s.Fatal(err)
	}
	db := filepath.Join(s.TempDir(), "ipam.db")
	o := agentOpts{name: "ipam-victim", nsPath: l.node, args: []string{"--ipam-config-dir", poolDir},
		config: fmt.Sprintf("ipam {\n  db_path = %q\n}\nplugin \"sysctl-tuner\" { enabled = false }\n", db)}
	a := startAgent(s, b, o)
	a.waitReady(30 * time.Second)
	c := &ipamapi.Client{SocketPath: a.Socket}

	var (
		mu       sync.Mutex
		answered = map[string]netip.Addr{}
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := ""
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cid := fmt.Sprintf("f%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				att, err := c.Allocate(ctx, ipamapi.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: l.node, Pools: []string{"k"}})
				cancel()
				if err != nil {
					return // the agent is gone
				}
				mu.Lock()
				answered[cid] = att.Addresses[0].Address.Addr()
				mu.Unlock()
				// Each client holds one address at most, so the pool
				// never fills: release the one before. It is forgotten
				// first, since a release cut short by the kill may or may
				// not have committed.
				if prev != "" {
					mu.Lock()
					delete(answered, prev)
					mu.Unlock()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := c.Release(ctx, ipamapi.ReleaseRequest{ContainerID: prev, Interface: "eth0"})
					cancel()
					if err != nil {
						return
					}
				}
				prev = cid
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	_ = a.Cmd.Process.Kill()
	<-a.Done()
	close(stop)
	wg.Wait()

	// The file as the killed agent left it.
	reserved, err := countReserved(db)
	if err != nil {
		s.Fatal(err)
	}
	a2 := a.restart()
	took := a2.waitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := (&ipamapi.Client{SocketPath: a2.Socket}).List(ctx, "", "")
	if err != nil {
		s.Fatal(err)
	}
	a2.stop()
	held := map[string]netip.Addr{}
	dangling := 0
	for _, att := range list {
		if att.State != coreipam.StateAllocated {
			dangling++
		}
		held[att.ContainerID] = att.Addresses[0].Address.Addr()
	}
	lost := 0
	for cid, ad := range answered {
		if held[cid] != ad {
			lost++
		}
	}
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		s.Fatal(err)
	}
	consistency := coreipam.Consistent(context.Background(), st)
	st.Close()
	row := faultRow{fault: "kill -9 the agent mid-allocation (IPAM)",
		done: "64 clients allocating with conflict detection (one 100 ms probe each), SIGKILL after 0.7 s, restart on the same bbolt file",
		did:  "the restart released the dead agent's reservations; every answered allocation kept",
		numbers: fmt.Sprintf("reservations in the file at the kill: %d; after restart: %d allocations, dangling %d, answered but lost %d, store consistent: %v; ready again in %s ms",
			reserved, len(list), dangling, lost, consistency == nil, ms(took))}
	row.held = dangling == 0 && lost == 0 && consistency == nil
	if consistency != nil {
		row.did = consistency.Error()
	}
	return []faultRow{row}
}

func countReserved(db string) (int, error) {
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	es, err := st.List(context.Background(), "attachments/")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if bytes.Contains(e.Value, []byte(`"state":"reserved"`)) {
			n++
		}
	}
	return n, nil
}
