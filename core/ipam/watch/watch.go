// Package watch keeps the addresses the agent gave out under watch after
// allocation (RFC 5227 section 2.4, RFC 4862 5.4): one passive packet
// socket per allocated workload interface, inside the workload's network
// namespace, reads the ARP and ND frames visible there and reports a claim
// of a held address from a MAC that is not the interface's own. A pool
// with defend on answers a claim the way RFC 5227 2.4(b) and n-acd do:
// one announcement from the workload's interface, at most once per
// DefendInterval per address. Claims of pool addresses the agent does not
// hold are remembered for a while so the allocator skips them.
//
// Frames are parsed, filtered and judged by sdk/arpnd, the same code the
// probe engine of the detector plugins uses.
//
// Bounds, whatever the wire sends: one socket and one reader per watched
// interface (MaxInterfaces), a BPF filter that passes only ARP and ND,
// a receive buffer of ReceiveBuffer bytes (frames beyond it are dropped by
// the kernel, not queued), at most MaxMACsPerAddress conflicts per address,
// at most MaxBusy remembered busy addresses, and reports rate-limited: a
// new conflict is reported at once (within the reader's latency), later
// frames of it only in a summary every ReportInterval.
package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// Defaults.
const (
	// DefendInterval is the least time between two announcements for one
	// address (RFC 5227's DEFEND_INTERVAL): two defenders on one LAN
	// then cost the LAN one frame each per interval, never a storm.
	DefendInterval = 10 * time.Second
	// ReportInterval is the least time between two reports of one
	// conflict after its first.
	ReportInterval = 10 * time.Second
	// ContestedFor is how long a held address counts as contested after
	// the last foreign claim; the conflict is then forgotten here (the
	// store keeps it for the retention).
	ContestedFor = 5 * time.Minute
	// BusyFor is how long a claimed pool address that the agent does not
	// hold is skipped by candidate searches.
	BusyFor          = 10 * time.Minute
	MaxMACsPerAddr   = 4
	MaxBusy          = 4096
	MaxInterfaces    = 4096
	ReceiveBuffer    = 1 << 20
	macRefreshPeriod = time.Second
)

// Addr is one held address of a watched interface.
type Addr struct {
	Addr   netip.Addr
	Pool   string
	Domain string
	// Defend: answer a foreign claim with one announcement.
	Defend bool
}

// Held is an allocation's interface to watch.
type Held struct {
	Key      ipamapi.AttachmentKey
	Workload string
	Netns    string
	Addrs    []Addr
}

// Report is a conflict to report: New for the first frame of a conflict,
// then summaries (New false) while frames keep coming.
type Report struct {
	ipamapi.Conflict
	New bool
}

// Reporter gets the reports. Calls come from the readers and the sweep,
// never concurrently for one conflict; it must not block for long (a
// report to a store goes through a queue of its own).
type Reporter interface {
	Report(Report)
}

// Options configure a Watcher.
type Options struct {
	Node     string
	Reporter Reporter
	Log      hclog.Logger
	// Pooled says which pool (and domain) an address not held belongs
	// to, for the busy list; nil learns nothing.
	Pooled func(netip.Addr) (pool, domain string, ok bool)
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// OnDefend is called after each announcement sent (tests, metrics).
	OnDefend func(addr netip.Addr, pool string)
}

// Watcher watches the held addresses of this node's allocations.
type Watcher struct {
	o   Options
	now func() time.Time

	mu     sync.Mutex
	ifaces map[ipamapi.AttachmentKey]*iface
	closed bool

	busyMu sync.Mutex
	busy   map[netip.Addr]ipamapi.BusyAddress

	detected atomic.Uint64
	latest   atomic.Pointer[ipamapi.Conflict]
	errMu    sync.Mutex
	lastErr  string

	stop chan struct{}
	done chan struct{}
}

// New starts a Watcher with nothing to watch; Sync gives it allocations.
func New(o Options) *Watcher {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	w := &Watcher{o: o, now: o.Now, ifaces: map[ipamapi.AttachmentKey]*iface{},
		busy: map[netip.Addr]ipamapi.BusyAddress{}, stop: make(chan struct{}), done: make(chan struct{})}
	if w.now == nil {
		w.now = time.Now
	}
	go w.sweepLoop()
	return w
}

