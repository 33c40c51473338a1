//go:build linux

// The packet socket of one interface: opening it (in a namespace), its
// buffer and its drop count.

package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// sockKey identifies a (network namespace, interface) pair. The namespace is
// keyed by its inode, so /var/run/netns/x and /proc/PID/ns/net of the same
// namespace share a socket, and a namespace recreated under the same path
// gets a new one.
type sockKey struct {
	dev, ino uint64
	ifname   string
}

// ifSock is one packet socket on one interface, shared by all checks on it.
type ifSock struct {
	ifname  string
	ifindex int
	conn    *packet.Conn
	raw     syscall.RawConn
	nl      *netlink.Handle // opening, and the link-local address of IPv6 gateway checks
	links   *linkConn       // the link query of every check
	c       *counters

	mac    atomic.Pointer[[6]byte] // current MAC, refreshed by every link check
	broken atomic.Bool             // interface vanished or was replaced
	done   chan struct{}           // closed when the reader exits

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	waiters map[netip.Addr][]*waiter
	groups  map[[6]byte]int // multicast memberships by refcount

	linkMu   sync.Mutex
	linkNext *linkQuery
	linkBusy bool

	pace    *pacer
	onFrame func()

	dropMu    sync.Mutex
	dropTotal uint64 // PACKET_STATISTICS drops, summed (reading resets them)

	// The reader's progress, for the drain barrier: idle is set when a
	// read found the queue empty (everything that arrived before idleAt
	// was handled) and cleared before each read; idleSeq counts the times
	// it went idle. progress is closed and replaced when it goes idle and
	// someone waits (progWaiting > 0).
	idle        atomic.Bool
	idleSeq     atomic.Uint64
	idleAt      atomic.Int64 // time.Since(born) in ns
	born        time.Time
	progMu      sync.Mutex
	progress    chan struct{}
	progWaiting atomic.Int32
}

// openSock opens the socket for ifname inside the namespace ns (checked by
// openNetns; fd -1 is the calling thread's namespace). It enters ns.fd, the
// file openNetns checked and keyed, not ns.path again.
func openSock(ns *nsFile, ifname string, c *counters, o Options) (*ifSock, error) {
	if ns.fd < 0 {
		return openHere(ifname, c, o)
	}
	var (
		s    *ifSock
		oerr error
		ran  bool
	)
	err := netns.DoAt(ns.fd, ns.path, func() error {
		ran = true
		s, oerr = openHere(ifname, c, o)
		return oerr
	})
	switch {
	case !ran:
		return nil, fmt.Errorf("%w: %w", ErrNetns, err)
	case oerr != nil:
		return nil, oerr // whether or not the thread came back
	case err != nil:
		// The socket opened but the thread could not come back (it is
		// discarded). Say so, and close the socket: a caller drops
		// whatever comes with an error.
		s.close()
		return nil, fmt.Errorf("%w: %w", ErrNetns, err)
	}
	return s, nil
}

// openHere opens the socket in the calling thread's namespace.
func openHere(ifname string, c *counters, o Options) (*ifSock, error) {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	_ = nl.SetSocketTimeout(5 * time.Second)
	link, err := nl.LinkByName(ifname)
	if err != nil {
		nl.Close()
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: no such interface", ErrInterface)
		}
		return nil, fmt.Errorf("look up interface: %w", err)
	}
	attrs := link.Attrs()
	ifi := &net.Interface{Index: attrs.Index, Name: attrs.Name, HardwareAddr: attrs.HardwareAddr, MTU: attrs.MTU}
	// Room for the answers to a burst of checks.
	conn, err := arpnd.Listen(ifi, o.ReceiveBuffer)
	if err != nil {
		nl.Close()
		return nil, err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		nl.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	// Start the drop count at zero: frames dropped before any check ran
	// concern no check.
	if _, err := conn.Stats(); err != nil {
		conn.Close()
		nl.Close()
		return nil, fmt.Errorf("packet socket statistics: %w", err)
	}
	links, err := openLinkConn()
	if err != nil {
		conn.Close()
		nl.Close()
		return nil, err
	}
	s := &ifSock{
		ifname:  ifname,
		ifindex: attrs.Index,
		conn:    conn,
		raw:     raw,
		nl:      nl,
		links:   links,
		c:       c,
		done:    make(chan struct{}),
		waiters: make(map[netip.Addr][]*waiter),
		groups:  make(map[[6]byte]int),
		onFrame: o.OnFrame,
		born:    time.Now(),
	}
	s.pace = newPacer(o.ProbeRate, o.burst(), s.send)
	var m [6]byte
	copy(m[:], attrs.HardwareAddr)
	s.mac.Store(&m)
	go s.readLoop()
	return s, nil
}

func (s *ifSock) close() error {
	s.closeOnce.Do(func() {
		_, _ = s.drops()
		s.pace.close()
		s.closeErr = s.conn.Close()
		<-s.done
		_ = s.links.close()
		s.nl.Close()
	})
	return s.closeErr
}

func (s *ifSock) isBroken() bool { return s.broken.Load() }

func (s *ifSock) hwAddr() net.HardwareAddr {
	m := s.mac.Load()
	return append(net.HardwareAddr(nil), m[:]...)
}

// drops returns how many frames the kernel dropped on the socket since it
// opened (the receive buffer was full). Reading PACKET_STATISTICS resets
// the kernel's counters, so every reader goes through here.
func (s *ifSock) drops() (uint64, error) {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	st, err := s.conn.Stats()
	if err != nil {
		return 0, fmt.Errorf("read socket drop count (PACKET_STATISTICS): %w", err)
	}
	s.dropTotal += uint64(st.Drops)
	s.c.kernelDrops.Add(uint64(st.Drops))
	return s.dropTotal, nil
}

func (s *ifSock) collectDrops() { _, _ = s.drops() }
