package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Pools on netlab's standard LAN (10.0.0.0/24, fd00::/64; gateway .1 / ::1
// answers; busy host owns .10 / ::10).
const lanPools = `
pool "lan4" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.10-10.0.0.29"]
  gateway            = "10.0.0.1"
  conflict_detection = true
  gateway_detection  = true
  route { dst = "0.0.0.0/0" }
}
pool "lan6" {
  subnet             = "fd00::/64"
  ranges             = ["fd00::10-fd00::2f"]
  gateway            = "fd00::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "deadgw" {
  subnet            = "10.0.0.0/24"
  ranges            = ["10.0.0.100-10.0.0.109"]
  gateway           = "10.0.0.2"
  gateway_detection = true
}
`

// TestDoneWhen is IPAM's acceptance, as a new user would do it with
// the CLI: two pools on the namespace LAN, a dual-stack pair for a workload
// whose interface is still down, the address a LAN host owns skipped with
// the reason, the history capped, and a pool above the cap refused.
func TestDoneWhen(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	a := startIPAM(t, agentOpts{pools: lanPools, env: []string{"SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS=3"}})
	wl := workload(t, lan.LAN, "wl1", "02:00:00:00:01:01", true)
	cli := func(args ...string) (string, int) {
		t.Helper()
		out, errOut, code := a.CLI(append([]string{"ipam"}, append(args, "--socket", a.Socket)...)...)
		return out + errOut, code
	}
	alloc := func(cid string, extra ...string) (api.Attachment, string, int) {
		t.Helper()
		args := append([]string{"allocate", "--container-id", cid, "--interface", "eth0", "--netns", wl.Path, "--workload", "default/web-0", "--pool", "lan4", "--pool", "lan6"}, extra...)
		out, code := cli(args...)
		var att api.Attachment
		if code == 0 {
			jout, _ := cli(append(args, "--json")...) // the same key: the same answer
			if err := json.Unmarshal([]byte(jout), &att); err != nil {
				t.Fatalf("allocate --json: %v\n%s", err, jout)
			}
		}
		return att, out, code
	}

	// Dual stack in one window (both pools vet conflict and gateway).
	start := time.Now()
	att, out, code := alloc("ctr1")
	took := time.Since(start)
	if code != 0 || len(att.Addresses) != 2 {
		t.Fatalf("allocate: exit %d\n%s", code, out)
	}
	t.Logf("dual-stack allocation with both detectors through the CLI: %v\n%s", took, out)
	a4, a6 := att.Addresses[0].Address.Addr(), att.Addresses[1].Address.Addr()
	if a4 == netip.MustParseAddr(netlab.Busy4) || a6 == netip.MustParseAddr(netlab.Busy6) {
		t.Fatalf("got a busy address: %v", att.Addresses)
	}
	// The probe needed the interface up; it is put back down afterwards.
	if link := netlab.IP(t, wl.NS, "-o", "link", "show", "eth0"); strings.Contains(link, ",UP") {
		t.Errorf("eth0 left up after the probe: %s", link)
	}

	// The workload's next container gets the same pair back (sticky) -
	// unless a LAN host now owns it: then it is skipped, quarantined, and
	// the next address is returned, saying why.
	if out, code := cli("release", "--container-id", "ctr1", "--interface", "eth0"); code != 0 {
		t.Fatalf("release: %s", out)
	}
	netlab.IP(t, lan.Busy.NS, "addr", "add", a4.String()+"/24", "dev", "eth0")
	att2, out, code := alloc("ctr2")
	if code != 0 {
		t.Fatalf("allocate over a busy sticky address: exit %d\n%s", code, out)
	}
	if att2.Addresses[1].Address.Addr() != a6 {
		t.Errorf("IPv6 not sticky: %s then %s", a6, att2.Addresses[1].Address.Addr())
	}
	if got := att2.Addresses[0].Address.Addr(); got == a4 {
		t.Fatalf("got %s, which the busy host owns", got)
	}
	want := fmt.Sprintf("quarantined %s (pool lan4): ip-conflict: %s is in use by %s on eth0", a4, a4, netlab.BusyMAC)
	if !strings.Contains(out, want) {
		t.Errorf("allocate output lacks %q:\n%s", want, out)
	}
	pools, _ := cli("pools")
	if !has(pools, "lan4", "ipv4", "10.0.0.0/24") {
		t.Errorf("pools:\n%s", pools)
	}
	if u := poolUsage(t, a, "lan4"); u.Size != 20 || u.Allocated != 1 || u.Quarantined != 1 || u.Free != 18 {
		t.Errorf("lan4 usage %+v", u)
	}
	show, _ := cli("show", a4.String())
	if !has(show, "default/web-0", "ctr1") {
		t.Errorf("show %s:\n%s", a4, show)
	}
	checkQuarantineShown(t, cli, a4, netlab.BusyMAC)

	// History capped at SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS=3
	// entries per workload, newest first.
	for i := 3; i <= 4; i++ {
		cli("release", "--workload", "default/web-0")
		if _, out, code := alloc(fmt.Sprint("ctr", i)); code != 0 {
			t.Fatalf("allocate ctr%d: %s", i, out)
		}
	}
	jout, _ := cli("show", "default/web-0", "--json")
	var hist []api.HistoryRecord
	if err := json.Unmarshal([]byte(jout), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || hist[0].ContainerID != "ctr4" || hist[2].ContainerID != "ctr3" {
		t.Errorf("history (cap 3, newest first): %+v", hist)
	}

	// status says IPAM is on with its pools.
	st, _, _ := a.CLI("status", "--socket", a.Socket)
	if !has(st, "IPAM: on", a.PoolDir, "lan4", "lan6", "deadgw") {
		t.Errorf("status:\n%s", st)
	}

	// A pool larger than SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS is refused at
	// start, with its size and the limit.
	big := startIPAM(t, agentOpts{pools: lanPools, env: []string{"SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS=15"}, noWait: true})
	if code, ok := big.ExitCode(15 * time.Second); !ok || code != 1 {
		t.Fatalf("agent with a pool above the cap: exit %d %v", code, ok)
	}
	if log := big.Log(); !has(log, "pools.hcl:2:1", `Pool "lan4" has 20 addresses, more than max_allocated_ips (SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS) = 15`, `"lan6" has 32 addresses`) {
		t.Errorf("log of the refused start:\n%s", log)
	}
}

func TestDeadGatewayFailsAndLeaksNothing(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	a := startIPAM(t, agentOpts{pools: lanPools})
	wl := workload(t, lan.LAN, "wl1", "02:00:00:00:01:01", false)
	start := time.Now()
	_, err := a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: "c1", Interface: "eth0", Netns: wl.Path, Pools: []string{"deadgw"}})
	ae := apiErr(t, err)
	if ae.Code != api.CodeGateway || ae.Status != 422 || !strings.Contains(ae.ErrorBody.Error, "gateway 10.0.0.2 did not answer within 100ms on eth0") {
		t.Fatalf("%d %+v", ae.Status, ae.ErrorBody)
	}
	// At once: one window, not one per candidate.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a dead gateway took %v to fail", took)
	}
	if u := poolUsage(t, a, "deadgw"); u.Allocated+u.Reserved+u.Quarantined != 0 {
		t.Fatalf("leaked: %+v", u)
	}
	if list, _ := a.Client.List(ctx(t), "", ""); len(list) != 0 {
		t.Fatalf("leaked: %+v", list)
	}
}

