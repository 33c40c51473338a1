package cni

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// The conflict watch as a runtime drives it: a workload gets its addresses
// through a CNI ADD (macvlan over the node's uplink, the packaged conflist,
// pools with conflict detection on); another host on the LAN takes them and
// announces each once - a gratuitous ARP from iputils arping, an unsolicited
// NA - and within 2 s `ipam show` names that host's MAC and the metrics
// count the conflicts. Neither the workload's own announcements (macvlan's
// gratuitous ARP at ADD, and ours) nor, after a DEL and an ADD of the same
// container in a new namespace with a new MAC, the restarted workload's,
// raise a conflict.
func TestWatchConflictCNI(t *testing.T) {
	l := newLabWith(t, fmt.Sprintf("metrics {\n  enabled = true\n  port = %d\n}\n", config.DefaultMetricsPort))
	underlay := l.packaged("macvlan.conflist")
	w := workload(t, "watch")
	v4, v6 := l.mustAddAddrs(t, ctxFor(t, time.Minute), underlay, w)
	a4, a6 := v4.Addr(), v6.Addr()
	wlMAC := ifaceMAC(t, w)
	self := netlab.OpenRaw(t, w.Netns, w.IfName)
	self.Send(t)(arpnd.BuildGratuitousARP(wlMAC, a4))
	self.Send(t)(arpnd.BuildUnsolicitedNA(wlMAC, a6))

	// The busy host takes both addresses and announces each once.
	busy := l.lan.Busy
	netlab.IP(t, busy.NS, "addr", "add", v4.String(), "dev", "eth0")
	netlab.IP(t, busy.NS, "addr", "add", v6.String(), "dev", "eth0", "nodad")
	bp := netlab.OpenRaw(t, busy.Path, "eth0")
	// arping sends at once but exits only after its 1 s interval: the
	// watch is polled while it runs.
	var arpOut strings.Builder
	arping := exec.Command("ip", "netns", "exec", busy.NS, "arping", "-U", "-c", "1", "-I", "eth0", a4.String())
	arping.Stdout, arping.Stderr = &arpOut, &arpOut
	sent := time.Now()
	if err := arping.Start(); err != nil {
		t.Fatalf("arping: %v", err)
	}
	bp.Send(t)(arpnd.BuildUnsolicitedNA(busy.MAC, a6))

	var seen time.Duration
	poll.Until(t, 10*time.Second, "ipam show to name the busy host's MAC for both addresses", func() (bool, error) {
		for _, a := range []netip.Addr{a4, a6} {
			out, errOut, code := l.agent.CLI("ipam", "show", a.String(), "--socket", l.sock)
			if code != 0 {
				return false, fmt.Errorf("ipam show %s: exit %d\n%s%s", a, code, out, errOut)
			}
			if !strings.Contains(out, netlab.BusyMAC) {
				return false, nil
			}
		}
		seen = time.Since(sent)
		return true, nil
	})
	if err := arping.Wait(); err != nil {
		t.Fatalf("arping -U %s on the busy host: %v\n%s", a4, err, arpOut.String())
	}
	t.Logf("ipam show names the busy host %v after arping started", seen)
	// Detection is the watcher's own time of the first claim (first_seen),
	// not when a forked CLI on a busy machine got to show it.
	for _, a := range []netip.Addr{a4, a6} {
		cr, err := l.api.Conflicts(ctxFor(t, 10*time.Second), 0, a)
		if err != nil {
			t.Fatal(err)
		}
		if len(cr.Conflicts) == 0 {
			t.Fatalf("no conflict recorded for %s", a)
		}
		took := cr.Conflicts[0].FirstSeen.Sub(sent)
		t.Logf("%s: the watcher saw the claim %v after it was sent", a, took)
		if took > 2*time.Second {
			t.Errorf("%s: the claim was seen %v after it was sent, want within 2 s", a, took)
		}
	}
	for a, evidence := range map[netip.Addr]string{a4: "gratuitous-arp", a6: "neighbor-advertisement"} {
		out, errOut, _ := l.agent.CLI("ipam", "show", a.String(), "--socket", l.sock)
		if !strings.Contains(out, evidence) || !strings.Contains(out, wlMAC.String()) {
			t.Errorf("ipam show %s lacks the %s or the holder %s:\n%s%s", a, evidence, wlMAC, out, errOut)
		}
	}
	l.wantConflictMetrics(t, 1, 1)
	if cs := l.conflictStatus(t); cs.Detected != 2 || cs.Watching != 1 {
		t.Errorf("status conflicts %+v, want 2 detected (the busy host's), 1 watched", cs)
	}

	// The host gives the addresses back; the workload restarts: DEL, then
	// ADD of the same container and interface in a new namespace, where
	// macvlan makes an interface with a new MAC.
	netlab.IP(t, busy.NS, "addr", "del", v4.String(), "dev", "eth0")
	netlab.IP(t, busy.NS, "addr", "del", v6.String(), "dev", "eth0")
	if err := l.rt.Del(ctxFor(t, time.Minute), underlay, w); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	w2 := workload(t, "watch")
	n4, n6 := l.mustAddAddrs(t, ctxFor(t, time.Minute), underlay, w2)
	newMAC := ifaceMAC(t, w2)
	if newMAC.String() == wlMAC.String() {
		t.Fatalf("macvlan gave the restarted workload the old MAC %s", newMAC)
	}
	t.Logf("restarted workload: %v %v (was %v %v), MAC %s (was %s)", n4, n6, v4, v6, newMAC, wlMAC)
	self2 := netlab.OpenRaw(t, w2.Netns, w2.IfName)
	self2.Send(t)(arpnd.BuildGratuitousARP(newMAC, n4.Addr()))
	self2.Send(t)(arpnd.BuildUnsolicitedNA(newMAC, n6.Addr()))
	// Then the busy host claims the new IPv4 address: once that conflict is
	// recorded, the watcher has read every frame the workload sent before.
	bp.Send(t)(arpnd.BuildGratuitousARP(busy.MAC, n4.Addr()))
	ctx := ctxFor(t, time.Minute)
	poll.Until(t, 10*time.Second, "the busy host's claim against the restarted workload", func() (bool, error) {
		cs, err := l.api.Conflicts(ctx, 0, netip.Addr{})
		if err != nil {
			return false, err
		}
		found := false
		for _, c := range append(cs.Conflicts, cs.Contested...) {
			if c.MAC == newMAC.String() || c.MAC == wlMAC.String() {
				return false, fmt.Errorf("the workload's own MAC is a conflict: %+v", c)
			}
			if c.Address == n4.Addr() && c.MAC == netlab.BusyMAC && c.HolderMAC == newMAC.String() {
				found = true
			}
		}
		return found, nil
	})
	if cs := l.conflictStatus(t); cs.Detected != 3 || cs.Watching != 1 {
		t.Errorf("after the restart: status conflicts %+v, want 3 detected (the busy host's), 1 watched", cs)
	}
	l.wantConflictMetrics(t, 2, 1)
}

// ifaceMAC reads the MAC of a workload's interface.
func ifaceMAC(t *testing.T, a cnilab.Attachment) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := netns.Do(a.Netns, func() error {
		ifi, err := net.InterfaceByName(a.IfName)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", a.IfName, filepath.Base(a.Netns), err)
	}
	return mac
}

// conflictStatus is the conflict part of `status --json`.
func (l *lab) conflictStatus(t *testing.T) api.ConflictStatus {
	t.Helper()
	st, err := l.agent.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.IPAM == nil || st.IPAM.Conflicts == nil {
		t.Fatalf("status --json has no IPAM conflicts: %+v", st)
	}
	return *st.IPAM.Conflicts
}

// wantConflictMetrics checks spiderpool_ipam_conflicts_detected_total of
// the underlay pools.
func (l *lab) wantConflictMetrics(t *testing.T, v4, v6 int) {
	t.Helper()
	_, body, err := l.agent.Get(config.DefaultMetricsPort, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for pool, n := range map[string]int{"underlay-v4": v4, "underlay-v6": v6} {
		want := fmt.Sprintf("spiderpool_ipam_conflicts_detected_total{pool=%q} %d\n", pool, n)
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", strings.TrimSpace(want))
		}
	}
}
