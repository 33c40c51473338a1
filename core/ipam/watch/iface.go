// One watched interface: its socket in the workload's namespace, the
// frames read from it, conflicts recorded and addresses defended.

package watch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// iface is one watched interface: its socket in the workload's namespace
// and the addresses it holds.
type iface struct {
	w       *Watcher
	key     api.AttachmentKey
	netns   string
	ifname  string
	conn    *packet.Conn
	done    chan struct{}
	started atomic.Bool // its reader runs: close waits for it to end
	closeMu sync.Once
	// retired is set when the interface's allocation is released: its
	// socket may still deliver frames until it is closed, and a claim of
	// the address by whoever gets it next is no conflict.
	retired atomic.Bool

	// nlMu guards nl: a resync, a claim's MAC refresh and a release's
	// close reach it from different goroutines, and a closed handle must
	// not be asked again.
	nlMu     sync.Mutex
	nl       *netlink.Handle
	nlClosed bool

	mac atomic.Pointer[[6]byte]
	ino uint64 // the namespace's inode when opened

	mu          sync.Mutex
	workload    string
	addrs       map[netip.Addr]*heldAddr
	lastRefresh time.Time
}

// heldAddr is a held address and its conflicts, by the other MAC.
type heldAddr struct {
	Addr
	conflicts  map[[6]byte]*conflict
	lastDefend time.Time
	defended   uint64
}

type conflict struct {
	c        api.Conflict
	reported uint64 // Frames at the last report
	lastRep  time.Time
}

