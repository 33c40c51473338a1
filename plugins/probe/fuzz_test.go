//go:build linux

package probe

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

// seedFrames is the seed corpus shared by the fuzz targets: every kind of
// frame the engine sends or acts on, plus damaged variants.
func seedFrames(t testing.TB) [][]byte {
	cand6 := mustAddr("fd00::5")
	dadNS, _ := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, cand6, testNonce, false)
	gwNS, _ := arpnd.BuildNS(testMAC, mustAddr("fe80::1"), mustAddr("fd00::1"), nil, true)
	probe4, _ := arpnd.BuildARPRequest(testMAC, arpnd.IPv4Zero, mustAddr("10.0.0.5"))
	seeds := [][]byte{
		probe4,
		arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"),
		arpFrame(1, otherMAC, "10.0.0.5", arpnd.ZeroMAC, "10.0.0.1"),
		dadNS,
		gwNS,
		ndFrame(t, otherMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{Override: true, TargetAddress: cand6,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: otherMAC}}}),
		ndFrame(t, otherMAC, "fd00::1", "fe80::1", 255, &ndp.NeighborAdvertisement{Solicited: true, Router: true, TargetAddress: mustAddr("fd00::1")}),
		ndFrame(t, otherMAC, "::", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6,
			Options: []ndp.Option{&ndp.RawOption{Type: arpnd.NDOptNonce, Length: 1, Value: []byte{9, 9, 9, 9, 9, 9}}, &ndp.RawOption{Type: 99, Length: 2, Value: make([]byte, 14)}}}),
		ndFrame(t, otherMAC, "fe80::1", "ff02::1", 255, &ndp.RouterAdvertisement{CurrentHopLimit: 64}),
		{},
		{0xff},
		dadNS[:20],
		dadNS[:55],
		probe4[:30],
	}
	return seeds
}

// FuzzParseFrame: the parser never panics, never returns a frame that
// breaks its own invariants, and agrees with mdlayher/ndp on NS/NA targets
// and link-layer options.
func FuzzParseFrame(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		in := bytes.Clone(b)
		if fix {
			// Help the fuzzer past the checksum and hop limit checks.
			if len(in) >= 14+40 {
				in[14+7] = 255
			}
			fixChecksum(in)
		}
		orig := bytes.Clone(in)
		fr, err := arpnd.Parse(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("parser modified its input")
		}
		if err != nil {
			return
		}
		switch fr.Kind {
		case arpnd.KindARPRequest, arpnd.KindARPReply:
			if !fr.SenderIP.Is4() || !fr.TargetIP.Is4() {
				t.Fatalf("ARP addresses %v %v", fr.SenderIP, fr.TargetIP)
			}
		case arpnd.KindNS, arpnd.KindNA:
			if fr.HopLimit != 255 || !fr.Target.Is6() || fr.Target.IsMulticast() {
				t.Fatalf("ND frame accepted with hop %d target %v", fr.HopLimit, fr.Target)
			}
			// Differential check against mdlayher/ndp.
			plen := int(in[18])<<8 | int(in[19])
			m, nerr := ndp.ParseMessage(in[54 : 54+plen])
			if nerr != nil {
				return // ndp is stricter about known options; fine
			}
			var target netip.Addr
			var opts []ndp.Option
			switch m := m.(type) {
			case *ndp.NeighborSolicitation:
				target, opts = m.TargetAddress, m.Options
			case *ndp.NeighborAdvertisement:
				target, opts = m.TargetAddress, m.Options
				if m.Solicited != fr.Solicited || m.Router != fr.Router || m.Override != fr.Override {
					t.Fatalf("flags differ from ndp")
				}
			default:
				t.Fatalf("ndp parsed %T where we saw %v", m, fr.Kind)
			}
			if target != fr.Target {
				t.Fatalf("target %v, ndp says %v", fr.Target, target)
			}
			seen := map[ndp.Direction]bool{}
			for _, o := range opts {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && !seen[lla.Direction] {
					seen[lla.Direction] = true // the first one counts
					got, has := fr.SrcLL, fr.HasSrcLL
					if lla.Direction == ndp.Target {
						got, has = fr.TgtLL, fr.HasTgtLL
					}
					if !has || !bytes.Equal(got[:], lla.Addr) {
						t.Fatalf("link-layer option %v: we have %x (%v)", lla, got, has)
					}
				}
			}
		default:
			t.Fatalf("parsed frame of kind %v", fr.Kind)
		}
	})
}