func TestAPIEdges(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: `
pool "tiny" {
  subnet = "10.7.0.0/24"
  ranges = ["10.7.0.10-10.7.0.11"]
  conflict_detection = false
}
pool "six" {
  subnet = "fd07::/64"
  ranges = ["fd07::10-fd07::11"]
  conflict_detection = false
}
`})
	c := ctx(t)
	// Malformed input: 400 naming the field.
	for _, tc := range []struct {
		req   api.AllocateRequest
		field string
	}{
		{api.AllocateRequest{Interface: "eth0", Pools: []string{"tiny"}}, "container_id"},
		{api.AllocateRequest{ContainerID: "c", Interface: "a/b", Pools: []string{"tiny"}}, "interface"},
		{api.AllocateRequest{ContainerID: "c", Interface: "eth0", Pools: []string{"tiny", "tiny"}}, "pools[1]"},
		{api.AllocateRequest{ContainerID: "c", Interface: "eth0", Netns: "x", Pools: []string{"tiny"}}, "netns"},
	} {
		_, err := a.Client.Allocate(c, tc.req)
		if ae := apiErr(t, err); ae.Status != 400 || ae.Field != tc.field {
			t.Errorf("%+v: %d field %q: %s", tc.req, ae.Status, ae.Field, ae.ErrorBody.Error)
		}
	}
	// Unknown JSON field: 400 naming it (strict decoding).
	out, errOut, code := agenttest.RunCLI(bins, "", "ipam", "allocate", "--socket", a.Socket, "--container-id", "c", "--interface", "eth0")
	if code != 2 || !strings.Contains(errOut, "--pool") {
		t.Errorf("allocate without --pool: exit %d %s %s", code, out, errOut)
	}
	// Dual stack, repeated allocate, exhaustion, release of unknown.
	req := api.AllocateRequest{ContainerID: "c1", Interface: "eth0", Pools: []string{"tiny", "six"}}
	att, err := a.Client.Allocate(c, req)
	if err != nil || len(att.Addresses) != 2 {
		t.Fatalf("%+v %v", att, err)
	}
	again, err := a.Client.Allocate(c, req)
	if err != nil || again.Addresses[0].Address != att.Addresses[0].Address || again.Addresses[1].Address != att.Addresses[1].Address {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if _, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c2", Interface: "eth0", Pools: []string{"tiny"}}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c3", Interface: "eth0", Pools: []string{"tiny"}})
	if ae := apiErr(t, err); ae.Code != api.CodePoolFull || !strings.Contains(ae.ErrorBody.Error, `pool "tiny" is full: all 2 addresses`) {
		t.Fatalf("exhausted: %+v", ae.ErrorBody)
	}
	if got, ok, err := a.Client.Get(c, api.AttachmentKey{ContainerID: "c1", Interface: "eth0"}); err != nil || !ok || len(got.Addresses) != 2 {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
	if _, ok, err := a.Client.Get(c, api.AttachmentKey{ContainerID: "nope", Interface: "eth0"}); ok || err != nil {
		t.Fatalf("get unknown: %v %v", ok, err)
	}
	if list, err := a.Client.List(c, "six", ""); err != nil || len(list) != 1 {
		t.Fatalf("list six: %+v %v", list, err)
	}
	res, err := a.Client.Release(c, api.ReleaseRequest{ContainerID: "never", Interface: "eth0"})
	if err != nil || len(res.Released) != 0 {
		t.Fatalf("release unknown: %+v %v", res, err)
	}
	res, err = a.Client.Release(c, api.ReleaseRequest{ContainerID: "c1", Interface: "eth0"})
	if err != nil || len(res.Released) != 1 {
		t.Fatalf("release: %+v %v", res, err)
	}
}

