package probe_test

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func TestGatewayIPv4(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	e := newEngine(t, probe.Options{})

	res := mustGateway(t, e, on(l.Node, netlab.GW4), probe.Params{})
	expect(t, res, probe.Reachable, netlab.GwMAC)
	if res.Evidence != "arp-reply" || res.RTT <= 0 {
		t.Fatalf("present: %+v", res)
	}
	expect(t, mustGateway(t, e, on(l.Node, "10.0.0.99"), probe.Params{}), probe.Unreachable, "")

	// The probe form left nothing in the gateway's ARP cache.
	if out := netlab.Run(t, "ip", "-n", l.GW.NS, "neigh", "show", "dev", "eth0"); out != "" {
		t.Fatalf("gateway learnt a neighbour from an ARP probe: %q", out)
	}
}

func TestGatewayIPv6(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	netlab.IP(t, l.GW.NS, "addr", "add", "fe80::1/64", "dev", "eth0", "nodad")
	e := newEngine(t, probe.Options{})

	res := mustGateway(t, e, on(l.Node, netlab.GW6), probe.Params{})
	expect(t, res, probe.Reachable, netlab.GwMAC)
	if res.Evidence != "neighbor-advertisement" || res.RTT <= 0 {
		t.Fatalf("present: %+v", res)
	}
	expect(t, mustGateway(t, e, on(l.Node, "fe80::1"), probe.Params{}), probe.Reachable, netlab.GwMAC)
	expect(t, mustGateway(t, e, on(l.Node, "fd00::99"), probe.Params{}), probe.Unreachable, "")

	// A host that owns the address but is not asked (a busy host) answers
	// like a gateway would: reachability is about the address.
	expect(t, mustGateway(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Reachable, netlab.BusyMAC)

	// Cross-check with ndisc6.
	if !ndisc6Answered(t, l.Node, netlab.GW6) {
		t.Error("ndisc6: gateway did not answer")
	}
	if ndisc6Answered(t, l.Node, "fd00::99") {
		t.Error("ndisc6: absent gateway answered")
	}
}

// A gateway doing proxy ARP (proxy_arp=1) for a subnet behind it:
//   - it answers for its own address at once, whatever proxy_delay says;
//   - it never answers RFC 5227 probes for proxied addresses (Linux skips
//     proxying when the sender IP is 0.0.0.0), so a conflict check of such an
//     address says free, and a gateway check (always the probe form) says
//     unreachable, whatever proxy_delay says.
func TestProxyARPGateway(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	gw := l.GW.NS
	netlab.IP(t, gw, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	netlab.IP(t, gw, "link", "set", "up0", "up")
	netlab.IP(t, gw, "link", "set", "up1", "up")
	netlab.IP(t, gw, "route", "add", "203.0.113.0/24", "dev", "up0")
	netlab.Sysctl(t, gw,
		"net.ipv4.conf.all.forwarding", "1",
		"net.ipv4.conf.all.rp_filter", "0",
		"net.ipv4.conf.eth0.rp_filter", "0",
		"net.ipv4.conf.eth0.proxy_arp", "1",
		"net.ipv4.neigh.eth0.proxy_delay", "0")
	e := newEngine(t, probe.Options{})
	proxied := "203.0.113.7"

	expect(t, mustConflict(t, e, on(l.Node, proxied), probe.Params{}), probe.Free, "")
	expect(t, mustGateway(t, e, on(l.Node, proxied), probe.Params{}), probe.Unreachable, "")
	if arpingAnswered(t, l.Node, proxied) {
		t.Error("arping -0: proxy ARP answered a probe")
	}

	// A long proxy delay (random in [0, 10000 s)) does not hold back the
	// gateway's answer for its own address.
	netlab.Sysctl(t, gw, "net.ipv4.neigh.eth0.proxy_delay", "1000000")
	expect(t, mustGateway(t, e, on(l.Node, proxied), probe.Params{}), probe.Unreachable, "")
	expect(t, mustGateway(t, e, on(l.Node, netlab.GW4), probe.Params{}), probe.Reachable, netlab.GwMAC)
}