// Sync makes the watched set equal held: new interfaces are opened, gone
// ones closed, a changed namespace reopened, and the held addresses and
// pool settings of the others updated. Every Sync re-reads each watched
// interface's MAC (a restarted workload may come back with a new one). It
// returns the errors of interfaces it could not open, joined; the others
// are watched.
func (w *Watcher) Sync(ctx context.Context, held []Held) error {
	want := map[ipamapi.AttachmentKey]Held{}
	for _, h := range held {
		if h.Netns == "" || len(h.Addrs) == 0 {
			continue // nothing visible to watch (a VM without a namespace)
		}
		want[h.Key] = h
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("watcher closed")
	}
	var stale []*iface
	for k, ifc := range w.ifaces {
		if h, ok := want[k]; !ok || h.Netns != ifc.netns || !ifc.sameNetns() {
			stale = append(stale, ifc)
			delete(w.ifaces, k)
		}
	}
	var open []Held
	for k, h := range want {
		if ifc := w.ifaces[k]; ifc != nil {
			ifc.setAddrs(h)
			continue
		}
		open = append(open, h)
	}
	existing := make([]*iface, 0, len(w.ifaces))
	for _, ifc := range w.ifaces {
		existing = append(existing, ifc)
	}
	w.mu.Unlock()
	for _, ifc := range stale {
		ifc.close()
	}
	for _, ifc := range existing {
		ifc.refreshMAC(true)
	}
	var errs []error
	for _, h := range open {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		w.mu.Lock()
		full := len(w.ifaces) >= MaxInterfaces
		w.mu.Unlock()
		if full {
			errs = append(errs, fmt.Errorf("watch %s/%s: already watching %d interfaces", h.Key.ContainerID, h.Key.Interface, MaxInterfaces))
			continue
		}
		ifc, err := w.open(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.mu.Lock()
		if w.closed || w.ifaces[h.Key] != nil {
			w.mu.Unlock()
			ifc.close()
			continue
		}
		w.ifaces[h.Key] = ifc
		w.mu.Unlock()
		go ifc.read()
	}
	err := errors.Join(errs...)
	w.errMu.Lock()
	w.lastErr = ""
	if err != nil {
		w.lastErr = err.Error()
	}
	w.errMu.Unlock()
	return err
}

// Add watches one allocation's interface now (the allocation's answer
// waits for it, so that no claim made right after it is missed), or
// updates it and reads its MAC again when it is watched already: an ADD of
// a restarted workload may bring a new MAC.
func (w *Watcher) Add(h Held) error {
	if h.Netns == "" || len(h.Addrs) == 0 {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("watcher closed")
	}
	old := w.ifaces[h.Key]
	if old != nil && old.netns == h.Netns && old.sameNetns() {
		old.setAddrs(h)
		w.mu.Unlock()
		old.refreshMAC(true)
		return nil
	}
	full := old == nil && len(w.ifaces) >= MaxInterfaces
	w.mu.Unlock()
	if full {
		return fmt.Errorf("watch %s/%s: already watching %d interfaces", h.Key.ContainerID, h.Key.Interface, MaxInterfaces)
	}
	ifc, err := w.open(h)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		ifc.close()
		return errors.New("watcher closed")
	}
	prev := w.ifaces[h.Key]
	w.ifaces[h.Key] = ifc
	w.mu.Unlock()
	go ifc.read()
	if prev != nil {
		prev.close()
	}
	return nil
}

// Remove stops watching key's interface: its allocation was released. A
// key not watched is nothing to do.
func (w *Watcher) Remove(key ipamapi.AttachmentKey) {
	w.mu.Lock()
	ifc := w.ifaces[key]
	delete(w.ifaces, key)
	w.mu.Unlock()
	if ifc != nil {
		ifc.close()
	}
}

// Close stops every reader and closes every socket.
func (w *Watcher) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	all := w.ifaces
	w.ifaces = map[ipamapi.AttachmentKey]*iface{}
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	for _, ifc := range all {
		ifc.close()
	}
}

// Status is the summary status shows.
func (w *Watcher) Status() ipamapi.ConflictStatus {
	st := ipamapi.ConflictStatus{Detected: w.detected.Load(), Latest: w.latest.Load()}
	w.mu.Lock()
	st.Watching = len(w.ifaces)
	ifs := make([]*iface, 0, len(w.ifaces))
	for _, ifc := range w.ifaces {
		ifs = append(ifs, ifc)
	}
	w.mu.Unlock()
	addrs := map[netip.Addr]bool{}
	for _, ifc := range ifs {
		for _, c := range ifc.contested(w.now()) {
			addrs[c.Address] = true
		}
	}
	st.Contested = len(addrs)
	st.Busy = len(w.Busy())
	w.errMu.Lock()
	st.Error = w.lastErr
	w.errMu.Unlock()
	return st
}

