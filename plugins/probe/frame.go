package probe

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
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd

	ethHdrLen  = 14
	arpLen     = 28 // Ethernet/IPv4 ARP body
	ipv6HdrLen = 40
	ndMinLen   = 24 // ICMPv6 header (4) + reserved/flags (4) + target (16)
	minFrame   = 60 // Ethernet minimum without FCS; short frames are padded

	protoICMPv6 = 58
	icmpNS      = 135
	icmpNA      = 136
	ndHopLimit  = 255

	ndOptSourceLL = 1
	ndOptTargetLL = 2
	ndOptNonce    = 14 // RFC 3971 §5.3.2, used for DAD by RFC 7527

	arpOpRequest = 1
	arpOpReply   = 2
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	allNodesMAC  = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	ipv4Zero     = netip.IPv4Unspecified()
	ipv6Zero     = netip.IPv6Unspecified()
	allNodes     = netip.IPv6LinkLocalAllNodes()
)

// frameKind says what a parsed frame is.
type frameKind uint8

const (
	kindARPRequest frameKind = iota + 1
	kindARPReply
	kindNS
	kindNA
)

func (k frameKind) String() string {
	switch k {
	case kindARPRequest:
		return "arp-request"
	case kindARPReply:
		return "arp-reply"
	case kindNS:
		return "neighbor-solicitation"
	case kindNA:
		return "neighbor-advertisement"
	}
	return fmt.Sprintf("frame-kind-%d", uint8(k))
}

// frame is the part of an incoming ARP or NS/NA frame the engine looks at.
// Addresses are plain arrays so that a frame never aliases the read buffer.
type frame struct {
	kind   frameKind
	ethSrc [6]byte
	ethDst [6]byte

	// ARP fields (kind ARPRequest/ARPReply).
	senderMAC [6]byte
	senderIP  netip.Addr
	targetMAC [6]byte
	targetIP  netip.Addr

	// IPv6 / ND fields (kind NS/NA).
	ipSrc     netip.Addr
	ipDst     netip.Addr
	hopLimit  uint8
	target    netip.Addr
	router    bool
	solicited bool
	override  bool
	srcLL     [6]byte // source link-layer address option, if hasSrcLL
	hasSrcLL  bool
	tgtLL     [6]byte // target link-layer address option, if hasTgtLL
	hasTgtLL  bool
	nonce     []byte // nonce option value (copied), nil if absent
}

var (
	errShort      = errors.New("frame too short")
	errNotProbe   = errors.New("not an ARP or NS/NA frame")
	errMalformed  = errors.New("malformed")
	errBadSum     = errors.New("bad ICMPv6 checksum")
	errBadHop     = errors.New("hop limit is not 255")
	errBadOptions = errors.New("malformed ND options")
)

// parseFrame parses an Ethernet frame holding an Ethernet/IPv4 ARP packet or
// an IPv6 Neighbor Solicitation/Advertisement. It never panics and never keeps
// a reference to b.
func parseFrame(b []byte) (frame, error) {
	var f frame
	if len(b) < ethHdrLen {
		return f, errShort
	}
	copy(f.ethDst[:], b[0:6])
	copy(f.ethSrc[:], b[6:12])
	switch binary.BigEndian.Uint16(b[12:14]) {
	case etherTypeARP:
		return f, parseARP(&f, b[ethHdrLen:])
	case etherTypeIPv6:
		return f, parseND(&f, b[ethHdrLen:])
	}
	return f, errNotProbe
}

// parseARP parses an Ethernet/IPv4 ARP body (trailing padding allowed).
func parseARP(f *frame, b []byte) error {
	if len(b) < arpLen {
		return errShort
	}
	if binary.BigEndian.Uint16(b[0:2]) != 1 || // hardware type Ethernet
		binary.BigEndian.Uint16(b[2:4]) != 0x0800 || // protocol IPv4
		b[4] != 6 || b[5] != 4 {
		return fmt.Errorf("arp: %w: not Ethernet/IPv4", errMalformed)
	}
	switch binary.BigEndian.Uint16(b[6:8]) {
	case arpOpRequest:
		f.kind = kindARPRequest
	case arpOpReply:
		f.kind = kindARPReply
	default:
		return fmt.Errorf("arp: %w: operation %d", errMalformed, binary.BigEndian.Uint16(b[6:8]))
	}
	copy(f.senderMAC[:], b[8:14])
	f.senderIP = netip.AddrFrom4([4]byte(b[14:18]))
	copy(f.targetMAC[:], b[18:24])
	f.targetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return nil
}