// open opens the socket for h inside its namespace: sdk/netns opens the
// path without blocking (a FIFO) and checks it is a network namespace
// before entering it.
func (w *Watcher) open(h Held) (*iface, error) {
	ifc := &iface{w: w, key: h.Key, netns: h.Netns, ifname: h.Key.Interface, done: make(chan struct{})}
	err := netns.Do(h.Netns, func() error {
		nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		_ = nl.SetSocketTimeout(5 * time.Second)
		link, err := nl.LinkByName(h.Key.Interface)
		if err != nil {
			nl.Close()
			return fmt.Errorf("look up %s: %w", h.Key.Interface, err)
		}
		a := link.Attrs()
		if len(a.HardwareAddr) != 6 {
			nl.Close()
			return fmt.Errorf("%s has no Ethernet MAC", h.Key.Interface)
		}
		conn, err := arpnd.Listen(&net.Interface{Index: a.Index, Name: a.Name, HardwareAddr: a.HardwareAddr, MTU: a.MTU}, ReceiveBuffer)
		if err != nil {
			nl.Close()
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err == nil {
			ifc.ino = st.Ino
		}
		m := [6]byte(a.HardwareAddr)
		ifc.mac.Store(&m)
		ifc.nl, ifc.conn = nl, conn
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s in %s (container %s): %w", h.Key.Interface, h.Netns, h.Key.ContainerID, err)
	}
	ifc.setAddrs(h)
	ifc.lastRefresh = w.now()
	return ifc, nil
}

// sameNetns tells whether the namespace path still names the namespace the
// socket was opened in: a workload restarted under the same path has a new
// namespace, and the old socket sees nothing of it.
func (ifc *iface) sameNetns() bool {
	var st unix.Stat_t
	return unix.Stat(ifc.netns, &st) == nil && st.Ino == ifc.ino
}

// domainOf is the layer-2 domain a frame about a seen on this interface
// belongs to: that of the interface's held address of a's family (one
// interface is on one LAN), else of any.
func (ifc *iface) domainOf(a netip.Addr) string {
	ifc.mu.Lock()
	defer ifc.mu.Unlock()
	d := ""
	for x, ha := range ifc.addrs {
		if x.Is4() == a.Is4() {
			return ha.Domain
		}
		d = ha.Domain
	}
	return d
}

func (ifc *iface) setAddrs(h Held) {
	ifc.mu.Lock()
	defer ifc.mu.Unlock()
	ifc.workload = h.Workload
	old := ifc.addrs
	ifc.addrs = make(map[netip.Addr]*heldAddr, len(h.Addrs))
	for _, a := range h.Addrs {
		ha := old[a.Addr]
		if ha == nil {
			ha = &heldAddr{conflicts: map[[6]byte]*conflict{}}
		}
		ha.Addr = a
		ifc.addrs[a.Addr] = ha
	}
}

// refreshMAC reads the interface's MAC again; unless forced, at most once
// per macRefreshPeriod (a flood of foreign claims asks on every frame).
// It reports whether the MAC changed.
func (ifc *iface) refreshMAC(force bool) bool {
	now := ifc.w.now()
	ifc.mu.Lock()
	if !force && now.Sub(ifc.lastRefresh) < macRefreshPeriod {
		ifc.mu.Unlock()
		return false
	}
	ifc.lastRefresh = now
	ifc.mu.Unlock()
	ifc.nlMu.Lock()
	if ifc.nlClosed {
		ifc.nlMu.Unlock()
		return false
	}
	link, err := ifc.nl.LinkByName(ifc.ifname)
	ifc.nlMu.Unlock()
	if err != nil || len(link.Attrs().HardwareAddr) != 6 {
		return false
	}
	m := [6]byte(link.Attrs().HardwareAddr)
	if old := ifc.mac.Load(); old != nil && *old == m {
		return false
	}
	ifc.mac.Store(&m)
	return true
}

// start runs the interface's reader. The watcher calls it under its lock
// as it publishes the interface, so that whoever finds the interface there
// and closes it waits for the reader; one opened and dropped unpublished
// (a lost race) has none to wait for.
func (ifc *iface) start() {
	ifc.started.Store(true)
	go ifc.read()
}

func (ifc *iface) close() {
	ifc.closeMu.Do(func() {
		_ = ifc.conn.Close()
		if ifc.started.Load() {
			<-ifc.done
		}
		ifc.nlMu.Lock()
		ifc.nlClosed = true
		ifc.nl.Close()
		ifc.nlMu.Unlock()
	})
}

// read is the interface's one reader: it ends when the socket is closed.
func (ifc *iface) read() {
	defer close(ifc.done)
	buf := make([]byte, 2048) // ARP and ND frames are small; longer ones are truncated and fail to parse
	for {
		n, _, err := ifc.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var errno unix.Errno
			if errors.As(err, &errno) && errno == unix.EBADF {
				return
			}
			continue // ENETDOWN while the link is down: reading resumes when it is up
		}
		f, err := arpnd.Parse(buf[:n])
		if err != nil {
			continue
		}
		ifc.handle(&f, ifc.w.now())
	}
}

// handle judges one frame.
func (ifc *iface) handle(f *arpnd.Frame, now time.Time) {
	if ifc.retired.Load() {
		return
	}
	for _, c := range arpnd.Claims(f) {
		if !c.Addr.IsValid() || c.Addr.IsUnspecified() || c.Addr.IsMulticast() {
			continue
		}
		ifc.mu.Lock()
		ha := ifc.addrs[c.Addr]
		ifc.mu.Unlock()
		if ha == nil {
			ifc.w.learnBusy(ifc.domainOf(c.Addr), c, now)
			continue
		}
		own := ifc.mac.Load()
		if c.MAC == *own || f.EthSrc == *own {
			continue // the workload's own frame (reflected, or seen on a hairpin)
		}
		// A MAC that changed under us (the workload set a new one
		// without a new ADD) is not a conflict: look again, bounded.
		if ifc.refreshMAC(false) && c.MAC == *ifc.mac.Load() {
			continue
		}
		ifc.claimed(ha, c, now)
	}
}

// claimed records a foreign claim of a held address, reports a new
// conflict at once and defends when the pool asks.
func (ifc *iface) claimed(ha *heldAddr, c arpnd.Claim, now time.Time) {
	own := *ifc.mac.Load()
	ifc.mu.Lock()
	cf := ha.conflicts[c.MAC]
	var rep *Report
	if cf == nil {
		if len(ha.conflicts) >= MaxMACsPerAddr {
			ifc.mu.Unlock()
			return // bounded: the first MACs are reported, the rest are noise of the same fault
		}
		cf = &conflict{c: api.Conflict{
			Address: c.Addr, Pool: ha.Pool, Domain: ha.Domain, Node: ifc.w.o.Node, Workload: ifc.workload,
			ContainerID: ifc.key.ContainerID, Interface: ifc.key.Interface,
			HolderMAC: net.HardwareAddr(own[:]).String(), MAC: net.HardwareAddr(c.MAC[:]).String(),
			Evidence: c.Evidence, FirstSeen: now,
		}}
		ha.conflicts[c.MAC] = cf
	}
	cf.c.LastSeen = now
	cf.c.Frames++
	defend := ha.Defend && c.Evidence != arpnd.EvidenceARPProbe && c.Evidence != arpnd.EvidenceDADProbe &&
		(ha.lastDefend.IsZero() || now.Sub(ha.lastDefend) >= DefendInterval)
	if defend {
		ha.lastDefend = now
		ha.defended++
	}
	cf.c.Defended = ha.defended
	if cf.lastRep.IsZero() {
		cf.lastRep, cf.reported = now, cf.c.Frames
		rep = &Report{Conflict: cf.c, New: true}
	} else if now.Sub(cf.lastRep) >= ReportInterval {
		cf.lastRep, cf.reported = now, cf.c.Frames
		rep = &Report{Conflict: cf.c}
	}
	ifc.mu.Unlock()
	if defend {
		// A probe (sender 0.0.0.0, DAD from ::) is answered by the
		// workload's own stack; an announcement answers a claim.
		ifc.defend(c.Addr, ha.Pool, own)
	}
	if rep != nil {
		ifc.w.report(*rep)
	}
}

// defend sends one announcement of addr from the workload's interface with
// its MAC: a gratuitous ARP, or an unsolicited NA with override set.
func (ifc *iface) defend(addr netip.Addr, pool string, mac [6]byte) {
	var (
		b   []byte
		err error
	)
	if addr.Is4() {
		b, err = arpnd.BuildGratuitousARP(mac[:], addr)
	} else {
		b, err = arpnd.BuildUnsolicitedNA(mac[:], addr)
	}
	if err == nil {
		dst := arpnd.BroadcastMAC
		if addr.Is6() {
			dst = arpnd.AllNodesMAC
		}
		_, err = ifc.conn.WriteTo(b, &packet.Addr{HardwareAddr: dst})
	}
	if err != nil {
		ifc.w.o.Log.Warn("cannot defend a contested address", "address", addr, "interface", ifc.ifname, "container_id", ifc.key.ContainerID, "error", err)
		return
	}
	if ifc.w.o.OnDefend != nil {
		ifc.w.o.OnDefend(addr, pool)
	}
}

// sweep reports the frames seen since a conflict's last report once
// ReportInterval passed, and forgets conflicts quiet for ContestedFor.
func (ifc *iface) sweep(now time.Time) {
	var reps []Report
	ifc.mu.Lock()
	for _, ha := range ifc.addrs {
		for m, cf := range ha.conflicts {
			if now.Sub(cf.c.LastSeen) >= ContestedFor {
				delete(ha.conflicts, m)
				continue
			}
			if cf.c.Frames > cf.reported && now.Sub(cf.lastRep) >= ReportInterval {
				cf.lastRep, cf.reported = now, cf.c.Frames
				reps = append(reps, Report{Conflict: cf.c})
			}
		}
	}
	ifc.mu.Unlock()
	for _, r := range reps {
		ifc.w.report(r)
	}
}

func (ifc *iface) contested(now time.Time) []api.Conflict {
	ifc.mu.Lock()
	defer ifc.mu.Unlock()
	var out []api.Conflict
	for _, ha := range ifc.addrs {
		for _, cf := range ha.conflicts {
			if now.Sub(cf.c.LastSeen) < ContestedFor {
				out = append(out, cf.c)
			}
		}
	}
	return out
}