// FuzzHandle: any frame, fed to a socket with waiters of every kind, never
// panics, never wakes a waiter for an address the frame does not mention,
// and never wakes anyone with a frame from our own MAC.
func FuzzHandle(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(unix.PACKET_OUTGOING))
	}
	f.Fuzz(func(t *testing.T, b []byte, pkttype uint8) {
		s := newTestSock()
		var ws []*waiter
		for _, a := range []string{"10.0.0.5", "10.0.0.1", "fd00::5", "fd00::1"} {
			ws = append(ws, s.register(mustAddr(a), false, testNonce), s.register(mustAddr(a), true, nil))
		}
		s.handle(b, &unix.SockaddrLinklayer{Pkttype: pkttype}, time.Now())
		fr, perr := arpnd.Parse(b)
		for _, w := range ws {
			if !fired(w) {
				continue
			}
			if perr != nil || pkttype == unix.PACKET_OUTGOING {
				t.Fatalf("waiter %v woken by an unparsable or outgoing frame", w.addr)
			}
			if fr.EthSrc == [6]byte(testMAC) || w.ans.mac == [6]byte(testMAC) {
				t.Fatalf("waiter %v woken by our own MAC", w.addr)
			}
			mentioned := w.addr == fr.SenderIP || w.addr == fr.TargetIP || w.addr == fr.Target || w.addr == fr.IPSrc
			if !mentioned {
				t.Fatalf("waiter %v woken by a frame about something else: %+v", w.addr, fr)
			}
		}
	})
}

// FuzzBuildParse: what we build, we parse back to the same fields.
func FuzzBuildParse(f *testing.F) {
	f.Add([]byte{10, 0, 0, 5}, []byte{0xfd, 0, 15: 5}, []byte(testMAC), testNonce, true)
	f.Add([]byte{192, 168, 1, 1}, []byte{0xfe, 0x80, 15: 1}, []byte(otherMAC), []byte{0, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, v4, v6, mac, nonce []byte, withSrcLL bool) {
		if len(v4) != 4 || len(v6) != 16 || len(mac) != 6 {
			return
		}
		hw := net.HardwareAddr(mac)
		a4 := netip.AddrFrom4([4]byte(v4))
		if b, err := arpnd.BuildARPRequest(hw, arpnd.IPv4Zero, a4); err == nil {
			fr, err := arpnd.Parse(b)
			if err != nil || fr.Kind != arpnd.KindARPRequest || fr.TargetIP != a4 || !fr.SenderIP.IsUnspecified() ||
				fr.SenderMAC != [6]byte(mac) || fr.TargetMAC != [6]byte{} || fr.EthDst != [6]byte(arpnd.BroadcastMAC) {
				t.Fatalf("ARP round trip: %+v %v", fr, err)
			}
		}
		a6 := netip.AddrFrom16([16]byte(v6))
		if a6.IsMulticast() || a6.Is4In6() {
			return
		}
		b, err := arpnd.BuildNS(hw, arpnd.IPv6Zero, a6, nonce, withSrcLL)
		if err != nil {
			if len(nonce) == 0 || (len(nonce)+2)%8 == 0 && len(nonce)+2 <= 31*8 {
				t.Fatalf("build NS: %v", err)
			}
			return
		}
		fr, err := arpnd.Parse(b)
		if err != nil || fr.Kind != arpnd.KindNS || fr.Target != a6 || fr.HopLimit != 255 || fr.HasSrcLL != withSrcLL ||
			!bytes.Equal(fr.Nonce, nonce) && len(nonce) > 0 {
			t.Fatalf("NS round trip: %+v %v", fr, err)
		}
		group, gmac := arpnd.SolicitedNode(a6)
		if fr.IPDst != group || fr.EthDst != [6]byte(gmac) {
			t.Fatalf("NS sent to %v %x, want %v %v", fr.IPDst, fr.EthDst, group, gmac)
		}
	})
}