// Contested returns the conflicts of held addresses seen within
// ContestedFor, newest first.
func (w *Watcher) Contested() []ipamapi.Conflict {
	w.mu.Lock()
	ifs := make([]*iface, 0, len(w.ifaces))
	for _, ifc := range w.ifaces {
		ifs = append(ifs, ifc)
	}
	w.mu.Unlock()
	var out []ipamapi.Conflict
	now := w.now()
	for _, ifc := range ifs {
		out = append(out, ifc.contested(now)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out
}

// Busy returns the pool addresses seen claimed that the agent does not
// hold, still within BusyFor.
func (w *Watcher) Busy() []ipamapi.BusyAddress {
	now := w.now()
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	out := make([]ipamapi.BusyAddress, 0, len(w.busy))
	for _, b := range w.busy {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// IsBusy tells whether addr was seen claimed within BusyFor.
func (w *Watcher) IsBusy(addr netip.Addr) bool {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	b, ok := w.busy[addr]
	return ok && w.now().Before(b.Until)
}

// learnBusy remembers a claim of an address not held here. A full list
// takes nothing new until entries expire: a flood of made-up addresses
// cannot grow it, and costs only the skip it would have saved.
func (w *Watcher) learnBusy(c arpnd.Claim, now time.Time) {
	if w.o.Pooled == nil || c.Evidence == arpnd.EvidenceARPProbe || c.Evidence == arpnd.EvidenceDADProbe {
		return // a probe is a question, not a holder
	}
	pool, _, ok := w.o.Pooled(c.Addr)
	if !ok {
		return
	}
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if _, had := w.busy[c.Addr]; !had && len(w.busy) >= MaxBusy {
		return
	}
	w.busy[c.Addr] = ipamapi.BusyAddress{Address: c.Addr, Pool: pool, MAC: net.HardwareAddr(c.MAC[:]).String(),
		Evidence: c.Evidence, Seen: now, Until: now.Add(BusyFor)}
}

// sweepLoop sends the summaries of conflicts with unreported frames and
// forgets what expired.
func (w *Watcher) sweepLoop() {
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := w.now()
		w.mu.Lock()
		ifs := make([]*iface, 0, len(w.ifaces))
		for _, ifc := range w.ifaces {
			ifs = append(ifs, ifc)
		}
		w.mu.Unlock()
		for _, ifc := range ifs {
			ifc.sweep(now)
		}
		w.busyMu.Lock()
		for a, b := range w.busy {
			if !now.Before(b.Until) {
				delete(w.busy, a)
			}
		}
		w.busyMu.Unlock()
	}
}

func (w *Watcher) report(r Report) {
	if r.New {
		w.detected.Add(1)
		c := r.Conflict
		w.latest.Store(&c)
	}
	if w.o.Reporter != nil {
		w.o.Reporter.Report(r)
	}
}

// iface is one watched interface: its socket in the workload's namespace
// and the addresses it holds.
type iface struct {
	w       *Watcher
	key     ipamapi.AttachmentKey
	netns   string
	ifname  string
	conn    *packet.Conn
	nl      *netlink.Handle
	done    chan struct{}
	closeMu sync.Once

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
	c        ipamapi.Conflict
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
	link, err := ifc.nl.LinkByName(ifc.ifname)
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

func (ifc *iface) close() {
	ifc.closeMu.Do(func() {
		_ = ifc.conn.Close()
		<-ifc.done
		ifc.nl.Close()
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
	for _, c := range arpnd.Claims(f) {
		if !c.Addr.IsValid() || c.Addr.IsUnspecified() || c.Addr.IsMulticast() {
			continue
		}
		ifc.mu.Lock()
		ha := ifc.addrs[c.Addr]
		ifc.mu.Unlock()
		if ha == nil {
			ifc.w.learnBusy(c, now)
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
		cf = &conflict{c: ipamapi.Conflict{
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

func (ifc *iface) contested(now time.Time) []ipamapi.Conflict {
	ifc.mu.Lock()
	defer ifc.mu.Unlock()
	var out []ipamapi.Conflict
	for _, ha := range ifc.addrs {
		for _, cf := range ha.conflicts {
			if now.Sub(cf.c.LastSeen) < ContestedFor {
				out = append(out, cf.c)
			}
		}
	}
	return out
}
