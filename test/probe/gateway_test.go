package probe_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func TestGatewayIPv4(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})

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

// An IPv6 gateway check on an interface without a usable link-local
// address - a fresh one whose link-local is still in DAD, or one with
// IPv6 addresses off - probes from :: at once instead of waiting for DAD
// or failing. The Linux kernel as the gateway, router (forwarding on) or
// not, answers such a probe for an address it holds with an NA to
// all-nodes, solicited flag clear, router flag as its forwarding setting
// (RFC 4861 7.2.4; ndisc_recv_ns treats it as DAD), and learns no
// neighbour from it.
func TestGatewayIPv6FromUnspecified(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		forward string
		node    func(t *testing.T, h *netlab.Host)
	}{
		{"tentative link-local, host gateway", "0", tentativeLinkLocal},
		{"tentative link-local, router gateway", "1", tentativeLinkLocal},
		{"no IPv6 on the node, router gateway", "1", func(t *testing.T, h *netlab.Host) {
			netlab.Sysctl(t, h.NS, "net.ipv6.conf.eth0.disable_ipv6", "1")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := netlab.NewStdLAN(t)
			netlab.Sysctl(t, l.GW.NS, "net.ipv6.conf.all.forwarding", tc.forward)
			tc.node(t, l.Node)
			capt := startCapture(t, l.Node)
			e := newEngine(t, probe.Options{})

			res := mustGateway(t, e, on(l.Node, netlab.GW6), probe.Params{})
			expect(t, res, probe.Reachable, netlab.GwMAC)
			if !res.Source.IsUnspecified() || res.Evidence != "neighbor-advertisement" || res.RTT >= probe.DefaultWindow {
				t.Fatalf("result %+v, want an answer to a probe from :: within the window", res)
			}
			// The probe: a DAD-form NS, from :: with no options (Linux
			// drops a DAD NS carrying a source link-layer option).
			for _, f := range capt.waitMatching(t, "the node's NS", 1, func(f []byte) bool {
				nd, ok := parseIPv6ICMP(f)
				return ok && nd.icmp[0] == 135 && bytes.Equal(f[6:12], l.Node.MAC)
			}) {
				nd, _ := parseIPv6ICMP(f)
				if !nd.src.IsUnspecified() || nd.dst != netlab.Addr("ff02::1:ff00:1") || len(nd.icmp) != 24 || !checksumOK(nd.src, nd.dst, nd.icmp) {
					t.Fatalf("probe from %s to %s, %d bytes of ICMPv6: want :: to ff02::1:ff00:1, no options", nd.src, nd.dst, len(nd.icmp))
				}
			}
			nas := capt.waitMatching(t, "the gateway's NA", 1, func(f []byte) bool {
				nd, ok := parseIPv6ICMP(f)
				return ok && nd.icmp[0] == 136 && len(nd.icmp) >= 24 &&
					netip.AddrFrom16([16]byte(nd.icmp[8:24])) == netlab.Addr(netlab.GW6)
			})
			nd, _ := parseIPv6ICMP(nas[0])
			router, solicited := nd.icmp[4]&0x80 != 0, nd.icmp[4]&0x40 != 0
			if nd.dst != netlab.Addr("ff02::1") || solicited || router != (tc.forward == "1") {
				t.Fatalf("NA to %s, solicited %v, router %v; want to ff02::1, not solicited, router %v",
					nd.dst, solicited, router, tc.forward == "1")
			}
			// Nothing answers for an address nobody holds.
			expect(t, mustGateway(t, e, on(l.Node, "fd00::99"), probe.Params{}), probe.Unreachable, "")
			if out := netlab.IP(t, l.GW.NS, "-6", "neigh", "show", "dev", "eth0"); out != "" {
				t.Fatalf("gateway learnt a neighbour from a probe from ::: %q", out)
			}
		})
	}
}

// tentativeLinkLocal gives h's eth0 what a CNI main plugin leaves: a
// link-local address still in DAD (the kernel's defaults, one probe after
// a second).
func tentativeLinkLocal(t *testing.T, h *netlab.Host) {
	t.Helper()
	netlab.Sysctl(t, h.NS, "net.ipv6.conf.eth0.accept_dad", "1", "net.ipv6.conf.eth0.dad_transmits", "1")
	netlab.IP(t, h.NS, "link", "set", "eth0", "down")
	netlab.IP(t, h.NS, "addr", "flush", "dev", "eth0")
	netlab.IP(t, h.NS, "link", "set", "eth0", "up")
	netlab.WaitFor(t, "a tentative link-local on eth0", func() (bool, error) {
		out := netlab.IP(t, h.NS, "-6", "addr", "show", "dev", "eth0", "scope", "link")
		return strings.Contains(out, "tentative"), nil
	})
}
