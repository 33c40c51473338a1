package arpnd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Wire constants. The ARP body is built by mdlayher/arp and the NS by
// mdlayher/ndp; the Ethernet and IPv6 headers around them are added here,
// because we send from 0.0.0.0 and from ::, which no socket API above
// AF_PACKET allows. Incoming frames are parsed here, by hand, so that the
// reader never panics on hostile input and keeps no reference to its
// read buffer.
const (
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd

	EthHdrLen  = 14
	ARPLen     = 28 // Ethernet/IPv4 ARP body
	IPv6HdrLen = 40
	NDMinLen   = 24 // ICMPv6 header (4) + reserved/flags (4) + target (16)
	MinFrame   = 60 // Ethernet minimum without FCS; short frames are padded

	ProtoICMPv6 = 58
	ICMPNS      = 135
	ICMPNA      = 136
	NDHopLimit  = 255

	NDOptSourceLL = 1
	NDOptTargetLL = 2
	NDOptNonce    = 14 // RFC 3971 §5.3.2, used for DAD by RFC 7527

	ARPOpRequest = 1
	ARPOpReply   = 2
)

var (
	BroadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ZeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	AllNodesMAC  = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	IPv4Zero     = netip.IPv4Unspecified()
	IPv6Zero     = netip.IPv6Unspecified()
	AllNodes     = netip.IPv6LinkLocalAllNodes()
)

// Kind says what a parsed frame is.
type Kind uint8

const (
	KindARPRequest Kind = iota + 1
	KindARPReply
	KindNS
	KindNA
)

func (k Kind) String() string {
	switch k {
	case KindARPRequest:
		return "arp-request"
	case KindARPReply:
		return "arp-reply"
	case KindNS:
		return "neighbor-solicitation"
	case KindNA:
		return "neighbor-advertisement"
	}
	return fmt.Sprintf("frame-kind-%d", uint8(k))
}

// Frame is the part of an incoming ARP or NS/NA frame that detectors and
// watchers look at. Addresses are plain arrays so that a Frame never aliases
// the read buffer.
type Frame struct {
	Kind   Kind
	EthSrc [6]byte
	EthDst [6]byte

	// ARP fields (Kind KindARPRequest/KindARPReply).
	SenderMAC [6]byte
	SenderIP  netip.Addr
	TargetMAC [6]byte
	TargetIP  netip.Addr

	// IPv6 / ND fields (Kind KindNS/KindNA).
	IPSrc     netip.Addr
	IPDst     netip.Addr
	HopLimit  uint8
	Target    netip.Addr
	Router    bool
	Solicited bool
	Override  bool
	SrcLL     [6]byte // source link-layer address option, if HasSrcLL
	HasSrcLL  bool
	TgtLL     [6]byte // target link-layer address option, if HasTgtLL
	HasTgtLL  bool
	Nonce     []byte // nonce option value (copied), nil if absent
}

var (
	ErrShort      = errors.New("frame too short")
	ErrNotProbe   = errors.New("not an ARP or NS/NA frame")
	ErrMalformed  = errors.New("malformed")
	ErrBadSum     = errors.New("bad ICMPv6 checksum")
	ErrBadHop     = errors.New("hop limit is not 255")
	ErrBadOptions = errors.New("malformed ND options")
)

// Parse parses an Ethernet frame holding an Ethernet/IPv4 ARP packet or
// an IPv6 Neighbor Solicitation/Advertisement. It never panics and never keeps
// a reference to b.
func Parse(b []byte) (Frame, error) {
	var f Frame
	if len(b) < EthHdrLen {
		return f, ErrShort
	}
	copy(f.EthDst[:], b[0:6])
	copy(f.EthSrc[:], b[6:12])
	switch binary.BigEndian.Uint16(b[12:14]) {
	case EtherTypeARP:
		return f, parseARP(&f, b[EthHdrLen:])
	case EtherTypeIPv6:
		return f, parseND(&f, b[EthHdrLen:])
	}
	return f, ErrNotProbe
}

