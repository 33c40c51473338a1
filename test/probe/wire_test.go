package probe_test

// Test-side wire tools, written independently of the engine: a capture
// socket, a user-space responder that answers late (this kernel has no
// sch_netem, so delays cannot come from tc), and a frame flooder.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"golang.org/x/sys/unix"
)

// listenIn opens a raw ETH_P_ALL packet socket on eth0 of h.
func listenIn(t testing.TB, h *netlab.Host) *packet.Conn {
	t.Helper()
	var conn *packet.Conn
	netlab.InNS(t, h.NS, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	return conn
}

// readFrames opens a raw socket on h's eth0 and, in one goroutine, hands
// every frame arriving there to handle, with the socket to answer on. The
// frame is handle's only during the call: the next read reuses its bytes.
// When the test ends the socket is closed and the goroutine waited for.
func readFrames(t testing.TB, h *netlab.Host, handle func(conn *packet.Conn, frame []byte)) {
	t.Helper()
	conn := listenIn(t, h)
	done := make(chan struct{})
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			handle(conn, buf[:n])
		}
	}()
}

// capture records every frame arriving at h's eth0.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t testing.TB, h *netlab.Host) *capture {
	t.Helper()
	c := &capture{}
	readFrames(t, h, func(_ *packet.Conn, f []byte) {
		c.mu.Lock()
		c.frames = append(c.frames, append([]byte(nil), f...))
		c.mu.Unlock()
	})
	return c
}

// waitMatching polls until at least n captured frames satisfy match, and
// returns them.
func (c *capture) waitMatching(t testing.TB, what string, n int, match func([]byte) bool) [][]byte {
	t.Helper()
	var got [][]byte
	netlab.WaitFor(t, what, func() (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		got = got[:0]
		for _, f := range c.frames {
			if match(f) {
				got = append(got, f)
			}
		}
		return len(got) >= n, nil
	})
	return got
}

// ethType returns a frame's EtherType (0 if too short).
func ethType(f []byte) uint16 {
	if len(f) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f[12:14])
}

// arpFields splits an Ethernet/IPv4 ARP frame.
type arpFields struct {
	op       uint16
	sha, tha net.HardwareAddr
	spa, tpa netip.Addr
}

// broadcast is the Ethernet broadcast address.
var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpReply is h's ARP reply, as the owner of v4, to the request a.
func arpReply(h *netlab.Host, v4 netip.Addr, a arpFields) []byte {
	return netlab.ARPFrame(a.sha, h.MAC, 2, h.MAC, v4, a.sha, netip.Addr{})
}

func parseARP(f []byte) (arpFields, bool) {
	if ethType(f) != 0x0806 || len(f) < 42 {
		return arpFields{}, false
	}
	a := f[14:]
	return arpFields{
		op:  binary.BigEndian.Uint16(a[6:8]),
		sha: net.HardwareAddr(a[8:14]),
		spa: netip.AddrFrom4([4]byte(a[14:18])),
		tha: net.HardwareAddr(a[18:24]),
		tpa: netip.AddrFrom4([4]byte(a[24:28])),
	}, true
}

// ndFields splits an Ethernet/IPv6/ICMPv6 frame.
type ndFields struct {
	src, dst netip.Addr
	hop      uint8
	icmp     []byte // the whole ICMPv6 message
}

func parseIPv6ICMP(f []byte) (ndFields, bool) {
	if ethType(f) != 0x86dd || len(f) < 54 || f[14+6] != 58 {
		return ndFields{}, false
	}
	plen := int(binary.BigEndian.Uint16(f[18:20]))
	if 54+plen > len(f) || plen < 4 {
		return ndFields{}, false
	}
	return ndFields{
		src:  netip.AddrFrom16([16]byte(f[22:38])),
		dst:  netip.AddrFrom16([16]byte(f[38:54])),
		hop:  f[21],
		icmp: f[54 : 54+plen],
	}, true
}