func TestIPAMOffSaysSo(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	a.WaitReady(15 * time.Second)
	st, _, _ := a.CLI("status", "--socket", a.Socket)
	if !strings.Contains(st, "IPAM: off (no --ipam-config-dir given)") {
		t.Errorf("status:\n%s", st)
	}
	_, errOut, code := a.CLI("ipam", "pools", "--socket", a.Socket)
	if code != 1 || !strings.Contains(errOut, "IPAM is off: start the agent with --ipam-config-dir") {
		t.Errorf("ipam pools with IPAM off: %d %s", code, errOut)
	}
}

// Test500Concurrent: 500 allocations at once on one pool through the
// control API; every address distinct, the store consistent afterwards.
func Test500Concurrent(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: `
pool "burst" {
  subnet = "10.50.0.0/22"
  conflict_detection = false
}
`})
	const n = 500
	start := time.Now()
	got, errs := storetest.AllocateAtOnce(n, func(i int) (api.Attachment, error) {
		return a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: fmt.Sprint("b", i), Interface: "eth0", Pools: []string{"burst"}})
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d concurrent allocations in %v", n, time.Since(start))
	storetest.NoneTwice(t, got, func(i int) string { return fmt.Sprint("b", i) })
	if u := poolUsage(t, a, "burst"); u.Allocated != n || u.Reserved != 0 {
		t.Fatalf("usage %+v", u)
	}
	a.Stop()
	if list := consistent(t, a.DB); len(list) != n {
		t.Fatalf("%d allocations in the store, want %d", len(list), n)
	}
}

