package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// rawSock is an AF_PACKET socket bound to eth0 of a namespace: an injector
// on a test host, or a counter on the node.
type rawSock struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openRaw(s *scope, nsPath string) *rawSock {
	r := &rawSock{}
	err := netns.Do(nsPath, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		r.fd, r.ifindex, r.mac = fd, ifi.Index, ifi.HardwareAddr
		return nil
	})
	if err != nil {
		s.Fatalf("packet socket in %s: %v", nsPath, err)
	}
	s.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSock) send(frame []byte) error {
	_, err := unix.Write(r.fd, frame)
	return err
}

// counter counts frames from one source MAC arriving at a socket, by
// length, until stopped.
type counter struct {
	mu   sync.Mutex
	seen map[int]int // frame length -> count
	stop atomic.Bool
	done chan struct{}
}

func countFrom(r *rawSock, src net.HardwareAddr) *counter {
	c := &counter{seen: map[int]int{}, done: make(chan struct{})}
	_ = unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for !c.stop.Load() {
			n, from, err := unix.Recvfrom(r.fd, buf, 0)
			if err != nil {
				continue // timeout: look at stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if n >= 12 && net.HardwareAddr(buf[6:12]).String() == src.String() {
				c.mu.Lock()
				c.seen[n]++
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *counter) count(length int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[length]
}

func (c *counter) close() {
	c.stop.Store(true)
	<-c.done
}

// ---- frame builders --------------------------------------------------------

var bcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func eth(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], etherType)
	return append(f, payload...)
}

// arpBody is an Ethernet/IPv4 ARP packet (28 bytes) with the given
// hardware/protocol sizes and operation.
func arpBody(hlen, plen byte, op uint16, sha net.HardwareAddr, spa netip.Addr, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:2], 1)
	binary.BigEndian.PutUint16(b[2:4], 0x0800)
	b[4], b[5] = hlen, plen
	binary.BigEndian.PutUint16(b[6:8], op)
	copy(b[8:14], sha)
	s4 := spa.As4()
	copy(b[14:18], s4[:])
	t4 := tpa.As4()
	copy(b[24:28], t4[:])
	return b
}

// arpReply is a well-formed ARP reply from mac claiming ip.
func arpReply(mac net.HardwareAddr, ip netip.Addr) []byte {
	return eth(bcast, mac, 0x0806, arpBody(6, 4, 2, mac, ip, ip))
}

func allNodesMAC() net.HardwareAddr { return net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} }

