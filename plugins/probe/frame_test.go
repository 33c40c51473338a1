package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

var (
	testMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x10}
	testNonce = []byte{1, 2, 3, 4, 5, 6}
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// arpFrame builds a broadcast Ethernet/IPv4 ARP frame from sha
// independently of the code under test.
func arpFrame(op uint16, sha net.HardwareAddr, spa string, tha net.HardwareAddr, tpa string) []byte {
	return netlab.ARPFrame(arpnd.BroadcastMAC, sha, op, sha, mustAddr(spa), tha, mustAddr(tpa))
}

// ndFrame builds an Ethernet/IPv6 frame holding m, with the checksum computed
// by mdlayher/ndp (an implementation independent of arpnd.ICMPv6Checksum).
func ndFrame(t testing.TB, ethSrc net.HardwareAddr, src, dst string, hop uint8, m ndp.Message) []byte {
	t.Helper()
	icmp, err := ndp.MarshalMessageChecksum(m, mustAddr(src), mustAddr(dst))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 14+40+len(icmp))
	copy(b[0:6], arpnd.MulticastMAC(mustAddr(dst)))
	copy(b[6:12], ethSrc)
	binary.BigEndian.PutUint16(b[12:14], 0x86dd)
	ip := b[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6] = 58
	ip[7] = hop
	s, d := mustAddr(src).As16(), mustAddr(dst).As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], icmp)
	return b
}