// TestKill9MidBurst: the agent is killed while allocations are being
// checked (reservations in the store); after a restart no address is held
// twice, no reservation dangles, and every allocation that was answered
// is still there.
func TestKill9MidBurst(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	wl := workload(t, lan.LAN, "wl1", "02:00:00:00:01:01", false)
	pools := `
pool "k" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.100-10.0.0.250"]
  conflict_detection = true
}
`
	a := startIPAM(t, agentOpts{pools: pools})
	const n = 120
	var mu sync.Mutex
	answered := map[string]netip.Addr{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cid := fmt.Sprint("k", i)
			att, err := a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: wl.Path, Pools: []string{"k"}})
			if err == nil {
				mu.Lock()
				answered[cid] = att.Addresses[0].Address.Addr()
				mu.Unlock()
			}
		}()
		if i == n/2 {
			// Half launched: kill as soon as reservations are in flight
			// (each check holds one for a 100ms window), however slow
			// the machine is to get there.
			waitReserved(t, a.Client)
			if err := a.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	<-a.Done()
	t.Logf("%d of %d allocations answered before the kill", len(answered), n)

	// Before restart: the file may hold reservations of the dead agent,
	// but never an address twice.
	b := startWithDir(t, agentOpts{db: a.DB}, a.PoolDir)
	// The kill must have caught allocations mid-check, or this test
	// proves nothing.
	m := regexp.MustCompile(`dangling_reservations_released=(\d+)`).FindStringSubmatch(b.Log())
	if m == nil || m[1] == "0" {
		t.Fatalf("the restart released no dangling reservation: the kill missed the burst\n%s", b.Log())
	}
	t.Logf("the restart released %s reservations of the killed agent", m[1])
	list, err := b.Client.List(ctx(t), "", "")
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]netip.Addr{}
	for _, att := range list {
		if att.State != "allocated" {
			t.Errorf("after restart: %+v", att)
		}
		held[att.ContainerID] = att.Addresses[0].Address.Addr()
	}
	for cid, ad := range answered {
		if held[cid] != ad {
			t.Errorf("%s was answered %s but the store holds %v", cid, ad, held[cid])
		}
	}
	if u := poolUsage(t, b, "k"); u.Reserved != 0 || u.Allocated != len(list) {
		t.Errorf("usage after restart %+v, %d allocations", u, len(list))
	}
	b.Stop()
	consistent(t, b.DB)
}