// parseARP parses an Ethernet/IPv4 ARP body (trailing padding allowed).
func parseARP(f *Frame, b []byte) error {
	if len(b) < ARPLen {
		return ErrShort
	}
	if binary.BigEndian.Uint16(b[0:2]) != 1 || // hardware type Ethernet
		binary.BigEndian.Uint16(b[2:4]) != 0x0800 || // protocol IPv4
		b[4] != 6 || b[5] != 4 {
		return fmt.Errorf("arp: %w: not Ethernet/IPv4", ErrMalformed)
	}
	switch binary.BigEndian.Uint16(b[6:8]) {
	case ARPOpRequest:
		f.Kind = KindARPRequest
	case ARPOpReply:
		f.Kind = KindARPReply
	default:
		return fmt.Errorf("arp: %w: operation %d", ErrMalformed, binary.BigEndian.Uint16(b[6:8]))
	}
	copy(f.SenderMAC[:], b[8:14])
	f.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	copy(f.TargetMAC[:], b[18:24])
	f.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return nil
}

// parseND parses an IPv6 packet carrying an ICMPv6 NS or NA. It checks what
// RFC 4861 §7.1 asks a receiver to check: hop limit 255, code 0, length,
// checksum, a unicast target, well-formed options. Extension headers are not
// followed: ND messages do not carry them.
func parseND(f *Frame, b []byte) error {
	if len(b) < IPv6HdrLen {
		return ErrShort
	}
	if b[0]>>4 != 6 {
		return fmt.Errorf("ipv6: %w: version %d", ErrMalformed, b[0]>>4)
	}
	if b[6] != ProtoICMPv6 {
		return ErrNotProbe
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if plen > len(b)-IPv6HdrLen {
		return fmt.Errorf("ipv6: %w: payload length %d, have %d", ErrShort, plen, len(b)-IPv6HdrLen)
	}
	f.HopLimit = b[7]
	f.IPSrc = netip.AddrFrom16([16]byte(b[8:24]))
	f.IPDst = netip.AddrFrom16([16]byte(b[24:40]))
	icmp := b[IPv6HdrLen : IPv6HdrLen+plen]
	if len(icmp) < NDMinLen {
		return ErrShort
	}
	switch icmp[0] {
	case ICMPNS:
		f.Kind = KindNS
	case ICMPNA:
		f.Kind = KindNA
	default:
		return ErrNotProbe
	}
	if icmp[1] != 0 {
		return fmt.Errorf("icmpv6: %w: code %d", ErrMalformed, icmp[1])
	}
	if f.HopLimit != NDHopLimit {
		return ErrBadHop
	}
	if ICMPv6Checksum(f.IPSrc, f.IPDst, icmp) != 0 {
		return ErrBadSum
	}
	if f.Kind == KindNA {
		f.Router = icmp[4]&0x80 != 0
		f.Solicited = icmp[4]&0x40 != 0
		f.Override = icmp[4]&0x20 != 0
	}
	f.Target = netip.AddrFrom16([16]byte(icmp[8:24]))
	if f.Target.IsMulticast() {
		return fmt.Errorf("nd: %w: multicast target", ErrMalformed)
	}
	// Options: type, length in units of 8 octets, value. A zero length makes
	// the whole message invalid (RFC 4861 §4.6); unknown options are skipped.
	opts := icmp[NDMinLen:]
	for len(opts) > 0 {
		if len(opts) < 2 {
			return ErrBadOptions
		}
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return ErrBadOptions
		}
		o := opts[:l]
		switch o[0] {
		// Like Linux, the first of duplicated link-layer options counts.
		case NDOptSourceLL:
			if l == 8 && !f.HasSrcLL {
				copy(f.SrcLL[:], o[2:8])
				f.HasSrcLL = true
			}
		case NDOptTargetLL:
			if l == 8 && !f.HasTgtLL {
				copy(f.TgtLL[:], o[2:8])
				f.HasTgtLL = true
			}
		case NDOptNonce:
			if f.Nonce == nil {
				f.Nonce = append([]byte(nil), o[2:]...)
			}
		}
		opts = opts[l:]
	}
	return nil
}

// ICMPv6Checksum returns the Internet checksum over the IPv6 pseudo header
// (RFC 8200 §8.1) and msg. Computed over a message whose checksum field is
// filled in, a correct message sums to 0; over a message whose field is zero,
// it returns the value to store there.
func ICMPv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(b[0])<<8 | uint32(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = ProtoICMPv6
	add(l[:])
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// SolicitedNode returns the solicited-node multicast address of a
// (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1) and its Ethernet group 33:33:ff:XX:XX:XX.
func SolicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	g := [16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return netip.AddrFrom16(g), MulticastMAC(netip.AddrFrom16(g))
}

// MulticastMAC maps an IPv6 multicast address to its Ethernet group
// (RFC 2464 §7).
func MulticastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// EthernetFrame prepends an Ethernet header to payload and pads the result to
// the 60-byte minimum.
func EthernetFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	n := EthHdrLen + len(payload)
	if n < MinFrame {
		n = MinFrame
	}
	b := make([]byte, n)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[EthHdrLen:], payload)
	return b
}

