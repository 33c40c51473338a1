// Package cni tests the `spiderpool` CNI IPAM plugin with the real
// ecosystem: the upstream macvlan plugin (containernetworking/plugins,
// pinned in test/cnilab) driven by libcni as a runtime drives it, on a LAN
// of network namespaces, with workload namespaces on macvlan over the
// node's uplink and the real agent (with its real detector plugins) serving
// the pools.
package cni

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

var (
	bins   agenttest.Binaries
	cniBin string // CNI_PATH: spiderpool and the upstream plugins
)

func TestMain(m *testing.M) {
	if path := os.Getenv(serveEnv); path != "" {
		serveImpostor(path) // TestUntrustedAgent, as another user
		return
	}
	os.Exit(agenttest.MainWith(m, &bins, func(b agenttest.Binaries) (func(), error) {
		cniBin = filepath.Join(b.Dir, "cni")
		return nil, cnilab.Build(cniBin, agenttest.Race())
	}))
}

// TestEcosystem runs the CNI ecosystem's cases (main plugins, runtimes' GC and CHECK) on one LAN and one agent, in an
// order where each leaves the next what it needs.
func TestEcosystem(t *testing.T) {
	l := newLab(t)
	gw4, gw6 := netlab.Addr(netlab.GW4), netlab.Addr(netlab.GW6)
	underlay := l.packaged("macvlan.conflist")

	// Dual stack through the packaged conflist: the workload gets an
	// address of each pool, configured on its interface by macvlan, and
	// reaches the gateway from it.
	dual := workload(t, "dual")
	res, err := l.rt.Add(ctxFor(t, time.Minute), underlay, dual)
	if err != nil {
		t.Fatalf("ADD dual stack: %v", err)
	}
	v4, v6 := addrs(t, res)
	if !v4.IsValid() || !v6.IsValid() || v4.Bits() != 24 || v6.Bits() != 64 {
		t.Fatalf("ADD gave %v and %v, want a /24 IPv4 and a /64 IPv6 address", v4, v6)
	}
	if r, _ := current.NewResultFromResult(res); r.IPs[0].Gateway.String() != netlab.GW4 {
		t.Errorf("result's gateway %v, want %s", r.IPs[0].Gateway, netlab.GW4)
	}
	for _, p := range []netip.Prefix{v4, v6} {
		if out := netlab.IP(t, filepath.Base(dual.Netns), "addr", "show", "dev", "net1"); !strings.Contains(out, p.String()) {
			t.Errorf("net1 in the workload lacks %v:\n%s", p, out)
		}
	}
	if err := cnilab.Ping(dual.Netns, v4.Addr(), gw4, 5*time.Second); err != nil {
		t.Error(err)
	}
	if err := cnilab.Ping(dual.Netns, v6.Addr(), gw6, 5*time.Second); err != nil {
		t.Error(err)
	}
	att, ok := l.held(key(dual))
	if !ok || att.Workload != "cni/dual" || att.Netns != dual.Netns || len(att.Addresses) != 2 {
		t.Errorf("the agent's record %+v (held %v), want workload cni/dual in %s with 2 addresses", att, ok, dual.Netns)
	}

	t.Run("repeated ADD", func(t *testing.T) {
		// A runtime retrying: the IPAM plugin is exec'd again for the same
		// key and answers the same addresses.
		again, err := l.rt.IPAM(ctxFor(t, time.Minute), underlay, "ADD", dual)
		if err != nil {
			t.Fatalf("second ADD: %v", err)
		}
		a4, a6 := addrs(t, again)
		if a4 != v4 || a6 != v6 {
			t.Errorf("second ADD gave %v %v, the first %v %v", a4, a6, v4, v6)
		}
	})

	t.Run("CHECK", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		if err := l.rt.Check(ctx, underlay, dual); err != nil {
			t.Fatalf("CHECK of a healthy workload: %v", err)
		}
		// Tampered in the workload: macvlan's own CHECK sees it.
		netlab.IP(t, filepath.Base(dual.Netns), "addr", "del", v4.String(), "dev", "net1")
		if err := l.rt.Check(ctx, underlay, dual); err == nil {
			t.Error("CHECK passed with the IPv4 address removed from the workload")
		}
		netlab.IP(t, filepath.Base(dual.Netns), "addr", "add", v4.String(), "dev", "net1")
		if err := l.rt.Check(ctx, underlay, dual); err != nil {
			t.Fatalf("CHECK after the address was put back: %v", err)
		}
		// Tampered in the agent: released behind the runtime's back.
		if _, err := l.api.Release(ctx, api.ReleaseRequest{ContainerID: dual.ContainerID, Interface: dual.IfName}); err != nil {
			t.Fatal(err)
		}
		err := l.rt.Check(ctx, underlay, dual)
		cniErr(t, err, types.ErrUnknownContainer, "holds no allocation", "container dual interface net1")
	})

	t.Run("DEL then ADD", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		// The agent holds nothing for it any more (CHECK above): DEL
		// succeeds all the same, and the macvlan interface goes.
		if err := l.rt.Del(ctx, underlay, dual); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if err := l.rt.Del(ctx, underlay, dual); err != nil {
			t.Fatalf("second DEL: %v", err)
		}
		if out := links(t, dual); strings.Contains(out, "net1") {
			t.Errorf("DEL left net1 in the workload:\n%s", out)
		}
		// The pod again, in a new sandbox (namespace and container id), as
		// a runtime starts it: the workload's name gets its addresses back.
		again := workloadNamed(t, "dual-2", "dual")
		a4, a6 := l.mustAddAddrs(t, ctx, underlay, again)
		if a4 != v4 || a6 != v6 {
			t.Errorf("ADD after DEL gave %v %v; the workload's name had %v %v, free again (sticky)", a4, a6, v4, v6)
		}
		if err := cnilab.Ping(again.Netns, a4.Addr(), gw4, 5*time.Second); err != nil {
			t.Error(err)
		}
		if err := cnilab.Ping(again.Netns, a6.Addr(), gw6, 5*time.Second); err != nil {
			t.Error(err)
		}
		if err := l.rt.Del(ctx, underlay, again); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if _, ok := l.held(key(again)); ok {
			t.Error("the agent still holds the workload's addresses after DEL")
		}
	})

	t.Run("a LAN host owns the first candidate", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		skip := network(t, "skip", l.withSocket(`"pools": ["skip-v4", "skip-v6"]`))
		// The first candidate for this workload: what an ADD on a quiet LAN
		// gives, and what the workload's next sandbox tries first (sticky).
		w0 := workloadNamed(t, "skip-0", "skip")
		first4, first6 := l.mustAddAddrs(t, ctx, skip, w0)
		if err := l.rt.Del(ctx, skip, w0); err != nil {
			t.Fatal(err)
		}
		w := workloadNamed(t, "skip-1", "skip")
		// Now a host on the LAN uses both.
		netlab.IP(t, l.lan.Busy.NS, "addr", "add", first4.String(), "dev", "eth0")
		netlab.IP(t, l.lan.Busy.NS, "addr", "add", first6.String(), "dev", "eth0", "nodad")
		got4, got6 := l.mustAddAddrs(t, ctx, skip, w)
		if got4 == first4 || got6 == first6 || !got4.IsValid() || !got6.IsValid() {
			t.Fatalf("ADD gave %v %v with %v %v in use on the LAN; want others", got4, got6, first4, first6)
		}
		if err := cnilab.Ping(w.Netns, got4.Addr(), netlab.Addr(skipGW4), 5*time.Second); err != nil {
			t.Error(err)
		}
		if err := cnilab.Ping(w.Netns, got6.Addr(), netlab.Addr(skipGW6), 5*time.Second); err != nil {
			t.Error(err)
		}
		att, _ := l.held(key(w))
		skipped := map[netip.Addr]bool{}
		for _, s := range att.Skipped {
			skipped[s.Address] = true
		}
		if !skipped[first4.Addr()] || !skipped[first6.Addr()] {
			t.Errorf("the allocation's skipped list %+v lacks %v and %v", att.Skipped, first4.Addr(), first6.Addr())
		}
		if err := l.rt.Del(ctx, skip, w); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("gateway absent", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		nogw := network(t, "nogw", l.withSocket(`"pools": ["nogw-v4"]`))
		w := workload(t, "nogw")
		_, err := l.rt.Add(ctx, nogw, w)
		e := cniErr(t, err, cniplugin.CodeGateway, nogwGW4)
		t.Logf("the runtime's error: %v", e)
		// Nothing leaks in the agent: no allocation, no reservation.
		if att, ok := l.held(key(w)); ok {
			t.Errorf("the agent holds %+v after the failed ADD", att)
		}
		if u := l.usage("nogw-v4"); u.Allocated != 0 || u.Reserved != 0 {
			t.Errorf("pool nogw-v4 after the failed ADD: %+v", u)
		}
		l.delAfterFailedAdd(ctx, nogw, w)
	})

	t.Run("STATUS", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		// STATUS exists from CNI 1.1.0 on (libcni skips it below); the
		// packaged conflists say 0.4.0 for the distributions' plugins.
		underlay := l.packagedAt("macvlan.conflist", "1.1.0")
		if err := l.rt.Status(ctx, underlay); err != nil {
			t.Errorf("STATUS with the agent running: %v", err)
		}
		tiny := network(t, "tiny", l.withSocket(`"pools": ["tiny-v4"]`))
		if err := l.rt.Status(ctx, tiny); err != nil {
			t.Errorf("STATUS of an empty one-address pool: %v", err)
		}
		w := workload(t, "tiny")
		if _, err := l.rt.Add(ctx, tiny, w); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		cniErr(t, l.rt.Status(ctx, tiny), cniplugin.CodeUnavailable, "tiny-v4 is full")
		_, err := l.rt.Add(ctx, tiny, workload(t, "tiny2"))
		cniErr(t, err, cniplugin.CodePoolFull, "tiny-v4")
		if err := l.rt.Del(ctx, tiny, w); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("GC", func(t *testing.T) {
		ctx := ctxFor(t, 2*time.Minute)
		gcNet := network(t, "gcnet", l.withSocket(`"pools": ["gc-v4"]`))
		var ws []cnilab.Attachment
		for i := range 3 {
			w := workload(t, fmt.Sprintf("gc%d", i))
			if _, err := l.rt.Add(ctx, gcNet, w); err != nil {
				t.Fatalf("ADD %s: %v", w.ContainerID, err)
			}
			ws = append(ws, w)
		}
		// A workload of another network, which GC of gcnet must not touch.
		other := workload(t, "other")
		if _, err := l.rt.Add(ctx, underlay, other); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		// GC leaves allocations younger than 5 s alone (the runtime's list
		// may predate them); wait that age out.
		time.Sleep(5*time.Second + 100*time.Millisecond)

		stderr, err := l.rt.IPAMGC(ctx, gcNet, nil)
		if err != nil || !strings.Contains(stderr, "released nothing") {
			t.Errorf("GC without a list: err %v, stderr %q; want success that says it released nothing", err, stderr)
		}
		stderr, err = l.rt.IPAMGC(ctx, gcNet, []types.GCAttachment{})
		if err != nil || !strings.Contains(stderr, "released nothing") {
			t.Errorf("GC with an empty list: err %v, stderr %q; want success that says it released nothing", err, stderr)
		}
		for _, w := range ws {
			if _, ok := l.held(key(w)); !ok {
				t.Fatalf("GC without a valid list released %s", w.ContainerID)
			}
		}
		valid := []types.GCAttachment{{ContainerID: "gc0", IfName: "net1"}, {ContainerID: "gc1", IfName: "net1"}}
		if _, err := l.rt.IPAMGC(ctx, gcNet, valid); err != nil {
			t.Fatalf("GC: %v", err)
		}
		for i, w := range ws {
			if _, ok := l.held(key(w)); ok != (i < 2) {
				t.Errorf("after GC with gc0 and gc1 valid, %s held = %v", w.ContainerID, ok)
			}
		}
		if _, ok := l.held(key(other)); !ok {
			t.Error("GC of gcnet released a workload of another network")
		}
		for _, w := range ws {
			_ = l.rt.Del(ctx, gcNet, w)
		}
		if err := l.rt.Del(ctx, underlay, other); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("older spec versions", func(t *testing.T) {
		// The IPAM plugin exec'd by a main plugin of an older runtime: the
		// result comes back in the configuration's version.
		ctx := ctxFor(t, time.Minute)
		for _, ver := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"} {
			list := network(t, "old", l.withSocket(`"pools": ["gc-v4"]`))
			list.CNIVersion = ver
			list.Plugins[0].Network.CNIVersion = ver
			w := workload(t, "v"+strings.ReplaceAll(ver, ".", ""))
			res, err := l.rt.IPAM(ctx, list, "ADD", w)
			if err != nil {
				t.Errorf("ADD with cniVersion %s: %v", ver, err)
				continue
			}
			if v4, _ := addrs(t, res); res.Version() != ver || !v4.IsValid() {
				t.Errorf("ADD with cniVersion %s: a %s result with %v", ver, res.Version(), v4)
			}
			if err := l.rt.IPAMDel(ctx, list, w); err != nil {
				t.Errorf("DEL with cniVersion %s: %v", ver, err)
			}
			if _, ok := l.held(key(w)); ok {
				t.Errorf("DEL with cniVersion %s released nothing", ver)
			}
		}
	})

	t.Run("agent restarted between ADD and DEL", func(t *testing.T) {
		ctx := ctxFor(t, 2*time.Minute)
		w := workload(t, "restart")
		v4, _ := l.mustAddAddrs(t, ctx, underlay, w)
		before := l.usage("underlay-v4").Allocated
		l.agent.Stop()
		l.startAgent()
		att, ok := l.held(key(w))
		if !ok || att.Addresses[0].Address != v4 {
			t.Fatalf("after the restart the agent holds %+v (%v), want %v", att, ok, v4)
		}
		if err := l.rt.Del(ctx, underlay, w); err != nil {
			t.Fatalf("DEL after the restart: %v", err)
		}
		if _, ok := l.held(key(w)); ok {
			t.Error("the allocation survived DEL")
		}
		if after := l.usage("underlay-v4").Allocated; after != before-1 {
			t.Errorf("underlay-v4 allocated %d after DEL, %d before", after, before)
		}
	})

	t.Run("STATUS, ADD and DEL with the agent stopped", func(t *testing.T) {
		ctx := ctxFor(t, time.Minute)
		l.agent.Stop()
		// STATUS answers at once: a runtime asks it to decide, not to wait.
		start := time.Now()
		cniErr(t, l.rt.Status(ctx, l.packagedAt("macvlan.conflist", "1.1.0")), cniplugin.CodeUnavailable, "not running", l.sock)
		if took := time.Since(start); took >= cniplugin.DefaultAgentWait {
			t.Errorf("STATUS took %v; it must not wait for the agent", took)
		}
		// ADD waits ipam.agent_wait for the agent, then gives up.
		w := workload(t, "stopped")
		start = time.Now()
		_, err := l.rt.Add(ctx, underlay, w)
		cniErr(t, err, types.ErrTryAgainLater, "not running")
		if took := time.Since(start); took < cniplugin.DefaultAgentWait {
			t.Errorf("ADD gave up after %v, before agent_wait (%v)", took, cniplugin.DefaultAgentWait)
		}
		// DEL is spooled for the agent and succeeds: runtimes do not
		// retry a DEL (TestAgentRestart shows the agent applying it).
		if err := l.rt.Del(ctx, underlay, w); err != nil {
			t.Errorf("DEL with the agent stopped: %v, want it spooled", err)
		}
		if _, err := os.Stat(filepath.Join(l.spool, cnispool.FileName(w.ContainerID, w.IfName))); err != nil {
			t.Errorf("the DEL was not spooled: %v", err)
		}
	})
}

// TestHundredWorkloads starts 100 workloads at once on the dual-stack
// network, with detection on: every ADD succeeds, every address is
// distinct, and every workload reaches the gateway from its addresses.
func TestHundredWorkloads(t *testing.T) {
	const n = 100
	l := newLab(t)
	underlay := l.packaged("macvlan.conflist")
	ws := make([]cnilab.Attachment, n)
	for i := range ws {
		ws[i] = workload(t, fmt.Sprintf("burst%03d", i))
	}
	// Namespaces for the new sandboxes of workloads whose ADD fails.
	spares := make(chan string, 20)
	for range cap(spares) {
		spares <- workload(t, "spare").Netns
	}
	ctx := ctxFor(t, 5*time.Minute)
	type got struct {
		v4, v6 netip.Prefix
		err    error
		took   time.Duration
		// retried are the errors of the failed attempts.
		retried []error
	}
	results := make([]got, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() {
			t0 := time.Now()
			res, err := l.rt.Add(ctx, underlay, ws[i])
			// What a runtime does when a sandbox fails to start: tear the
			// network down and start a new sandbox (a new namespace and
			// container id, the same workload name). The bench counts
			// first-attempt failures; here the workload must start.
			for try := 2; err != nil && try <= 3; try++ {
				results[i].retried = append(results[i].retried, err)
				if derr := l.rt.Del(ctx, underlay, ws[i]); derr != nil {
					err = fmt.Errorf("DEL after a failed ADD (%v): %w", err, derr)
					break
				}
				select {
				case ns := <-spares:
					ws[i].ContainerID = fmt.Sprintf("%s-try%d", strings.SplitN(ws[i].ContainerID, "-", 2)[0], try)
					ws[i].Netns = ns
				default:
					err = fmt.Errorf("no spare namespace for another try (%w)", err)
					continue
				}
				res, err = l.rt.Add(ctx, underlay, ws[i])
			}
			results[i].err, results[i].took = err, time.Since(t0)
			if err == nil {
				r, cerr := current.NewResultFromResult(res)
				if cerr != nil {
					results[i].err = cerr
					return
				}
				for _, ip := range r.IPs {
					a, _ := netip.AddrFromSlice(ip.Address.IP)
					ones, _ := ip.Address.Mask.Size()
					if a.Unmap().Is4() {
						results[i].v4 = netip.PrefixFrom(a.Unmap(), ones)
					} else {
						results[i].v6 = netip.PrefixFrom(a, ones)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	seen := map[netip.Addr]string{}
	var slowest time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Errorf("ADD %s: %v", ws[i].ContainerID, r.err)
			continue
		}
		slowest = max(slowest, r.took)
		for _, p := range []netip.Prefix{r.v4, r.v6} {
			if !p.IsValid() {
				t.Errorf("%s got %v %v: want both families", ws[i].ContainerID, r.v4, r.v6)
				continue
			}
			if other, dup := seen[p.Addr()]; dup {
				t.Errorf("%v given to %s and %s", p.Addr(), other, ws[i].ContainerID)
			}
			seen[p.Addr()] = ws[i].ContainerID
		}
	}
	retries := 0
	for i, r := range results {
		if r.retried != nil {
			retries++
			t.Logf("%s started after %d failed attempts: %v", ws[i].ContainerID, len(r.retried), r.retried)
		}
	}
	t.Logf("%d concurrent dual-stack ADDs through macvlan with detection on: %v in all, slowest %v, %d retried", n, elapsed, slowest, retries)
	if t.Failed() {
		t.FailNow()
	}
	if u := l.usage("underlay-v4"); u.Allocated != n {
		t.Errorf("underlay-v4 has %d allocated, want %d", u.Allocated, n)
	}
	// Every workload reaches its gateway, from both of its addresses; a
	// few at a time, so that the 2-core machine is not the bottleneck.
	sem := make(chan struct{}, 8)
	for i := range ws {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := cnilab.Ping(ws[i].Netns, results[i].v4.Addr(), netlab.Addr(netlab.GW4), 10*time.Second); err != nil {
				t.Error(err)
			}
			if err := cnilab.Ping(ws[i].Netns, results[i].v6.Addr(), netlab.Addr(netlab.GW6), 10*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range ws {
		wg.Go(func() {
			if err := l.rt.Del(ctx, underlay, ws[i]); err != nil {
				t.Errorf("DEL %s: %v", ws[i].ContainerID, err)
			}
		})
	}
	wg.Wait()
	if u := l.usage("underlay-v4"); u.Allocated != 0 || u.Reserved != 0 {
		t.Errorf("underlay-v4 after 100 DELs: %+v", u)
	}
}
