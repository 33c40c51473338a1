package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// busyPool is the pool of the busy-learning rows: 90 addresses, every third
// held by one of three LAN hosts (30 in all).
const busyPool = `
pool "lan4" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.100-10.0.0.189"]
}
`

const busyAllocations = 60

// benchIPAMBusy: allocate + release on a pool a third of which LAN hosts
// hold, with the agent's busy list empty (the hosts never announced; the
// allocator finds them by probing, as before busy learning) and learned
// (they announced themselves once, a gratuitous ARP each, while one
// allocation was watched). The difference is the probe windows the busy
// list saves.
func benchIPAMBusy(s *scope, b *bins, out io.Writer) []target {
	lan := netlab.NewLAN(s)
	node := lan.AddHost("node", netlab.NodeMAC)
	var owned []netip.Addr
	owners := map[*netlab.Host][]netip.Addr{}
	for h := range 3 {
		var cidrs []string
		var mine []netip.Addr
		for i := h * 3; i < 90; i += 9 {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(100 + i)})
			mine = append(mine, a)
			cidrs = append(cidrs, a.String()+"/24")
		}
		owned = append(owned, mine...)
		owners[lan.AddHost(fmt.Sprint("own", h), fmt.Sprintf("02:00:00:00:0c:%02x", h), cidrs...)] = mine
	}
	t := newTable("IPAM: allocations on a pool a third of which LAN hosts hold, busy list empty and learned",
		"busy list", "allocations", "allocate p50 ms", "allocate mean ms", "allocate p99 ms", "all allocations s", "conflicts hit (probed, in use)", "busy skipped (no probe)", "errors")
	var targets []target
	var p50 [2]time.Duration
	for i, learn := range []bool{false, true} {
		progress("ipam-busy: learning %v, %d allocations", learn, busyAllocations)
		r := runBusyMode(s, b, node, owners, owned, learn)
		mode := "empty (hosts never announced)"
		if learn {
			mode = "learned (each host announced once)"
		}
		var sum time.Duration
		for _, d := range r.alloc {
			sum += d
		}
		mean := time.Duration(0)
		if len(r.alloc) > 0 {
			mean = sum / time.Duration(len(r.alloc))
		}
		t.add(mode, r.n, r.alloc.p50(), mean, r.alloc.p99(), fmt.Sprintf("%.1f", sum.Seconds()), r.conflicts, r.busy, r.errors)
		if r.firstErr != "" {
			t.note("- %s: first error: %s", mode, r.firstErr)
		}
		p50[i] = r.alloc.p50()
		if learn {
			targets = append(targets, target{what: "IPAM busy list learned: conflicts hit, errors", want: "0 and 0",
				got: fmt.Sprintf("%d and %d", r.conflicts, r.errors), met: r.conflicts == 0 && r.errors == 0})
		}
	}
	t.note("Pool 10.0.0.100-189 with conflict detection (ARP, 100 ms window); 30 of its addresses held by three LAN hosts. %d allocate + release in a row through the control API from the node's eth0, each a new container. Empty: every candidate the hosts hold is reserved, probed (a window), found in use and quarantined (a tenth of the pool at most; beyond that freed, and met again by later allocations). Learned: the hosts sent one gratuitous ARP per address while one allocation was watched; the allocator skips them without a reservation or a probe. p50 %s -> %s.", busyAllocations, ms(p50[0]), ms(p50[1]))
	t.write(out)
	return targets
}

type busyResult struct {
	n, conflicts, busy, errors int
	alloc                      sample
	firstErr                   string
}