// BuildARPRequest builds a broadcast ARP request for target from mac with the
// given sender IP and a zero target hardware address. With sender 0.0.0.0 it
// is an RFC 5227 ARP probe.
func BuildARPRequest(mac net.HardwareAddr, sender, target netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, sender, ZeroMAC, target)
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	body, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	return EthernetFrame(BroadcastMAC, mac, EtherTypeARP, body), nil
}

// BuildNS builds an Ethernet frame holding an IPv6 Neighbor Solicitation for
// target, sent from src to the target's solicited-node group with hop limit
// 255. The ICMPv6 checksum is computed here over the pseudo header because we
// write the IPv6 header ourselves.
//
// DAD form (src ::): pass a nonce and no source link-layer option.
// Resolution form (src unicast): pass withSrcLL; Linux ignores a multicast NS
// from a unicast source that lacks it.
func BuildNS(mac net.HardwareAddr, src, target netip.Addr, nonce []byte, withSrcLL bool) ([]byte, error) {
	if !target.Is6() || target.Is4In6() {
		return nil, fmt.Errorf("build NS: target %s is not IPv6", target)
	}
	var opts []ndp.Option
	if withSrcLL {
		opts = append(opts, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac})
	}
	if len(nonce) > 0 {
		// Whole 8-byte units, and at most 31 of them (mdlayher/ndp
		// computes the option length in a byte).
		if (len(nonce)+2)%8 != 0 || len(nonce)+2 > 31*8 {
			return nil, fmt.Errorf("build NS: nonce of %d bytes does not fill 1 to 31 8-byte units", len(nonce))
		}
		opts = append(opts, &ndp.RawOption{Type: NDOptNonce, Length: uint8((len(nonce) + 2) / 8), Value: nonce})
	}
	icmp, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target, Options: opts})
	if err != nil {
		return nil, fmt.Errorf("build NS: %w", err)
	}
	dst, dstMAC := SolicitedNode(target)
	return ndFrame(mac, src, dst, dstMAC, icmp), nil
}

// BuildUnsolicitedNA builds the announcement of RFC 4861 7.2.6 that a node
// holding addr sends to defend or advertise it: a Neighbor Advertisement
// from addr to all-nodes ff02::1, solicited flag clear, override set, with
// the target link-layer option naming mac (which is also the Ethernet
// source). Neighbours with an entry for addr update it to mac.
func BuildUnsolicitedNA(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if !addr.Is6() || addr.Is4In6() || addr.IsMulticast() || addr.IsUnspecified() {
		return nil, fmt.Errorf("build NA: %s is not a unicast IPv6 address", addr)
	}
	icmp, err := ndp.MarshalMessage(&ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	})
	if err != nil {
		return nil, fmt.Errorf("build NA: %w", err)
	}
	return ndFrame(mac, addr, AllNodes, AllNodesMAC, icmp), nil
}

// BuildGratuitousARP builds the announcement of RFC 5227 2.3 and 2.4(b):
// an ARP request from mac whose sender and target IP are both addr,
// broadcast. Neighbours with an entry for addr update it to mac.
func BuildGratuitousARP(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if !addr.Is4() || addr.IsUnspecified() {
		return nil, fmt.Errorf("build gratuitous ARP: %s is not an IPv4 unicast address", addr)
	}
	return BuildARPRequest(mac, addr, addr)
}

// ndFrame wraps an ICMPv6 ND message in an IPv6 header (hop limit 255)
// and an Ethernet header, filling in the checksum over the pseudo header:
// the header is written here because no socket above AF_PACKET sends from
// :: or with a chosen source MAC.
func ndFrame(mac net.HardwareAddr, src, dst netip.Addr, dstMAC net.HardwareAddr, icmp []byte) []byte {
	binary.BigEndian.PutUint16(icmp[2:4], 0)
	binary.BigEndian.PutUint16(icmp[2:4], ICMPv6Checksum(src, dst, icmp))

	pkt := make([]byte, IPv6HdrLen+len(icmp))
	pkt[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(icmp)))
	pkt[6] = ProtoICMPv6
	pkt[7] = NDHopLimit
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[IPv6HdrLen:], icmp)
	return EthernetFrame(dstMAC, mac, EtherTypeIPv6, pkt)
}
