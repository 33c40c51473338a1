package main

import (
	"bytes"
	"context"
	"flag"
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

// ipamKillRounds is how many times each mode of faultIPAMKill runs.
var ipamKillRounds = flag.Int("ipam-kill-rounds", 3, "kill -9 rounds per mode (detection on and off) in the \"ipam-kill\" fault rows")

// faultIPAMKill: kill -9 of the agent while 64 clients allocate, then a
// restart on the same store file; -ipam-kill-rounds times in each of two
// modes: conflict detection on (the allocator reserves, probes for 100 ms,
// then commits, so reservations are in the store at the kill) and off (one
// commit per allocation). Held when no answered allocation was
// lost, no address is held twice, and nothing is left reserved after the
// restart, counted in the file itself.
func faultIPAMKill(s *scope, b *bins) []faultRow {
	l := newLab(s, b)
	var rows []faultRow
	for _, detect := range []bool{true, false} {
		var agg ipamKillRound
		for range *ipamKillRounds {
			agg.add(ipamKillOnce(s, b, l, detect))
		}
		mode := "with conflict detection (a reservation, a 100 ms probe, a commit)"
		if !detect {
			mode = "without detection (one commit per allocation)"
		}
		row := faultRow{fault: "kill -9 the agent mid-allocation (IPAM), " + map[bool]string{true: "detection on", false: "detection off"}[detect],
			done: fmt.Sprintf("64 clients allocating and releasing %s, SIGKILL after 0.7 s, restart on the same bbolt file; %d rounds", mode, *ipamKillRounds),
			did:  map[bool]string{true: "the restart released the dead agent's reservations; every answered allocation kept; no address held twice", false: "nothing was left reserved (the one commit never reserves); every answered allocation kept; no address held twice"}[detect],
			numbers: fmt.Sprintf("over %d rounds: reserved in the file at the kill %d; after the restarts: %d allocations, reserved in the file %d, addresses held twice %d, answered but lost %d, stores inconsistent %d; ready again in at most %s ms",
				*ipamKillRounds, agg.reservedAtKill, agg.allocations, agg.reservedAfter, agg.twice, agg.lost, agg.inconsistent, ms(agg.slowestReady))}
		row.held = agg.reservedAfter == 0 && agg.twice == 0 && agg.lost == 0 && agg.inconsistent == 0 && agg.allocations > 0
		if agg.firstProblem != "" {
			row.did = agg.firstProblem
		}
		rows = append(rows, row)
	}
	return rows
}

// ipamKillRound is what one kill -9 round found (and, added up, all of a
// mode's rounds).
type ipamKillRound struct {
	reservedAtKill, allocations, reservedAfter, twice, lost, inconsistent int
	slowestReady                                                          time.Duration
	firstProblem                                                          string
}

func (r *ipamKillRound) add(o ipamKillRound) {
	r.reservedAtKill += o.reservedAtKill
	r.allocations += o.allocations
	r.reservedAfter += o.reservedAfter
	r.twice += o.twice
	r.lost += o.lost
	r.inconsistent += o.inconsistent
	r.slowestReady = max(r.slowestReady, o.slowestReady)
	if r.firstProblem == "" {
		r.firstProblem = o.firstProblem
	}
}

func ipamKillOnce(s *scope, b *bins, l *lab, detect bool) ipamKillRound {
	poolDir := s.TempDir()
	pools := fmt.Sprintf("pool \"k\" {\n  subnet = \"10.0.0.0/24\"\n  ranges = [\"10.0.0.100-10.0.0.250\"]\n  conflict_detection = %v\n}\n", detect)
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

	var r ipamKillRound
	// The file as the killed agent left it.
	var err error
	if r.reservedAtKill, err = countReserved(db); err != nil {
		s.Fatal(err)
	}
	a2 := a.restart()
	r.slowestReady = a2.waitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := (&ipamapi.Client{SocketPath: a2.Socket}).List(ctx, "", "")
	if err != nil {
		s.Fatal(err)
	}
	a2.stop()
	r.allocations = len(list)
	held := map[string]netip.Addr{}
	holders := map[netip.Addr]int{}
	for _, att := range list {
		for _, ip := range att.Addresses {
			holders[ip.Address.Addr()]++
		}
		held[att.ContainerID] = att.Addresses[0].Address.Addr()
	}
	for _, n := range holders {
		if n > 1 {
			r.twice++
		}
	}
	for cid, ad := range answered {
		if held[cid] != ad {
			r.lost++
		}
	}
	// The file as the restarted agent left it: no reservation may remain,
	// in an attachment or in an address record.
	if r.reservedAfter, err = countReserved(db); err != nil {
		s.Fatal(err)
	}
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		s.Fatal(err)
	}
	if cerr := coreipam.Consistent(context.Background(), st); cerr != nil {
		r.inconsistent = 1
		r.firstProblem = cerr.Error()
	}
	st.Close()
	return r
}

// countReserved counts the records in state reserved in a store file:
// attachments and address records.
func countReserved(db string) (int, error) {
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n := 0
	for _, prefix := range []string{"attachments/", "pools/"} {
		es, err := st.List(context.Background(), prefix)
		if err != nil {
			return 0, err
		}
		for _, e := range es {
			if bytes.Contains(e.Value, []byte(`"state":"reserved"`)) {
				n++
			}
		}
	}
	return n, nil
}