func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	g := netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	return g, net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// ipv6ICMP wraps an ICMPv6 message in an IPv6 header and Ethernet; sum
// fills the checksum (a wrong one when bad), payloadLen overrides the
// header's payload length when >= 0.
func ipv6ICMP(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, hop byte, msg []byte, badSum bool, payloadLen int) []byte {
	m := append([]byte(nil), msg...)
	m[2], m[3] = 0, 0
	sum := icmpv6Sum(src, dst, m)
	if badSum {
		sum ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(m[2:4], sum)
	h := make([]byte, 40)
	h[0] = 0x60
	pl := len(m)
	if payloadLen >= 0 {
		pl = payloadLen
	}
	binary.BigEndian.PutUint16(h[4:6], uint16(pl))
	h[6] = 58
	h[7] = hop
	s16, d16 := src.As16(), dst.As16()
	copy(h[8:24], s16[:])
	copy(h[24:40], d16[:])
	return eth(dstMAC, srcMAC, 0x86dd, append(h, m...))
}

func icmpv6Sum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s16, d16 := src.As16(), dst.As16()
	add(s16[:])
	add(d16[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = 58
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// naMsg is a Neighbor Advertisement for target (override set, not
// solicited) followed by opts.
func naMsg(target netip.Addr, opts []byte) []byte {
	m := make([]byte, 24)
	m[0] = 136
	m[4] = 0x20
	t16 := target.As16()
	copy(m[8:24], t16[:])
	return append(m, opts...)
}

// nsMsg is a Neighbor Solicitation for target followed by opts.
func nsMsg(target netip.Addr, opts []byte) []byte {
	m := make([]byte, 24)
	m[0] = 135
	t16 := target.As16()
	copy(m[8:24], t16[:])
	return append(m, opts...)
}

func tllOpt(mac net.HardwareAddr) []byte { return append([]byte{2, 1}, mac...) }

// na is a well-formed unsolicited NA from mac claiming target, to all nodes.
func na(mac net.HardwareAddr, target netip.Addr) []byte {
	return ipv6ICMP(allNodesMAC(), mac, target, netip.MustParseAddr("ff02::1"), 255, naMsg(target, tllOpt(mac)), false, -1)
}

func junk(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// frameCase is one entry of the bad-frame corpus: build makes the frame
// for a candidate; claim says whether a well-formed frame would make the
// candidate busy (the controls).
type frameCase struct {
	name   string
	family int // 4 or 6
	build  func(evil net.HardwareAddr, cand netip.Addr) []byte
	want   string // the candidate's verdict: "pass" (frame ignored) or "block"
}

func frameCorpus() []frameCase {
	cut := func(n int) func(net.HardwareAddr, netip.Addr) []byte {
		return func(m net.HardwareAddr, c netip.Addr) []byte { return arpReply(m, c)[:n] }
	}
	return []frameCase{
		{"control: well-formed ARP reply claiming the candidate", 4, arpReply, "block"},
		{"ARP reply claiming the candidate, cut to 14 bytes (header only)", 4, cut(14), "pass"},
		{"ARP reply claiming the candidate, cut to 27 bytes", 4, cut(27), "pass"},
		{"ARP reply claiming the candidate, cut to 41 bytes (one short)", 4, cut(41), "pass"},
		{"ARP reply claiming the candidate, hlen 0 plen 16", 4, func(m net.HardwareAddr, c netip.Addr) []byte {
			return eth(bcast, m, 0x0806, arpBody(0, 16, 2, m, c, c))
		}, "pass"},
		{"ARP claiming the candidate, operation 99", 4, func(m net.HardwareAddr, c netip.Addr) []byte {
			return eth(bcast, m, 0x0806, arpBody(6, 4, 99, m, c, c))
		}, "pass"},
		{"9000-byte junk, ARP EtherType", 4, func(m net.HardwareAddr, c netip.Addr) []byte {
			return eth(bcast, m, 0x0806, junk(9000-14, 1))
		}, "pass"},
		{"9000-byte junk, IPv6 EtherType", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return eth(allNodesMAC(), m, 0x86dd, junk(9000-14, 2))
		}, "pass"},
		{"9000-byte junk, EtherType 0x88b5", 4, func(m net.HardwareAddr, c netip.Addr) []byte {
			return eth(bcast, m, 0x88b5, junk(9000-14, 3))
		}, "pass"},
		{"control: well-formed NA claiming the candidate", 6, na, "block"},
		{"NA claiming the candidate, IPv6 payload length 64 but 32 bytes sent", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 255, naMsg(c, tllOpt(m)), false, 64)
		}, "pass"},
		{"NA claiming the candidate, cut inside the ICMPv6 header", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			f := na(m, c)
			return f[:14+40+10]
		}, "pass"},
		{"NA claiming the candidate, bad ICMPv6 checksum", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 255, naMsg(c, tllOpt(m)), true, -1)
		}, "pass"},
		{"NA claiming the candidate, hop limit 254", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 254, naMsg(c, tllOpt(m)), false, -1)
		}, "pass"},
		{"NA claiming the candidate, option of length 0", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 255, naMsg(c, []byte{2, 0, 0, 0, 0, 0, 0, 0}), false, -1)
		}, "pass"},
		{"NA claiming the candidate, option longer than the packet", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 255, naMsg(c, append([]byte{2, 200}, m...)), false, -1)
		}, "pass"},
		{"DAD NS for the candidate, nonce option of length 0", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			g, gm := solicitedNode(c)
			return ipv6ICMP(gm, m, netip.IPv6Unspecified(), g, 255, nsMsg(c, []byte{14, 0, 1, 2, 3, 4, 5, 6}), false, -1)
		}, "pass"},
		{"NA claiming the candidate, 9000 bytes: 8,900 bytes of junk options", 6, func(m net.HardwareAddr, c netip.Addr) []byte {
			opts := junk(8920, 4)
			for i := 0; i < len(opts); i += 8 { // unknown types with a bad length at the end
				opts[i] = 200
				opts[i+1] = 1
			}
			opts[len(opts)-7] = 255
			return ipv6ICMP(allNodesMAC(), m, c, netip.MustParseAddr("ff02::1"), 255, naMsg(c, opts), false, -1)
		}, "pass"},
	}
}

func (c frameCase) String() string { return fmt.Sprintf("%s (IPv%d)", c.name, c.family) }

// sendSpread sends frame n times, gap apart.
func sendSpread(r *rawSock, frame []byte, n int, gap time.Duration) error {
	for i := 0; i < n; i++ {
		if err := r.send(frame); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	return nil
}