// TestGCDeletedAndLiveNamespace: only the allocation whose namespace is
// gone is released, and only at the second look. A VM's allocation, which
// has no namespace, is never examined nor released.
func TestGCDeletedAndLiveNamespace(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: `
pool "gc" {
  subnet = "10.60.0.0/24"
  conflict_detection = false
}
`, ipam: "  gc_interval = \"1h\"\n  gc_grace_period = \"300ms\"\n"})
	live, dead := tempNetns(t, "live"), tempNetns(t, "dead")
	c := ctx(t)
	for _, ns := range []string{live, dead} {
		if _, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c-" + ns[len(ns)-4:], Interface: "eth0", Netns: "/var/run/netns/" + ns, Pools: []string{"gc"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "vm-17", Interface: "eth0", Pools: []string{"gc"}}); err != nil {
		t.Fatal(err)
	}
	netlab.Run(t, "ip", "netns", "del", dead)
	first, err := a.Client.GC(c)
	if err != nil || first.Checked != 2 || len(first.Suspected) != 1 || len(first.Reclaimed) != 0 || first.Suspected[0].ContainerID != "c-dead" {
		t.Fatalf("first look: %+v %v", first, err)
	}
	// The second look comes after the grace period; polling because the
	// grace period is on the agent's clock.
	deadline := time.Now().Add(10 * time.Second)
	var second api.GCResult
	for time.Now().Before(deadline) {
		second, err = a.Client.GC(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(second.Reclaimed) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(second.Reclaimed) != 1 || second.Reclaimed[0].ContainerID != "c-dead" {
		t.Fatalf("second look: %+v", second)
	}
	list, _ := a.Client.List(c, "gc", "")
	if len(list) != 2 || list[0].ContainerID != "c-live" || list[1].ContainerID != "vm-17" {
		t.Fatalf("after GC: %+v", list)
	}
	// The live one, and the VM, survive any number of passes.
	for range 3 {
		if res, _ := a.Client.GC(c); len(res.Reclaimed) != 0 {
			t.Fatalf("GC freed a live allocation: %+v", res)
		}
	}
}

// TestReloadGrowAndOrphan: SIGHUP with a grown pool applies; one that would
// orphan a live allocation is refused naming the address, and the running
// pools stay.
func TestReloadGrowAndOrphan(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: `
pool "r" {
  subnet = "10.70.0.0/24"
  ranges = ["10.70.0.10"]
  conflict_detection = false
}
`})
	c := ctx(t)
	att, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c1", Interface: "eth0", Pools: []string{"r"}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(a.PoolDir, "pools.hcl"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pool \"r\" {\n  subnet = \"10.70.0.0/24\"\n  ranges = [\"10.70.0.10-10.70.0.19\"]\n  conflict_detection = false\n}\n")
	if out, errOut, code := a.CLI("ipam", "pools", "--socket", a.Socket); code != 0 || !strings.Contains(out, " 1 ") {
		t.Fatalf("%s %s", out, errOut)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netlab.WaitFor(t, "grown pool", func() (bool, error) {
		ps, err := a.Client.Pools(c)
		return err == nil && len(ps) == 1 && ps[0].Size == 10, err
	})
	// Shrink away from the allocated address: refused, with the address
	// (the control API's reload is what SIGHUP runs, with the answer).
	write("pool \"r\" {\n  subnet = \"10.70.0.0/24\"\n  ranges = [\"10.70.0.20-10.70.0.29\"]\n  conflict_detection = false\n}\n")
	err = (&api.Client{SocketPath: a.Socket}).Reload(c)
	want := `shrinking pool "r" would orphan 1 live allocation(s): ` + att.Addresses[0].Address.Addr().String()
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the running pools stay") {
		t.Fatalf("reload: %v", err)
	}
	if ps, _ := a.Client.Pools(c); ps[0].Size != 10 || ps[0].Ranges[0] != "10.70.0.10-10.70.0.19" {
		t.Fatalf("a refused reload changed the pools: %+v", ps)
	}
	// Removing the pool: refused as well, also by SIGHUP.
	write("")
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netlab.WaitFor(t, "refused removal", func() (bool, error) { return strings.Contains(a.Log(), `removing pool \"r\" would orphan`), nil })
	if ps, _ := a.Client.Pools(c); len(ps) != 1 {
		t.Fatalf("pools after refused removal: %+v", ps)
	}
}

// TestFreshInterfaceWithDAD: a workload interface as a CNI main plugin
// leaves it - down, with the kernel's DAD on - is raised for the probe.
// Its link-local stays tentative for about a second; the IPv6 gateway
// probe goes from :: rather than wait for it (the wait made every such
// allocation cost 1.2-2.3 s), so a dual-stack allocation with both
// detectors takes about one reply window.
func TestFreshInterfaceWithDAD(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	a := startIPAM(t, agentOpts{pools: lanPools})
	wl := freshWorkload(t, lan.LAN, "wl1", "02:00:00:00:01:01")
	start := time.Now()
	att, err := a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: "dad1", Interface: "eth0", Netns: wl.Path, Pools: []string{"lan4", "lan6"}})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("allocate on a fresh interface with DAD: %v", err)
	}
	t.Logf("%v after %v", att.Addresses, took)
	if took >= time.Second {
		t.Errorf("dual-stack allocation with both detectors on a fresh interface took %v; want < 1s (the link-local's DAD is not waited for)", took)
	}
	if link := netlab.IP(t, wl.NS, "-o", "link", "show", "eth0"); strings.Contains(link, ",UP") {
		t.Errorf("eth0 left up after the probe: %s", link)
	}
}

