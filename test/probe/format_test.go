package probe_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The frames on the wire, captured by a separate packet socket on another
// host and decoded here without the engine's code.
func TestFrameFormat(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	capt := startCapture(t, l.Busy)
	e := newEngine(t, probe.Options{})
	node := l.Node.MAC
	fromNode := func(f []byte) bool { return len(f) >= 14 && bytes.Equal(f[6:12], node) }

	t.Run("IPv4 conflict probe", func(t *testing.T) {
		expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "")
		frames := capt.waitMatching(t, "3 ARP probes for "+netlab.Free4, 3, func(f []byte) bool {
			a, ok := parseARP(f)
			return ok && fromNode(f) && a.tpa == netlab.Addr(netlab.Free4)
		})
		for _, f := range frames {
			a, _ := parseARP(f)
			switch {
			case !bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}):
				t.Fatalf("not broadcast: %x", f[0:6])
			case a.op != 1:
				t.Fatalf("op %d", a.op)
			case !bytes.Equal(a.sha, node):
				t.Fatalf("sender MAC %s", a.sha)
			case a.spa != netip.IPv4Unspecified():
				t.Fatalf("sender IP %s, want 0.0.0.0", a.spa)
			case !bytes.Equal(a.tha, make([]byte, 6)):
				t.Fatalf("target MAC %s, want zero", a.tha)
			case len(f) < 60:
				t.Fatalf("runt frame of %d bytes", len(f))
			}
		}
	})

	t.Run("IPv6 DAD probe", func(t *testing.T) {
		expect(t, mustConflict(t, e, on(l.Node, netlab.Free6), probe.Params{}), probe.Free, "")
		frames := capt.waitMatching(t, "3 DAD NS for "+netlab.Free6, 3, func(f []byte) bool {
			nd, ok := parseIPv6ICMP(f)
			return ok && fromNode(f) && nd.icmp[0] == 135 && len(nd.icmp) >= 24 &&
				netip.AddrFrom16([16]byte(nd.icmp[8:24])) == netlab.Addr(netlab.Free6)
		})
		var firstNonce []byte
		for _, f := range frames {
			nd, _ := parseIPv6ICMP(f)
			opts := ndOptions(nd.icmp)
			switch {
			case !bytes.Equal(f[0:6], []byte{0x33, 0x33, 0xff, 0, 0, 0x50}):
				t.Fatalf("destination MAC %s", net.HardwareAddr(f[0:6]))
			case nd.src != netip.IPv6Unspecified():
				t.Fatalf("source %s, want ::", nd.src)
			case nd.dst != netlab.Addr("ff02::1:ff00:50"):
				t.Fatalf("destination %s, want the solicited-node group", nd.dst)
			case nd.hop != 255:
				t.Fatalf("hop limit %d", nd.hop)
			case nd.icmp[1] != 0:
				t.Fatalf("code %d", nd.icmp[1])
			case !checksumOK(nd.src, nd.dst, nd.icmp):
				t.Fatal("bad ICMPv6 checksum")
			case opts[1] != nil:
				t.Fatal("DAD probe carries a source link-layer option")
			case len(opts[14]) != 6:
				t.Fatalf("nonce option %x, want 6 bytes", opts[14])
			}
			if firstNonce == nil {
				firstNonce = opts[14]
			} else if !bytes.Equal(firstNonce, opts[14]) {
				t.Fatal("nonce changed within one check")
			}
		}
	})

	t.Run("IPv4 gateway probe", func(t *testing.T) {
		expect(t, mustGateway(t, e, on(l.Node, "10.0.0.98"), probe.Params{}), probe.Unreachable, "")
		frames := capt.waitMatching(t, "3 ARP requests for the gateway", 3, func(f []byte) bool {
			a, ok := parseARP(f)
			return ok && fromNode(f) && a.tpa == netlab.Addr("10.0.0.98")
		})
		for _, f := range frames {
			if a, _ := parseARP(f); a.op != 1 || a.spa != netip.IPv4Unspecified() || !bytes.Equal(a.tha, make([]byte, 6)) {
				t.Fatalf("gateway probe %+v", a)
			}
		}
	})

	t.Run("IPv6 gateway solicitation", func(t *testing.T) {
		expect(t, mustGateway(t, e, on(l.Node, "fd00::98"), probe.Params{}), probe.Unreachable, "")
		frames := capt.waitMatching(t, "3 NS for the gateway", 3, func(f []byte) bool {
			nd, ok := parseIPv6ICMP(f)
			return ok && fromNode(f) && nd.icmp[0] == 135 && len(nd.icmp) >= 24 &&
				netip.AddrFrom16([16]byte(nd.icmp[8:24])) == netlab.Addr("fd00::98")
		})
		for _, f := range frames {
			nd, _ := parseIPv6ICMP(f)
			opts := ndOptions(nd.icmp)
			switch {
			case !nd.src.IsLinkLocalUnicast():
				t.Fatalf("source %s, want the link-local address", nd.src)
			case nd.dst != netlab.Addr("ff02::1:ff00:98") || !bytes.Equal(f[0:6], []byte{0x33, 0x33, 0xff, 0, 0, 0x98}):
				t.Fatalf("destination %s / %x", nd.dst, f[0:6])
			case nd.hop != 255 || !checksumOK(nd.src, nd.dst, nd.icmp):
				t.Fatalf("hop %d or bad checksum", nd.hop)
			case !bytes.Equal(opts[1], node):
				t.Fatalf("source link-layer option %x, want %s", opts[1], node)
			case opts[14] != nil:
				t.Fatal("resolution NS carries a nonce")
			}
		}
	})
}