func TestParseARP(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		wantErr bool
		kind    arpnd.Kind
		sender  string
		target  string
	}{
		{"probe", arpFrame(1, otherMAC, "0.0.0.0", arpnd.ZeroMAC, "10.0.0.5"), false, arpnd.KindARPRequest, "0.0.0.0", "10.0.0.5"},
		{"reply", arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), false, arpnd.KindARPReply, "10.0.0.5", "0.0.0.0"},
		{"unpadded", arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5")[:42], false, arpnd.KindARPRequest, "10.0.0.1", "10.0.0.5"},
		{"truncated", arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5")[:41], true, 0, "", ""},
		{"bad op", func() []byte { b := arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5"); b[21] = 9; return b }(), true, 0, "", ""},
		{"not ethernet", func() []byte { b := arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5"); b[15] = 6; return b }(), true, 0, "", ""},
		{"not ipv4", func() []byte {
			b := arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5")
			b[16] = 0x86
			return b
		}(), true, 0, "", ""},
		{"bad hlen", func() []byte { b := arpFrame(1, otherMAC, "10.0.0.1", arpnd.ZeroMAC, "10.0.0.5"); b[18] = 8; return b }(), true, 0, "", ""},
		{"empty", nil, true, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := arpnd.Parse(tc.b)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if f.Kind != tc.kind || f.SenderIP != mustAddr(tc.sender) || f.TargetIP != mustAddr(tc.target) {
				t.Fatalf("got kind %v sender %v target %v", f.Kind, f.SenderIP, f.TargetIP)
			}
			if !bytes.Equal(f.SenderMAC[:], otherMAC) || !bytes.Equal(f.EthSrc[:], otherMAC) {
				t.Fatalf("sender MAC %x eth src %x", f.SenderMAC, f.EthSrc)
			}
		})
	}
}

func TestParseND(t *testing.T) {
	nonce := &ndp.RawOption{Type: arpnd.NDOptNonce, Length: 1, Value: testNonce}
	sll := &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: otherMAC}
	tll := &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: otherMAC}
	unknown := &ndp.RawOption{Type: 200, Length: 2, Value: make([]byte, 14)}
	good := func(hop uint8, m ndp.Message, src, dst string) []byte {
		return ndFrame(t, otherMAC, src, dst, hop, m)
	}
	dadNS := good(255, &ndp.NeighborSolicitation{TargetAddress: mustAddr("fd00::5"), Options: []ndp.Option{nonce}}, "::", "ff02::1:ff00:5")
	tests := []struct {
		name     string
		b        []byte
		wantErr  error // nil: parses; errAny: some error
		kind     arpnd.Kind
		target   string
		nonce    bool
		srcLL    bool
		tgtLL    bool
		solicitd bool
	}{
		{name: "dad ns", b: dadNS, kind: arpnd.KindNS, target: "fd00::5", nonce: true},
		{name: "ns with sll", b: good(255, &ndp.NeighborSolicitation{TargetAddress: mustAddr("fd00::1"), Options: []ndp.Option{sll}}, "fe80::1", "ff02::1:ff00:1"), kind: arpnd.KindNS, target: "fd00::1", srcLL: true},
		{name: "na solicited", b: good(255, &ndp.NeighborAdvertisement{Solicited: true, TargetAddress: mustAddr("fd00::1"), Options: []ndp.Option{tll}}, "fd00::1", "fe80::2"), kind: arpnd.KindNA, target: "fd00::1", tgtLL: true, solicitd: true},
		{name: "na unknown option", b: good(255, &ndp.NeighborAdvertisement{Override: true, TargetAddress: mustAddr("fd00::1"), Options: []ndp.Option{unknown, tll}}, "fd00::1", "ff02::1"), kind: arpnd.KindNA, target: "fd00::1", tgtLL: true},
		{name: "duplicate tll: the first counts", b: good(255, &ndp.NeighborAdvertisement{TargetAddress: mustAddr("fd00::1"),
			Options: []ndp.Option{tll, &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: testMAC}}}, "fd00::1", "ff02::1"), kind: arpnd.KindNA, target: "fd00::1", tgtLL: true},
		{name: "hop limit 64", b: good(64, &ndp.NeighborSolicitation{TargetAddress: mustAddr("fd00::5")}, "::", "ff02::1:ff00:5"), wantErr: arpnd.ErrBadHop},
		{name: "bad checksum", b: func() []byte { b := bytes.Clone(dadNS); b[14+40+2] ^= 0xff; return b }(), wantErr: arpnd.ErrBadSum},
		{name: "truncated payload", b: dadNS[:len(dadNS)-1], wantErr: arpnd.ErrShort},
		{name: "trailing padding", b: append(bytes.Clone(dadNS), 0, 0, 0, 0), kind: arpnd.KindNS, target: "fd00::5", nonce: true},
		{name: "zero-length option", b: func() []byte {
			m := &ndp.NeighborSolicitation{TargetAddress: mustAddr("fd00::5"), Options: []ndp.Option{nonce}}
			b := good(255, m, "::", "ff02::1:ff00:5")
			b[14+40+24+1] = 0 // option length
			fixChecksum(b)
			return b
		}(), wantErr: arpnd.ErrBadOptions},
		{name: "router solicitation", b: good(255, &ndp.RouterSolicitation{}, "::", "ff02::2"), wantErr: arpnd.ErrShort},
		{name: "ipv4 in ethertype ipv6", b: func() []byte { b := bytes.Clone(dadNS); b[14] = 0x45; return b }(), wantErr: arpnd.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := arpnd.Parse(tc.b)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if f.Kind != tc.kind || f.Target != mustAddr(tc.target) {
				t.Fatalf("kind %v target %v", f.Kind, f.Target)
			}
			if (f.Nonce != nil) != tc.nonce || (tc.nonce && !bytes.Equal(f.Nonce, testNonce)) {
				t.Fatalf("nonce %x", f.Nonce)
			}
			if f.HasSrcLL != tc.srcLL || f.HasTgtLL != tc.tgtLL || f.Solicited != tc.solicitd {
				t.Fatalf("srcLL %v tgtLL %v solicited %v", f.HasSrcLL, f.HasTgtLL, f.Solicited)
			}
			if tc.srcLL && !bytes.Equal(f.SrcLL[:], otherMAC) || tc.tgtLL && !bytes.Equal(f.TgtLL[:], otherMAC) {
				t.Fatalf("link-layer options %x %x", f.SrcLL, f.TgtLL)
			}
		})
	}
}

// fixChecksum recomputes the ICMPv6 checksum of an Ethernet/IPv6 frame in
// place, if it is long enough to hold one.
func fixChecksum(b []byte) {
	if len(b) < 14+40+4 || binary.BigEndian.Uint16(b[12:14]) != 0x86dd {
		return
	}
	plen := int(binary.BigEndian.Uint16(b[18:20]))
	if plen < 4 || 14+40+plen > len(b) {
		return
	}
	src := netip.AddrFrom16([16]byte(b[22:38]))
	dst := netip.AddrFrom16([16]byte(b[38:54]))
	msg := b[54 : 54+plen]
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:4], arpnd.ICMPv6Checksum(src, dst, msg))
}

func TestBuildARPProbe(t *testing.T) {
	b, err := arpnd.BuildARPRequest(testMAC, arpnd.IPv4Zero, mustAddr("10.0.0.5"))
	if err != nil {
		t.Fatal(err)
	}
	want := arpFrame(1, testMAC, "0.0.0.0", arpnd.ZeroMAC, "10.0.0.5")
	if !bytes.Equal(b, want) {
		t.Fatalf("ARP probe\n got %x\nwant %x", b, want)
	}
	if _, err := arpnd.BuildARPRequest(testMAC, arpnd.IPv4Zero, mustAddr("fd00::1")); err == nil {
		t.Fatal("ARP request for an IPv6 target built")
	}
}

