package ipam

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

const watchPools = `
pool "w4" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.50-10.0.0.59"]
  defend = true
}
pool "w6" {
  subnet = "fd00::/64"
  ranges = ["fd00::50-fd00::5f"]
  defend = true
}
`

// announcement matches a gratuitous ARP or unsolicited NA for addr from mac.
func announcement(addr netip.Addr, mac net.HardwareAddr) func(*arpnd.Frame) bool {
	return func(f *arpnd.Frame) bool {
		if f.EthSrc != [6]byte(mac) {
			return false
		}
		for _, c := range arpnd.Claims(f) {
			if c.Addr == addr && c.MAC == [6]byte(mac) && (c.Evidence == arpnd.EvidenceGratuitousARP || c.Evidence == arpnd.EvidenceNA) {
				return true
			}
		}
		return false
	}
}

// A workload gets an address through the IPAM API; another host takes it
// and announces it once: within 2 s the conflict shows in the API and
// ipam show, status, the log and the metrics with that host's MAC, and the
// workload defends its address with exactly one announcement whatever
// follows. The workload's own announcements, and a restart of it with a new
// MAC in a new namespace, raise nothing.
func TestWatchConflict(t *testing.T) {
	lan := netlab.NewLAN(t)
	a := startIPAM(t, agentOpts{pools: watchPools,
		extra: fmt.Sprintf("metrics {\n  enabled = true\n  port = %d\n}\n", config.DefaultMetricsPort)})
	wlMAC, thiefMAC, newMAC := "02:00:00:00:02:01", "02:00:00:00:02:99", "02:00:00:00:02:02"
	wl := workload(t, lan, "wl", wlMAC, false)
	c := ctx(t)
	req := api.AllocateRequest{ContainerID: "c-watch", Interface: "eth0", Netns: wl.Path, Workload: "default/web-0", Pools: []string{"w4", "w6"}}
	att, err := a.Client.Allocate(c, req)
	if err != nil {
		t.Fatal(err)
	}
	a4, a6 := att.Addresses[0].Address.Addr(), att.Addresses[1].Address.Addr()
	// What a CNI main plugin does next: the addresses on the interface.
	netlab.IP(t, wl.NS, "addr", "add", att.Addresses[0].Address.String(), "dev", "eth0")
	netlab.IP(t, wl.NS, "addr", "add", att.Addresses[1].Address.String(), "dev", "eth0", "nodad")

	tap := netlab.OpenRaw(t, "/var/run/netns/"+lan.Bridge, "p-wl")
	self := netlab.OpenRaw(t, wl.Path, "eth0")
	// The workload's own announcements are not conflicts.
	self.Send(t)(arpnd.BuildGratuitousARP(wl.MAC, a4))
	self.Send(t)(arpnd.BuildUnsolicitedNA(wl.MAC, a6))

	thief := lan.AddHost("thief", thiefMAC)
	tp := netlab.OpenRaw(t, thief.Path, "eth0")
	thiefHW := thief.MAC
	sent := time.Now()
	tp.Send(t)(arpnd.BuildGratuitousARP(thiefHW, a4))
	tp.Send(t)(arpnd.BuildUnsolicitedNA(thiefHW, a6))

	var seen time.Duration
	poll.Until(t, 10*time.Second, "both conflicts recorded in the store", func() (bool, error) {
		res, err := a.Client.Conflicts(c, 0, netip.Addr{})
		if err != nil {
			return false, err
		}
		n := 0
		for _, cf := range res.Conflicts {
			if cf.MAC == thiefMAC && (cf.Address == a4 || cf.Address == a6) {
				n++
			}
			if cf.MAC == wlMAC {
				return false, fmt.Errorf("the workload's own announcement is a conflict: %+v", cf)
			}
		}
		seen = time.Since(sent)
		return n == 2, nil
	})
	if seen > 2*time.Second {
		t.Errorf("conflicts recorded %v after the claims, want within 2 s", seen)
	}
	t.Logf("conflicts recorded %v after the claims", seen)

	out, errOut, code := a.CLI("ipam", "show", a4.String(), "--socket", a.Socket)
	if code != 0 || !strings.Contains(out, thiefMAC) || !strings.Contains(out, "gratuitous-arp") || !strings.Contains(out, wlMAC) {
		t.Errorf("ipam show %s (exit %d) lacks the conflict:\n%s%s", a4, code, out, errOut)
	}
	out, _, _ = a.CLI("ipam", "conflicts", "--since", "1h", "--socket", a.Socket)
	if !strings.Contains(out, a6.String()) || !strings.Contains(out, "neighbor-advertisement") {
		t.Errorf("ipam conflicts lacks the NA conflict:\n%s", out)
	}
	if cs := a.watchStatus(t); cs.Contested != 2 || cs.Detected != 2 || cs.Latest == nil || cs.Latest.MAC != thiefMAC || cs.Watching != 1 {
		t.Errorf("status conflicts = %+v, want 2 contested, 2 detected, latest by %s, 1 watched", cs, thiefMAC)
	}
	if !strings.Contains(a.Log(), "address conflict: another station claims an allocated address") || !strings.Contains(a.Log(), thiefMAC) {
		t.Errorf("the log lacks the conflict:\n%s", a.Log())
	}
	_, body, err := a.Get(config.DefaultMetricsPort, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`spiderpool_ipam_conflicts_detected_total{pool="w4"} 1`, `spiderpool_ipam_conflicts_detected_total{pool="w6"} 1`,
		"spiderpool_ipam_addresses_contested 2", `spiderpool_ipam_conflict_defences_total{pool="w4"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Defence: one announcement per address, however many claims follow
	// within the defend interval.
	for range 5 {
		tp.Send(t)(arpnd.BuildGratuitousARP(thiefHW, a4))
		tp.Send(t)(arpnd.BuildUnsolicitedNA(thiefHW, a6))
	}
	poll.Until(t, 10*time.Second, "the agent to count 6 claims of each address", func() (bool, error) {
		res, err := a.Client.Conflicts(c, 0, netip.Addr{})
		if err != nil {
			return false, err
		}
		n := 0
		for _, cf := range res.Contested {
			if cf.MAC == thiefMAC && cf.Frames == 6 {
				if cf.Defended != 1 {
					return false, fmt.Errorf("%s defended %d times, want once", cf.Address, cf.Defended)
				}
				n++
			}
		}
		return n == 2, nil
	})
	// A frame of the workload's after the defence decisions: once the tap
	// has it, it has every announcement sent before.
	marker := netip.MustParseAddr("10.0.0.254")
	self.Send(t)(arpnd.BuildARPRequest(wl.MAC, a4, marker))
	poll.Until(t, 5*time.Second, "the marker at the tap", func() (bool, error) {
		return tap.Count(func(f *arpnd.Frame) bool { return f.Kind == arpnd.KindARPRequest && f.TargetIP == marker }) == 1, nil
	})
	// The tap also saw the workload's own two announcements sent above.
	if n := tap.Count(announcement(a4, wl.MAC)); n != 2 {
		t.Errorf("%d gratuitous ARPs for %s left the workload, want its own and one defence", n, a4)
	}
	if n := tap.Count(announcement(a6, wl.MAC)); n != 2 {
		t.Errorf("%d unsolicited NAs for %s left the workload, want its own and one defence", n, a6)
	}

	// The workload restarts in a new namespace with a new MAC; the runtime
	// ADDs again for the same container and interface.
	wl2 := workload(t, lan, "wl2", newMAC, false)
	req.Netns = wl2.Path
	if _, err := a.Client.Allocate(c, req); err != nil {
		t.Fatal(err)
	}
	netlab.IP(t, wl2.NS, "addr", "add", att.Addresses[0].Address.String(), "dev", "eth0")
	self2 := netlab.OpenRaw(t, wl2.Path, "eth0")
	self2.Send(t)(arpnd.BuildGratuitousARP(wl2.MAC, a4))
	self2.Send(t)(arpnd.BuildUnsolicitedNA(wl2.MAC, a6))
	// The old namespace is still on the LAN and sees the new MAC's
	// announcements: only a watcher left there would report them. Then
	// the thief claims again: a conflict of the new holder.
	tp.Send(t)(arpnd.BuildGratuitousARP(thiefHW, a4))
	poll.Until(t, 5*time.Second, "the thief's claim against the restarted workload", func() (bool, error) {
		res, err := a.Client.Conflicts(c, 0, a4)
		if err != nil {
			return false, err
		}
		for _, cf := range res.Contested {
			if cf.MAC == newMAC {
				return false, fmt.Errorf("the restarted workload's MAC is a conflict: %+v", cf)
			}
			if cf.MAC == thiefMAC && cf.HolderMAC == newMAC {
				return true, nil
			}
		}
		return false, nil
	})
	if cs := a.watchStatus(t); cs.Detected != 3 || cs.Watching != 1 {
		t.Errorf("after the restart: status conflicts %+v, want 3 detected (the new holder's), 1 watched", cs)
	}

	// A release stops the watch before it answers, without waiting for a
	// resync of the whole store: nothing is watched once the DEL returns.
	if _, err := a.Client.Release(c, api.ReleaseRequest{ContainerID: "c-watch", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if cs := a.watchStatus(t); cs.Watching != 0 {
		t.Errorf("after the release: status conflicts %+v, want nothing watched", cs)
	}
}

func (a *ipamAgent) watchStatus(t *testing.T) api.ConflictStatus {
	t.Helper()
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.IPAM == nil || st.IPAM.Conflicts == nil {
		t.Fatalf("status --json has no IPAM conflicts: %+v", st)
	}
	return *st.IPAM.Conflicts
}
