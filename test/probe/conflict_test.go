package probe_test

import (
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/vishvananda/netlink"
)

// The node has no IPv4 address at all: arp.Dial would refuse it, the engine
// must not care (its probes are sent from 0.0.0.0).
func TestConflictIPv4(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	inNS(t, l.node.ns, func() error {
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

	res := mustConflict(t, e, on(l.node, busy4), probe.Params{})
	expect(t, res, probe.Conflict, busyMAC)
	if res.Evidence != "arp-reply" || res.ProbesSent != 1 || res.RTT <= 0 || res.RTT > 50*time.Millisecond {
		t.Fatalf("busy: %+v", res)
	}
	t.Logf("busy IPv4 answered in %v (check took %v)", res.RTT, res.Elapsed)

	res = mustConflict(t, e, on(l.node, free4), probe.Params{})
	expect(t, res, probe.Free, "")
	if res.ProbesSent != 3 || res.Elapsed < 100*time.Millisecond {
		t.Fatalf("free: %+v", res)
	}
	// The gateway's own address is in use too.
	expect(t, mustConflict(t, e, on(l.node, gw4), probe.Params{}), probe.Conflict, gwMAC)

	// Cross-check with arping -0 on the same addresses.
	if !arpingAnswered(t, l.node, busy4) {
		t.Error("arping: busy address not answered")
	}
	if arpingAnswered(t, l.node, free4) {
		t.Error("arping: free address answered")
	}
}

func TestConflictIPv6(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	e := newEngine(t, probe.Options{})

	res := mustConflict(t, e, on(l.node, busy6), probe.Params{})
	expect(t, res, probe.Conflict, busyMAC)
	if res.Evidence != "neighbor-advertisement" || res.RTT <= 0 || res.RTT > 50*time.Millisecond {
		t.Fatalf("busy: %+v", res)
	}
	t.Logf("busy IPv6 answered in %v (check took %v)", res.RTT, res.Elapsed)

	res = mustConflict(t, e, on(l.node, free6), probe.Params{})
	expect(t, res, probe.Free, "")
	if res.ProbesSent != 3 {
		t.Fatalf("free: %+v", res)
	}
	// The busy host's link-local address is detected too.
	var ll string
	inNS(t, l.busy.ns, func() error {
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
	expect(t, mustConflict(t, e, on(l.node, ll), probe.Params{}), probe.Conflict, busyMAC)

	// An IPv4-mapped IPv6 address is an IPv4 check.
	expect(t, mustConflict(t, e, on(l.node, "::ffff:"+busy4), probe.Params{}), probe.Conflict, busyMAC)
}

// Conflict checks work with IPv6 switched off on the node's interface (no
// link-local, no kernel multicast memberships): the socket joins the groups.
// A gateway check cannot: it needs a link-local source.
func TestIPv6DisabledOnNode(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	sysctl(t, l.node.ns, "net.ipv6.conf.eth0.disable_ipv6", "1")
	e := newEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.node, busy6), probe.Params{}), probe.Conflict, busyMAC)
	expect(t, mustConflict(t, e, on(l.node, free6), probe.Params{}), probe.Free, "")
	_, err := e.CheckGateway(t.Context(), on(l.node, gw6), probe.Params{}, probe.Sender{})
	expectErr(t, err, probe.ErrNoLinkLocal, "cannot probe eth0")
}