func TestBuildNS(t *testing.T) {
	target := mustAddr("fd00::12:3456")
	t.Run("dad", func(t *testing.T) {
		b, err := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, target, testNonce, false)
		if err != nil {
			t.Fatal(err)
		}
		// Independent construction: ndp computes the checksum itself.
		want := ndFrame(t, testMAC, "::", "ff02::1:ff12:3456", 255, &ndp.NeighborSolicitation{
			TargetAddress: target,
			Options:       []ndp.Option{&ndp.RawOption{Type: arpnd.NDOptNonce, Length: 1, Value: testNonce}},
		})
		if !bytes.Equal(b, want) {
			t.Fatalf("DAD NS\n got %x\nwant %x", b, want)
		}
		if !bytes.Equal(b[0:6], net.HardwareAddr{0x33, 0x33, 0xff, 0x12, 0x34, 0x56}) {
			t.Fatalf("destination MAC %x", b[0:6])
		}
		f, err := arpnd.Parse(b)
		if err != nil || f.Kind != arpnd.KindNS || f.HasSrcLL || !bytes.Equal(f.Nonce, testNonce) || f.IPSrc != arpnd.IPv6Zero || f.HopLimit != 255 {
			t.Fatalf("round trip: %+v %v", f, err)
		}
	})
	t.Run("resolution", func(t *testing.T) {
		b, err := arpnd.BuildNS(testMAC, mustAddr("fe80::1"), target, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		want := ndFrame(t, testMAC, "fe80::1", "ff02::1:ff12:3456", 255, &ndp.NeighborSolicitation{
			TargetAddress: target,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: testMAC}},
		})
		if !bytes.Equal(b, want) {
			t.Fatalf("NS\n got %x\nwant %x", b, want)
		}
	})
	t.Run("bad nonce", func(t *testing.T) {
		if _, err := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, target, []byte{1, 2, 3}, false); err == nil {
			t.Fatal("3-byte nonce accepted")
		}
	})
	t.Run("ipv4 target", func(t *testing.T) {
		if _, err := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, mustAddr("10.0.0.1"), testNonce, false); err == nil {
			t.Fatal("IPv4 target accepted")
		}
	})
}

func TestSolicitedNode(t *testing.T) {
	tests := []struct{ in, group, mac string }{
		{"fd00::1", "ff02::1:ff00:1", "33:33:ff:00:00:01"},
		{"fe80::aabb:ccdd:eeff:1122", "ff02::1:ffff:1122", "33:33:ff:ff:11:22"},
		{"2001:db8::12:3456", "ff02::1:ff12:3456", "33:33:ff:12:34:56"},
	}
	for _, tc := range tests {
		g, m := arpnd.SolicitedNode(mustAddr(tc.in))
		want, _ := ndp.SolicitedNodeMulticast(mustAddr(tc.in))
		if g != mustAddr(tc.group) || g != want || m.String() != tc.mac {
			t.Errorf("arpnd.SolicitedNode(%s) = %s %s, want %s %s", tc.in, g, m, tc.group, tc.mac)
		}
	}
}

func TestChecksumKnownValue(t *testing.T) {
	// A message whose checksum field holds the right value sums to zero,
	// and zeroing it gives the value back.
	b, err := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, mustAddr("fd00::5"), testNonce, false)
	if err != nil {
		t.Fatal(err)
	}
	msg := b[54:]
	src, dst := arpnd.IPv6Zero, mustAddr("ff02::1:ff00:5")
	if c := arpnd.ICMPv6Checksum(src, dst, msg); c != 0 {
		t.Fatalf("checksum over correct message = %#x, want 0", c)
	}
	stored := binary.BigEndian.Uint16(msg[2:4])
	m := bytes.Clone(msg)
	m[2], m[3] = 0, 0
	if c := arpnd.ICMPv6Checksum(src, dst, m); c != stored {
		t.Fatalf("checksum %#x, stored %#x", c, stored)
	}
	// Odd length.
	if arpnd.ICMPv6Checksum(src, dst, []byte{0xff}) == arpnd.ICMPv6Checksum(src, dst, []byte{0xfe}) {
		t.Fatal("odd trailing byte ignored")
	}
}
