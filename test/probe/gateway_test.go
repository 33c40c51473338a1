package probe_test

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
)

func TestGatewayIPv4(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	e := newEngine(t, probe.Options{})

	res := mustGateway(t, e, on(l.node, gw4), probe.Params{}, probe.Sender{})
	expect(t, res, probe.Reachable, gwMAC)
	if res.Evidence != "arp-reply" || res.RTT <= 0 {
		t.Fatalf("present: %+v", res)
	}
	expect(t, mustGateway(t, e, on(l.node, "10.0.0.99"), probe.Params{}, probe.Sender{}), probe.Unreachable, "")

	// The probe form left nothing in the gateway's ARP cache.
	if out := mustRun(t, "ip", "-n", l.gw.ns, "neigh", "show", "dev", "eth0"); out != "" {
		t.Fatalf("gateway learnt a neighbour from an ARP probe: %q", out)
	}

	// A sender address is refused until the caller vouches for its
	// conflict check, and then written into the gateway's cache.
	_, err := e.CheckGateway(t.Context(), on(l.node, gw4), probe.Params{}, probe.Sender{Addr: addr("10.0.0.60")})
	expectErr(t, err, probe.ErrInvalid, "conflict check")
	res = mustGateway(t, e, on(l.node, gw4), probe.Params{}, probe.Sender{Addr: addr("10.0.0.60"), ConflictChecked: true})
	expect(t, res, probe.Reachable, gwMAC)
	waitFor(t, "gateway neighbour entry for the sender", func() (bool, error) {
		out := mustRun(t, "ip", "-n", l.gw.ns, "neigh", "show", "10.0.0.60")
		return len(out) > 0, nil
	})
}

func TestGatewayIPv6(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	ipn(t, l.gw.ns, "addr", "add", "fe80::1/64", "dev", "eth0", "nodad")
	e := newEngine(t, probe.Options{})

	res := mustGateway(t, e, on(l.node, gw6), probe.Params{}, probe.Sender{})
	expect(t, res, probe.Reachable, gwMAC)
	if res.Evidence != "neighbor-advertisement" || res.RTT <= 0 {
		t.Fatalf("present: %+v", res)
	}
	expect(t, mustGateway(t, e, on(l.node, "fe80::1"), probe.Params{}, probe.Sender{}), probe.Reachable, gwMAC)
	expect(t, mustGateway(t, e, on(l.node, "fd00::99"), probe.Params{}, probe.Sender{}), probe.Unreachable, "")

	// A host that owns the address but is not asked (a busy host) answers
	// like a gateway would: reachability is about the address.
	expect(t, mustGateway(t, e, on(l.node, busy6), probe.Params{}, probe.Sender{}), probe.Reachable, busyMAC)

	// With an explicit, vouched-for source.
	ipn(t, l.node.ns, "addr", "add", "fd00::60/64", "dev", "eth0", "nodad")
	res = mustGateway(t, e, on(l.node, gw6), probe.Params{}, probe.Sender{Addr: addr("fd00::60"), ConflictChecked: true})
	expect(t, res, probe.Reachable, gwMAC)

	// Cross-check with ndisc6.
	if !ndisc6Answered(t, l.node, gw6) {
		t.Error("ndisc6: gateway did not answer")
	}
	if ndisc6Answered(t, l.node, "fd00::99") {
		t.Error("ndisc6: absent gateway answered")
	}
}

// A gateway doing proxy ARP (proxy_arp=1) for a subnet behind it:
//   - it answers for its own address at once, whatever proxy_delay says;
//   - it never answers RFC 5227 probes for proxied addresses (Linux skips
//     proxying when the sender IP is 0.0.0.0), so a conflict check of such an
//     address says free, and a probe-form gateway check says unreachable;
//   - with a real sender IP it answers, immediately with proxy_delay=0, and
//     after a random delay up to proxy_delay otherwise (broadcast requests are
//     queued): past the window, so unreachable.
func TestProxyARPGateway(t *testing.T) {
	t.Parallel()
	l := newStdLAN(t)
	gw := l.gw.ns
	ipn(t, gw, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	ipn(t, gw, "link", "set", "up0", "up")
	ipn(t, gw, "link", "set", "up1", "up")
	ipn(t, gw, "route", "add", "203.0.113.0/24", "dev", "up0")
	sysctl(t, gw,
		"net.ipv4.conf.all.forwarding", "1",
		"net.ipv4.conf.all.rp_filter", "0",
		"net.ipv4.conf.eth0.rp_filter", "0",
		"net.ipv4.conf.eth0.proxy_arp", "1",
		"net.ipv4.neigh.eth0.proxy_delay", "0")
	e := newEngine(t, probe.Options{})
	sender := probe.Sender{Addr: addr("10.0.0.60"), ConflictChecked: true}
	proxied := "203.0.113.7"

	expect(t, mustGateway(t, e, on(l.node, proxied), probe.Params{}, sender), probe.Reachable, gwMAC)
	expect(t, mustConflict(t, e, on(l.node, proxied), probe.Params{}), probe.Free, "")
	expect(t, mustGateway(t, e, on(l.node, proxied), probe.Params{}, probe.Sender{}), probe.Unreachable, "")
	if arpingAnswered(t, l.node, proxied) {
		t.Error("arping -0: proxy ARP answered a probe")
	}

	// A long proxy delay (random in [0, 10000 s)): answers come too late.
	sysctl(t, gw, "net.ipv4.neigh.eth0.proxy_delay", "1000000")
	expect(t, mustGateway(t, e, on(l.node, proxied), probe.Params{}, sender), probe.Unreachable, "")
	expect(t, mustGateway(t, e, on(l.node, gw4), probe.Params{}, probe.Sender{}), probe.Reachable, gwMAC)
	expect(t, mustGateway(t, e, on(l.node, gw4), probe.Params{}, sender), probe.Reachable, gwMAC)
}