// freshWorkload is a workload whose eth0 is as a CNI main plugin leaves it
// in a new namespace: down, no addresses, the kernel's DAD on (one probe
// after a second), so that raising it starts a tentative link-local.
func freshWorkload(t *testing.T, lan *netlab.LAN, role, mac string) *netlab.Host {
	t.Helper()
	wl := workload(t, lan, role, mac, true)
	netlab.IP(t, wl.NS, "addr", "flush", "dev", "eth0")
	netlab.Sysctl(t, wl.NS, "net.ipv6.conf.eth0.accept_dad", "1", "net.ipv6.conf.eth0.dad_transmits", "1")
	return wl
}

// TestDetectionCostOnFreshInterfaces measures what detection adds to a
// dual-stack allocation on fresh interfaces: 30 allocations with conflict
// and gateway detection on, 30 with both off, interleaved, each on a new
// workload. The target is one reply window (100 ms) plus 15 ms at the
// median; the assertion is looser (loaded CI machines) but fails the old
// behaviour, which waited for the link-local's DAD (1.2-2.3 s).
func TestDetectionCostOnFreshInterfaces(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	a := startIPAM(t, agentOpts{pools: `
pool "on4" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.30-10.0.0.49"]
  gateway            = "10.0.0.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "on6" {
  subnet             = "fd00::/64"
  ranges             = ["fd00::30-fd00::4f"]
  gateway            = "fd00::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "off4" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.50-10.0.0.69"]
  gateway            = "10.0.0.1"
  conflict_detection = false
}
pool "off6" {
  subnet             = "fd00::/64"
  ranges             = ["fd00::50-fd00::6f"]
  gateway            = "fd00::1"
  conflict_detection = false
}
`})
	const n = 30
	var on, off []time.Duration
	slowGateway := 0
	for i := range n {
		for _, pools := range [][]string{{"on4", "on6"}, {"off4", "off6"}} {
			for attempt := 0; ; attempt++ {
				wl := freshWorkload(t, lan.LAN, fmt.Sprintf("c%s%d-%d", pools[0][:2], i, attempt), fmt.Sprintf("02:00:00:%02x:%02x:%02x", attempt, len(pools[0]), i))
				cid := fmt.Sprintf("cost-%s-%d-%d", pools[0], i, attempt)
				start := time.Now()
				_, err := a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: wl.Path, Pools: pools})
				took := time.Since(start)
				var apiErr *api.APIError
				if errors.As(err, &apiErr) && apiErr.Code == api.CodeGateway && slowGateway < 3 {
					// The gateway namespace's kernel answers well within
					// the 100 ms window, except on a machine busy enough
					// to delay its softirq past it: that is the window's
					// verdict, not the cost this test measures. Try a new
					// workload (three times in the whole test at most).
					slowGateway++
					t.Logf("allocate %s: %v (a slow answer on a loaded machine; not counted)", cid, err)
					netlab.IP(t, wl.NS, "link", "del", "eth0")
					continue
				}
				if err != nil {
					t.Fatalf("allocate %s from %v: %v", cid, pools, err)
				}
				if pools[0] == "on4" {
					on = append(on, took)
				} else {
					off = append(off, took)
				}
				if _, err := a.Client.Release(ctx(t), api.ReleaseRequest{ContainerID: cid, Interface: "eth0"}); err != nil {
					t.Fatal(err)
				}
				netlab.IP(t, wl.NS, "link", "del", "eth0") // keep the LAN's bridge small
				break
			}
		}
	}
	slices.Sort(on)
	slices.Sort(off)
	t.Logf("dual stack on fresh interfaces, %d each: detection on p50 %v (min %v, max %v); off p50 %v (min %v, max %v); added at p50 %v",
		n, on[n/2], on[0], on[n-1], off[n/2], off[0], off[n-1], on[n/2]-off[n/2])
	if on[n/2] >= time.Second {
		t.Errorf("median allocation with detection on took %v; want < 1s", on[n/2])
	}
}

// waitReserved polls the agent until it holds at least one reservation (an
// allocation under its check), so that a kill lands mid-allocation.
func waitReserved(t *testing.T, c *api.Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		list, err := c.List(ctx(t), "", "")
		if err != nil {
			t.Fatalf("list while waiting for a reservation: %v", err)
		}
		for _, at := range list {
			if at.State == "reserved" {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no reservation in flight within 60s")
}