func runBusyMode(s *scope, b *bins, node *netlab.Host, owners map[*netlab.Host][]netip.Addr, owned []netip.Addr, learn bool) busyResult {
	a, c := startPoolAgent(s, b, "ipam-busy", node, busyPool)
	defer a.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res busyResult
	if learn {
		// One allocation held and watched on the node's eth0: its socket
		// sees the hosts' announcements.
		if _, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: "seed", Interface: "eth0", Netns: node.Path, Pools: []string{"lan4"}}); err != nil {
			s.Fatalf("ipam-busy: seed allocation: %v", err)
		}
		for h, addrs := range owners {
			r := openRaw(s, h.Path)
			for _, a := range addrs {
				f, err := arpnd.BuildGratuitousARP(h.MAC, a)
				if err != nil {
					s.Fatal(err)
				}
				if err := r.send(f); err != nil {
					s.Fatal(err)
				}
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			cr, err := c.Conflicts(ctx, 0, netip.Addr{})
			if err == nil && len(cr.Busy) >= len(owned)-1 { // the seed's probe may have met (and quarantined) one
				break
			}
			if time.Now().After(deadline) {
				s.Fatalf("ipam-busy: the agent learned %d of %d announced addresses in 10 s (%v)", len(cr.Busy), len(owned), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range busyAllocations {
		key := fmt.Sprintf("busy-%v-%d", learn, i)
		t0 := time.Now()
		att, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: key, Interface: "eth0", Netns: node.Path, Pools: []string{"lan4"}})
		took := time.Since(t0)
		if err != nil {
			res.errors++
			if res.firstErr == "" {
				res.firstErr = err.Error()
			}
			continue
		}
		res.n++
		res.alloc = append(res.alloc, took)
		for _, sk := range att.Skipped {
			if strings.HasPrefix(sk.Reason, "seen on the wire") {
				res.busy++
			} else {
				res.conflicts++
			}
		}
		if _, err := c.Release(ctx, api.ReleaseRequest{ContainerID: key, Interface: "eth0"}); err != nil {
			res.errors++
		}
	}
	return res
}

// faultWatchFlood: a LAN host sends 10,000 hostile ARP/ND frames a second
// for 10 s - gratuitous ARPs and unsolicited NAs from random MACs claiming
// the addresses four watched workloads hold and every other address of
// their pools - while a client allocates and releases on a pool the flood
// does not touch and asks for status. Held when every request was
// answered, the agent's memory stayed bounded and its CPU is reported.
func faultWatchFlood(s *scope, b *bins) []faultRow {
	const (
		rate     = 10000
		duration = 10 * time.Second
	)
	lan := netlab.NewLAN(s)
	node := lan.AddHost("node", netlab.NodeMAC)
	flooder := lan.AddHost("flood", "02:00:00:00:0d:99")
	pools := `
pool "w4" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.10-10.0.0.129"]
  defend = true
}
pool "w6" {
  subnet = "fd00::/64"
  ranges = ["fd00::10-fd00::8f"]
  defend = true
}
pool "quiet" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.200-10.0.0.250"]
}
`
	a, c := startPoolAgent(s, b, "watch-flood", node, pools)
	defer a.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var held []netip.Addr
	for i := range 4 {
		wl := lan.AddHost(fmt.Sprint("wl", i), fmt.Sprintf("02:00:00:00:0d:%02x", i))
		att, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprint("wl", i), Interface: "eth0", Netns: wl.Path, Pools: []string{"w4", "w6"}})
		if err != nil {
			s.Fatalf("watch-flood: allocation %d: %v", i, err)
		}
		for _, ip := range att.Addresses {
			held = append(held, ip.Address.Addr())
		}
	}
	// The frames: half claim held addresses, half any address of the
	// pools; each from its own random MAC.
	rng := rand.New(rand.NewPCG(7, 11))
	var frames [][]byte
	for range 4096 {
		var addr netip.Addr
		if rng.IntN(2) == 0 {
			addr = held[rng.IntN(len(held))]
		} else if rng.IntN(2) == 0 {
			addr = netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + rng.IntN(120))})
		} else {
			addr = netip.AddrFrom16([16]byte{0xfd, 15: byte(0x10 + rng.IntN(128))})
		}
		mac := net.HardwareAddr{0x02, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		var f []byte
		var err error
		if addr.Is4() {
			f, err = arpnd.BuildGratuitousARP(mac, addr)
		} else {
			f, err = arpnd.BuildUnsolicitedNA(mac, addr)
		}
		if err != nil {
			s.Fatal(err)
		}
		frames = append(frames, f)
	}
	raw := openRaw(s, flooder.Path)
	pid := a.pid()
	rss0, pss0 := rssKiB(pid), smapsRollup(pid)["Pss"]
	cpu0 := cpuTicks(pid)

	var (
		stop                 atomic.Bool
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		allocLat, statusLat  sample
		allocErrs, statusErr int
		firstErr             string
		peakRSS, peakPSS     int
		sent, sendErrs       int
	)
	wg.Add(3)
	go func() { // allocations on the quiet pool (detection on: a probe window each)
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			key := fmt.Sprint("q", i)
			t0 := time.Now()
			_, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: key, Interface: "eth0", Netns: node.Path, Pools: []string{"quiet"}})
			took := time.Since(t0)
			if err == nil {
				_, err = c.Release(ctx, api.ReleaseRequest{ContainerID: key, Interface: "eth0"})
			}
			mu.Lock()
			allocLat = append(allocLat, took)
			if err != nil {
				allocErrs++
				if firstErr == "" {
					firstErr = err.Error()
				}
			}
			mu.Unlock()
		}
	}()
	go func() { // status, and memory samples
		defer wg.Done()
		for !stop.Load() {
			t0 := time.Now()
			_, err := a.status()
			took := time.Since(t0)
			r, p := rssKiB(pid), smapsRollup(pid)["Pss"]
			mu.Lock()
			statusLat = append(statusLat, took)
			if err != nil {
				statusErr++
			}
			peakRSS, peakPSS = max(peakRSS, r), max(peakPSS, p)
			mu.Unlock()
			time.Sleep(200 * time.Millisecond) // a sampling period, not a wait for anything
		}
	}()
	start := time.Now()
	go func() { // the flood: 100 frames every 10 ms
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for k := 0; time.Since(start) < duration; {
			<-tick.C
			want := int(time.Since(start) * rate / time.Second)
			for ; sent < want; sent++ {
				if raw.send(frames[k%len(frames)]) != nil {
					sendErrs++
				}
				k++
			}
		}
		stop.Store(true)
	}()
	wg.Wait()
	elapsed := time.Since(start)
	cpu := time.Duration(cpuTicks(pid)-cpu0) * clockTick
	rss1, pss1 := rssKiB(pid), smapsRollup(pid)["Pss"]
	st, _ := c.Conflicts(ctx, 0, netip.Addr{})
	agentSt, _ := a.status()
	detected, busy := uint64(0), 0
	if agentSt.IPAM != nil && agentSt.IPAM.Conflicts != nil {
		detected, busy = agentSt.IPAM.Conflicts.Detected, agentSt.IPAM.Conflicts.Busy
	}
	exited := a.exited()
	row := faultRow{
		fault: "ARP/ND flood on a watched LAN",
		done: fmt.Sprintf("a LAN host sent %d gratuitous ARPs and unsolicited NAs (%d/s for %v, random MACs) claiming the 8 addresses 4 watched workloads hold (defend on) and the other addresses of their pools; meanwhile allocate+release on a pool the flood does not claim (probe on) and status in a loop",
			sent, rate, duration),
		did: "every request answered; conflicts bounded at 4 MACs per address; the flooded pools' free addresses learned busy",
		numbers: fmt.Sprintf("agent CPU %.0f%% of one core over %v; RSS %d -> peak %d -> %d KiB, PSS %d -> peak %d -> %d KiB; %d allocate+release (p50 %s, p99 %s, max %s ms, %d errors); %d status (p50 %s, p99 %s ms, %d errors); conflicts detected %d, recorded in the store %d, busy %d; send errors %d",
			100*cpu.Seconds()/elapsed.Seconds(), elapsed.Round(100*time.Millisecond), rss0, peakRSS, rss1, pss0, peakPSS, pss1,
			len(allocLat), ms(allocLat.p50()), ms(allocLat.p99()), ms(allocLat.max()), allocErrs, len(statusLat), ms(statusLat.p50()), ms(statusLat.p99()), statusErr,
			detected, len(st.Conflicts), busy, sendErrs),
	}
	row.held = !exited && allocErrs == 0 && statusErr == 0 && len(allocLat) > 0 && peakRSS < rss0+64*1024 && detected <= uint64(4*len(held))
	if firstErr != "" {
		row.did = "an allocation failed: " + firstErr
	}
	if exited {
		row.did = "the agent exited"
	}
	return []faultRow{row}
}

// startPoolAgent starts an agent named name on node with the pools (HCL),
// a store of its own and no sysctl-tuner, waits until it is ready, and
// returns it with a client of its control socket.
func startPoolAgent(s *scope, b *bins, name string, node *netlab.Host, pools string) (*agent, *api.Client) {
	poolDir := s.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(pools), 0o644); err != nil {
		s.Fatal(err)
	}
	db := filepath.Join(s.TempDir(), "ipam.db")
	a := startAgent(s, b, agentOpts{name: name, nsPath: node.Path, args: []string{"--ipam-config-dir", poolDir},
		config: fmt.Sprintf("ipam {\n  db_path = %q\n}\nplugin \"sysctl-tuner\" { enabled = false }\n", db)})
	a.waitReady(30 * time.Second)
	return a, &api.Client{SocketPath: a.Socket}
}