// parseND parses an IPv6 packet carrying an ICMPv6 NS or NA. It checks what
// RFC 4861 §7.1 asks a receiver to check: hop limit 255, code 0, length,
// checksum, a unicast target, well-formed options. Extension headers are not
// followed: ND messages do not carry them.
func parseND(f *frame, b []byte) error {
	if len(b) < ipv6HdrLen {
		return errShort
	}
	if b[0]>>4 != 6 {
		return fmt.Errorf("ipv6: %w: version %d", errMalformed, b[0]>>4)
	}
	if b[6] != protoICMPv6 {
		return errNotProbe
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if plen > len(b)-ipv6HdrLen {
		return fmt.Errorf("ipv6: %w: payload length %d, have %d", errShort, plen, len(b)-ipv6HdrLen)
	}
	f.hopLimit = b[7]
	f.ipSrc = netip.AddrFrom16([16]byte(b[8:24]))
	f.ipDst = netip.AddrFrom16([16]byte(b[24:40]))
	icmp := b[ipv6HdrLen : ipv6HdrLen+plen]
	if len(icmp) < ndMinLen {
		return errShort
	}
	switch icmp[0] {
	case icmpNS:
		f.kind = kindNS
	case icmpNA:
		f.kind = kindNA
	default:
		return errNotProbe
	}
	if icmp[1] != 0 {
		return fmt.Errorf("icmpv6: %w: code %d", errMalformed, icmp[1])
	}
	if f.hopLimit != ndHopLimit {
		return errBadHop
	}
	if icmpv6Checksum(f.ipSrc, f.ipDst, icmp) != 0 {
		return errBadSum
	}
	if f.kind == kindNA {
		f.router = icmp[4]&0x80 != 0
		f.solicited = icmp[4]&0x40 != 0
		f.override = icmp[4]&0x20 != 0
	}
	f.target = netip.AddrFrom16([16]byte(icmp[8:24]))
	if f.target.IsMulticast() {
		return fmt.Errorf("nd: %w: multicast target", errMalformed)
	}
	// Options: type, length in units of 8 octets, value. A zero length makes
	// the whole message invalid (RFC 4861 §4.6); unknown options are skipped.
	opts := icmp[ndMinLen:]
	for len(opts) > 0 {
		if len(opts) < 2 {
			return errBadOptions
		}
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return errBadOptions
		}
		o := opts[:l]
		switch o[0] {
		// Like Linux, the first of duplicated link-layer options counts.
		case ndOptSourceLL:
			if l == 8 && !f.hasSrcLL {
				copy(f.srcLL[:], o[2:8])
				f.hasSrcLL = true
			}
		case ndOptTargetLL:
			if l == 8 && !f.hasTgtLL {
				copy(f.tgtLL[:], o[2:8])
				f.hasTgtLL = true
			}
		case ndOptNonce:
			if f.nonce == nil {
				f.nonce = append([]byte(nil), o[2:]...)
			}
		}
		opts = opts[l:]
	}
	return nil
}

// icmpv6Checksum returns the Internet checksum over the IPv6 pseudo header
// (RFC 8200 §8.1) and msg. Computed over a message whose checksum field is
// filled in, a correct message sums to 0; over a message whose field is zero,
// it returns the value to store there.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
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
	l[7] = protoICMPv6
	add(l[:])
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// solicitedNode returns the solicited-node multicast address of a
// (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1) and its Ethernet group 33:33:ff:XX:XX:XX.
func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	g := [16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return netip.AddrFrom16(g), multicastMAC(netip.AddrFrom16(g))
}

// multicastMAC maps an IPv6 multicast address to its Ethernet group
// (RFC 2464 §7).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ethernetFrame prepends an Ethernet header to payload and pads the result to
// the 60-byte minimum.
func ethernetFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	n := ethHdrLen + len(payload)
	if n < minFrame {
		n = minFrame
	}
	b := make([]byte, n)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[ethHdrLen:], payload)
	return b
}

// buildARPRequest builds a broadcast ARP request for target from mac with the
// given sender IP and a zero target hardware address. With sender 0.0.0.0 it
// is an RFC 5227 ARP probe.
func buildARPRequest(mac net.HardwareAddr, sender, target netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, sender, zeroMAC, target)
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	body, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	return ethernetFrame(broadcastMAC, mac, etherTypeARP, body), nil
}

// buildNS builds an Ethernet frame holding an IPv6 Neighbor Solicitation for
// target, sent from src to the target's solicited-node group with hop limit
// 255. The ICMPv6 checksum is computed here over the pseudo header because we
// write the IPv6 header ourselves.
//
// DAD form (src ::): pass a nonce and no source link-layer option.
// Resolution form (src unicast): pass withSrcLL; Linux ignores a multicast NS
// from a unicast source that lacks it.
func buildNS(mac net.HardwareAddr, src, target netip.Addr, nonce []byte, withSrcLL bool) ([]byte, error) {
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
		opts = append(opts, &ndp.RawOption{Type: ndOptNonce, Length: uint8((len(nonce) + 2) / 8), Value: nonce})
	}
	icmp, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target, Options: opts})
	if err != nil {
		return nil, fmt.Errorf("build NS: %w", err)
	}
	dst, dstMAC := solicitedNode(target)
	binary.BigEndian.PutUint16(icmp[2:4], 0)
	binary.BigEndian.PutUint16(icmp[2:4], icmpv6Checksum(src, dst, icmp))

	pkt := make([]byte, ipv6HdrLen+len(icmp))
	pkt[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(icmp)))
	pkt[6] = protoICMPv6
	pkt[7] = ndHopLimit
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[ipv6HdrLen:], icmp)
	return ethernetFrame(dstMAC, mac, etherTypeIPv6, pkt), nil
}
