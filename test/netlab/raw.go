package netlab

import (
	"net"
	"sync"
	"testing"

	"github.com/mdlayher/packet"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// RawPort is a packet socket on one interface of a namespace: it sends
// hand-built frames (sdk/arpnd's builders) and records the ARP/ND frames it
// receives. Tests use it to play another station on the wire, or a tap.
type RawPort struct {
	conn *packet.Conn
	mu   sync.Mutex
	got  []arpnd.Frame
}

// OpenRaw opens a RawPort on ifname in the namespace at nsPath; it is
// closed by t.Cleanup.
func OpenRaw(t testing.TB, nsPath, ifname string) *RawPort {
	t.Helper()
	p := &RawPort{}
	err := netns.Do(nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		p.conn, err = arpnd.Listen(ifi, 1<<20)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, nsPath, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := p.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if f, err := arpnd.Parse(buf[:n]); err == nil {
				p.mu.Lock()
				p.got = append(p.got, f)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { p.conn.Close(); <-done })
	return p
}

// Send returns a function that sends what a frame builder returns, to the
// frame's own destination MAC: p.Send(t)(arpnd.BuildGratuitousARP(mac, a)).
func (p *RawPort) Send(t testing.TB) func(b []byte, err error) {
	return func(b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.conn.WriteTo(b, &packet.Addr{HardwareAddr: net.HardwareAddr(b[0:6])}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

// Count counts the received frames that match.
func (p *RawPort) Count(match func(*arpnd.Frame) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i := range p.got {
		if match(&p.got[i]) {
			n++
		}
	}
	return n
}
