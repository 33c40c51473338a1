package probe_test

import (
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/vishvananda/netlink"
)

// The node has no IPv4 address at all: arp.Dial would refuse it, the engine
// must not care (its probes are sent from 0.0.0.0).
func TestConflictIPv4(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	netlab.InNS(t, l.Node.NS, func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 0 {
			t.Errorf("node eth0 has IPv4 addresses %v; the test needs none", addrs)
		}
		return nil
	})
	e := newEngine(t, probe.Options{})

	res := mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{})
	expect(t, res, probe.Conflict, netlab.BusyMAC)
	if res.Evidence != "arp-reply" || res.ProbesSent != 1 || res.RTT <= 0 || res.RTT > 50*time.Millisecond {
		t.Fatalf("busy: %+v", res)
	}
	t.Logf("busy IPv4 answered in %v (check took %v)", res.RTT, res.Elapsed)

	res = mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{})
	expect(t, res, probe.Free, "")
	if res.ProbesSent != 3 || res.Elapsed < 100*time.Millisecond {
		t.Fatalf("free: %+v", res)
	}
	// The gateway's own address is in use too.
	expect(t, mustConflict(t, e, on(l.Node, netlab.GW4), probe.Params{}), probe.Conflict, netlab.GwMAC)

	// Cross-check with arping -0 on the same addresses.
	if !arpingAnswered(t, l.Node, netlab.Busy4) {
		t.Error("arping: busy address not answered")
	}
	if arpingAnswered(t, l.Node, netlab.Free4) {
		t.Error("arping: free address answered")
	}
}

func TestConflictIPv6(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})

	res := mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{})
	expect(t, res, probe.Conflict, netlab.BusyMAC)
	if res.Evidence != "neighbor-advertisement" || res.RTT <= 0 || res.RTT > 50*time.Millisecond {
		t.Fatalf("busy: %+v", res)
	}
	t.Logf("busy IPv6 answered in %v (check took %v)", res.RTT, res.Elapsed)

	res = mustConflict(t, e, on(l.Node, netlab.Free6), probe.Params{})
	expect(t, res, probe.Free, "")
	if res.ProbesSent != 3 {
		t.Fatalf("free: %+v", res)
	}
	// The busy host's link-local address is detected too.
	var ll string
	netlab.InNS(t, l.Busy.NS, func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				ll = a.IP.String()
			}
		}
		return err
	})
	expect(t, mustConflict(t, e, on(l.Node, ll), probe.Params{}), probe.Conflict, netlab.BusyMAC)

	// An IPv4-mapped IPv6 address is an IPv4 check.
	expect(t, mustConflict(t, e, on(l.Node, "::ffff:"+netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
}

// Conflict checks work with IPv6 switched off on the node's interface (no
// link-local, no kernel multicast memberships): the socket joins the groups.
// So does a gateway check: without a link-local it probes from ::.
func TestIPv6DisabledOnNode(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	netlab.Sysctl(t, l.Node.NS, "net.ipv6.conf.eth0.disable_ipv6", "1")
	e := newEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free6), probe.Params{}), probe.Free, "")
	res := mustGateway(t, e, on(l.Node, netlab.GW6), probe.Params{})
	expect(t, res, probe.Reachable, netlab.GwMAC)
	if !res.Source.IsUnspecified() {
		t.Fatalf("gateway probe from %s, want ::", res.Source)
	}
}