// checksumOK verifies an ICMPv6 checksum the textbook way.
func checksumOK(src, dst netip.Addr, msg []byte) bool {
	ph := make([]byte, 0, 40+len(msg)+1)
	s, d := src.As16(), dst.As16()
	ph = append(ph, s[:]...)
	ph = append(ph, d[:]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
	ph = append(ph, 0, 0, 0, 58)
	ph = append(ph, msg...)
	if len(ph)%2 == 1 {
		ph = append(ph, 0)
	}
	var sum uint32
	for i := 0; i < len(ph); i += 2 {
		sum += uint32(ph[i])<<8 | uint32(ph[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum) == 0xffff
}

// ndOptions returns the options of an NS/NA (type -> value).
func ndOptions(msg []byte) map[byte][]byte {
	opts := map[byte][]byte{}
	for b := msg[24:]; len(b) >= 2 && b[1] != 0 && int(b[1])*8 <= len(b); b = b[int(b[1])*8:] {
		opts[b[0]] = b[2 : int(b[1])*8]
	}
	return opts
}

// lateResponder answers ARP probes for v4 and DAD probes for v6 on h's eth0,
// each after delay, as the owner of those addresses (h's MAC).
func lateResponder(t testing.TB, h *netlab.Host, delay time.Duration, v4, v6 netip.Addr) {
	t.Helper()
	var timers sync.WaitGroup
	stop := make(chan struct{})
	// Cleanups run last registered first: stop the delayed writes, then
	// (readFrames') close the socket and wait for the reader, then wait for
	// the timers it started, to which it can no longer add.
	t.Cleanup(timers.Wait)
	send := func(conn *packet.Conn, dst net.HardwareAddr, frame []byte) {
		timers.Add(1)
		time.AfterFunc(delay, func() {
			defer timers.Done()
			select {
			case <-stop:
			default:
				_, _ = conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst})
			}
		})
	}
	readFrames(t, h, func(conn *packet.Conn, f []byte) {
		if a, ok := parseARP(f); ok && a.op == 1 && a.tpa == v4 && a.spa.IsUnspecified() {
			send(conn, append(net.HardwareAddr(nil), a.sha...), arpReply(h, v4, a))
			return
		}
		if nd, ok := parseIPv6ICMP(f); ok && nd.icmp[0] == 135 && len(nd.icmp) >= 24 && nd.src.IsUnspecified() &&
			netip.AddrFrom16([16]byte(nd.icmp[8:24])) == v6 {
			allNodes := netip.MustParseAddr("ff02::1")
			icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborAdvertisement{
				Override: true, TargetAddress: v6,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: h.MAC}},
			}, v6, allNodes)
			if err != nil {
				panic(err)
			}
			dstMAC := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
			na := make([]byte, 54+len(icmp))
			copy(na[0:6], dstMAC)
			copy(na[6:12], h.MAC)
			binary.BigEndian.PutUint16(na[12:14], 0x86dd)
			na[14] = 0x60
			binary.BigEndian.PutUint16(na[18:20], uint16(len(icmp)))
			na[20], na[21] = 58, 255
			s, d := v6.As16(), allNodes.As16()
			copy(na[22:38], s[:])
			copy(na[38:54], d[:])
			copy(na[54:], icmp)
			send(conn, dstMAC, na)
		}
	})
	t.Cleanup(func() { close(stop) })
}

// flood sends unrelated ARP requests from h as fast as it can until the test
// ends, and returns a counter of frames sent.
func flood(t testing.TB, h *netlab.Host) *atomic.Int64 {
	t.Helper()
	conn := listenIn(t, h)
	stop := make(chan struct{})
	done := make(chan struct{})
	sent := new(atomic.Int64)
	go func() {
		defer close(done)
		sender := netip.AddrFrom4([4]byte{10, 0, 0, 10})
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			frame := netlab.ARPFrame(broadcast, h.MAC, 1, h.MAC, sender, nil, netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)}))
			if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: broadcast}); err == nil {
				sent.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		conn.Close()
	})
	return sent
}
