//go:build linux

package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
	netns   string
	ifname  string
	ifindex int
	conn    *packet.Conn
	raw     syscall.RawConn
	nl      *netlink.Handle
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

// waiter is one check waiting for an answer about addr.
type waiter struct {
	addr    netip.Addr
	gateway bool
	nonce   []byte
	hit     chan struct{} // closed at the first decisive answer
	fired   bool
	ans     answer
}

type answer struct {
	mac      [6]byte
	evidence string
	at       time.Time
}

// openSock opens the socket for ifname inside the namespace ns (checked by
// openNetns; fd -1 is the calling thread's namespace).
func openSock(ns *nsFile, ifname string, c *counters, o Options) (*ifSock, error) {
	nsPath := ns.path
	if ns.fd < 0 {
		return openHere(nsPath, ifname, c, o)
	}
	target := netns.NsHandle(ns.fd)

	type result struct {
		s   *ifSock
		err error
	}
	ch := make(chan result, 1)
	// A fresh goroutine: if the thread cannot be put back into its original
	// namespace it stays locked and the runtime destroys it when the
	// goroutine exits, so no other goroutine ever runs in the wrong place.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("%w: get current network namespace: %w", ErrNetns, err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("%w: enter %s: %w", ErrNetns, nsPath, err)}
			return
		}
		s, err := openHere(nsPath, ifname, c, o)
		if rerr := netns.Set(orig); rerr != nil {
			// Leave the thread locked: it dies with this goroutine. The
			// socket is bound to its namespace and stays usable.
			ch <- result{s, err}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// openHere opens the socket in the calling thread's namespace.
func openHere(nsPath, ifname string, c *counters, o Options) (*ifSock, error) {
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
	prog, err := filter()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("assemble BPF filter: %w", err)
	}
	ifi := &net.Interface{Index: attrs.Index, Name: attrs.Name, HardwareAddr: attrs.HardwareAddr, MTU: attrs.MTU}
	conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: prog})
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		nl.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	_ = raw.Control(func(fd uintptr) {
		// Keep our own transmissions out of the queue altogether (Linux
		// 4.20+; the BPF filter and the reader drop them as well).
		_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		// Room for the answers to a burst of checks. FORCE passes
		// net.core.rmem_max (CAP_NET_ADMIN); without it the kernel caps
		// the size, and drops are still detected, not assumed away.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.ReceiveBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, o.ReceiveBuffer)
		}
	})
	// Start the drop count at zero: frames dropped before any check ran
	// concern no check.
	if _, err := conn.Stats(); err != nil {
		conn.Close()
		nl.Close()
		return nil, fmt.Errorf("packet socket statistics: %w", err)
	}
	s := &ifSock{
		netns:   nsPath,
		ifname:  ifname,
		ifindex: attrs.Index,
		conn:    conn,
		raw:     raw,
		nl:      nl,
		c:       c,
		done:    make(chan struct{}),
		waiters: make(map[netip.Addr][]*waiter),
		groups:  make(map[[6]byte]int),
		onFrame: o.OnFrame,
		born:    time.Now(),
	}
	rate := o.ProbeRate
	s.pace = newPacer(rate, o.burst(), s.send)
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

// errNotDrained: the reader did not handle every frame that arrived before
// a window's end within the grace given.
var errNotDrained = errors.New("receive queue not drained")

// drainTick is how often a drain waiter looks again without being woken.
const drainTick = 20 * time.Millisecond

// drained waits until the reader has handled every frame that arrived
// before deadline, or until limit (errNotDrained). The reader is known to
// have done so when it went idle (found the queue empty) at or after the
// deadline, or when it is idle now and the queue is still empty: then no
// frame arrived since it last looked. The second test needs no frame to
// arrive, so a quiet link proves itself at once.
func (s *ifSock) drained(ctx context.Context, deadline, limit time.Time) error {
	s.progWaiting.Add(1)
	defer s.progWaiting.Add(-1)
	tick := time.NewTimer(drainTick)
	defer tick.Stop()
	for {
		s.progMu.Lock()
		if s.progress == nil {
			s.progress = make(chan struct{})
		}
		ch := s.progress
		s.progMu.Unlock()
		if s.idle.Load() {
			seq := s.idleSeq.Load()
			if !s.born.Add(time.Duration(s.idleAt.Load())).Before(deadline) {
				return nil
			}
			now := time.Now()
			if !now.Before(deadline) && s.queueEmpty() && s.idle.Load() && s.idleSeq.Load() == seq {
				return nil
			}
		}
		if time.Now().After(limit) {
			return errNotDrained
		}
		// Woken when the reader next goes idle: a frame in the queue wakes
		// it through the poller, so the tick is only a safety net, kept
		// coarse because thousands of checks may wait here at once.
		tick.Reset(drainTick)
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("%w: socket closed", ErrClosed)
		}
	}
}

// queueEmpty tells whether no frame waits in the socket's receive queue.
func (s *ifSock) queueEmpty() bool {
	empty := false
	_ = s.raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			empty = err == nil && n == 0
			return
		}
	})
	return empty
}

// wentIdle records that a read found the queue empty; at was taken before
// that read.
func (s *ifSock) wentIdle(at time.Time) {
	s.idleAt.Store(int64(at.Sub(s.born)))
	s.idleSeq.Add(1)
	s.idle.Store(true)
	if s.progWaiting.Load() > 0 {
		s.progMu.Lock()
		if s.progress != nil {
			close(s.progress)
			s.progress = nil
		}
		s.progMu.Unlock()
	}
}

// --- link state ------------------------------------------------------------

// linkQuery is one netlink look-up shared by every caller that asked for it
// before it started: a burst of checks costs one or two queries, and no
// caller ever gets a state read before it asked.
type linkQuery struct {
	done chan struct{}
	err  error
}

// checkLink verifies that the interface is still there (same index, same
// name) and usable for ARP/ND probing, and refreshes its MAC.
func (s *ifSock) checkLink(ctx context.Context) error {
	s.linkMu.Lock()
	q := s.linkNext
	if q == nil {
		q = &linkQuery{done: make(chan struct{})}
		s.linkNext = q
	}
	if !s.linkBusy {
		s.linkBusy = true
		go s.runLinkQueries()
	}
	s.linkMu.Unlock()
	select {
	case <-q.done:
		return q.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *ifSock) runLinkQueries() {
	for {
		s.linkMu.Lock()
		q := s.linkNext
		s.linkNext = nil
		if q == nil {
			s.linkBusy = false
			s.linkMu.Unlock()
			return
		}
		s.linkMu.Unlock()
		q.err = s.queryLink()
		close(q.done)
	}
}

func (s *ifSock) queryLink() error {
	link, err := s.nl.LinkByIndex(s.ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			s.broken.Store(true)
			return fmt.Errorf("%w: interface vanished", ErrInterface)
		}
		return fmt.Errorf("look up interface: %w", err)
	}
	a := link.Attrs()
	if a.Name != s.ifname {
		s.broken.Store(true)
		return fmt.Errorf("%w: interface index %d is now %q", ErrInterface, s.ifindex, a.Name)
	}
	if err := usable(a); err != nil {
		return err
	}
	var m [6]byte
	copy(m[:], a.HardwareAddr)
	s.mac.Store(&m)
	return nil
}

// usable tells whether a link can carry our probes: present, up, with
// carrier, ARP enabled, and an Ethernet MAC address.
func usable(a *netlink.LinkAttrs) error {
	switch {
	case a.Flags&net.FlagUp == 0:
		return fmt.Errorf("%w: interface is down", ErrInterface)
	case a.RawFlags&unix.IFF_LOWER_UP == 0:
		return fmt.Errorf("%w: no carrier (operstate %s)", ErrInterface, a.OperState)
	}
	switch a.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent, netlink.OperDormant, netlink.OperTesting:
		return fmt.Errorf("%w: link not operational (operstate %s)", ErrInterface, a.OperState)
	}
	switch {
	case a.RawFlags&unix.IFF_NOARP != 0:
		return fmt.Errorf("%w: NOARP is set", ErrInterface)
	case len(a.HardwareAddr) != 6 || bytes.Equal(a.HardwareAddr, zeroMAC):
		return fmt.Errorf("%w: no Ethernet MAC address", ErrInterface)
	case a.HardwareAddr[0]&1 != 0:
		return fmt.Errorf("%w: MAC address %s is a group address", ErrInterface, a.HardwareAddr)
	case a.Flags&net.FlagLoopback != 0:
		return fmt.Errorf("%w: loopback interface", ErrInterface)
	}
	return nil
}

// linkLocal returns a usable (not tentative, optimistic or failed) IPv6
// link-local address of the interface.
func (s *ifSock) linkLocal() (netip.Addr, error) {
	addrs, err := s.nl.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: s.ifindex}}, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses: %w", err)
	}
	var unusable []string
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Is6() || !ip.IsLinkLocalUnicast() {
			continue
		}
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_OPTIMISTIC|unix.IFA_F_DADFAILED) != 0 {
			unusable = append(unusable, ip.String()+" (tentative or failed DAD)")
			continue
		}
		return ip, nil
	}
	if len(unusable) > 0 {
		return netip.Addr{}, fmt.Errorf("%w: %v", ErrNoLinkLocal, unusable)
	}
	return netip.Addr{}, ErrNoLinkLocal
}

// --- multicast ---------------------------------------------------------------

// join adds a multicast group to the socket, refcounted; the first IPv6 join
// also adds all-nodes (33:33:00:00:00:01), where answers to DAD arrive, so
// that they are received even if the kernel's IPv6 is off on the interface.
func (s *ifSock) join(group net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all [6]byte
	copy(all[:], allNodesMAC)
	if s.groups[all] == 0 {
		if err := s.conn.JoinGroup(allNodesMAC); err != nil {
			return fmt.Errorf("join all-nodes group: %w", err)
		}
		s.groups[all] = 1 // kept until the socket closes
	}
	var g [6]byte
	copy(g[:], group)
	if s.groups[g] == 0 {
		if err := s.conn.JoinGroup(group); err != nil {
			return fmt.Errorf("join group %s: %w", group, err)
		}
	}
	s.groups[g]++
	return nil
}

func (s *ifSock) leave(group net.HardwareAddr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var g [6]byte
	copy(g[:], group)
	if bytes.Equal(group, allNodesMAC) {
		return
	}
	s.groups[g]--
	if s.groups[g] <= 0 {
		delete(s.groups, g)
		_ = s.conn.LeaveGroup(group)
	}
}

// --- waiters -----------------------------------------------------------------

func (s *ifSock) register(addr netip.Addr, gateway bool, nonce []byte) *waiter {
	w := &waiter{addr: addr, gateway: gateway, nonce: nonce, hit: make(chan struct{})}
	s.mu.Lock()
	s.waiters[addr] = append(s.waiters[addr], w)
	s.mu.Unlock()
	return w
}

func (s *ifSock) unregister(w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[w.addr]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, w.addr)
	} else {
		s.waiters[w.addr] = ws
	}
}

// answered tells whether w got its decisive answer.
func (w *waiter) answered() bool {
	select {
	case <-w.hit:
		return true
	default:
		return false
	}
}

// fire records the first decisive answer of w. Called with s.mu held.
func (w *waiter) fire(mac [6]byte, evidence string, at time.Time) {
	if w.fired {
		return
	}
	w.fired = true
	w.ans = answer{mac: mac, evidence: evidence, at: at}
	close(w.hit)
}

// --- sending -----------------------------------------------------------------

// sendRetry sends frm through the pacer (urgent: a later probe of an open
// window), retrying a failed send up to retries times with a short pause.
// It returns when the frame left.
func (s *ifSock) sendRetry(ctx context.Context, frm []byte, retries int, urgent bool, res *Result) (sendTimes, error) {
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			pause := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
			select {
			case <-ctx.Done():
				pause.Stop()
				return sendTimes{}, ctx.Err()
			case <-pause.C:
			}
		}
		at, err := s.pace.sendFrame(ctx, frm, urgent)
		if err != nil {
			if ctx.Err() != nil {
				return sendTimes{}, ctx.Err()
			}
			if errors.Is(err, ErrClosed) {
				return sendTimes{}, fmt.Errorf("%w: socket closed", ErrClosed)
			}
			last = err
			res.SendErrors++
			s.c.sendErrors.Add(1)
			continue
		}
		res.ProbesSent++
		s.c.probesSent.Add(1)
		return at, nil
	}
	return sendTimes{}, fmt.Errorf("%w after %d attempts: %w", ErrSend, retries+1, last)
}

// send writes one frame without ever blocking: a full socket buffer is a
// send error like any other, retried by the caller.
func (s *ifSock) send(frm []byte) error {
	var dst [8]byte
	copy(dst[:], frm[0:6])
	sa := &unix.SockaddrLinklayer{
		Protocol: htons(uint16(frm[12])<<8 | uint16(frm[13])), // the frame's EtherType
		Ifindex:  s.ifindex,
		Halen:    6,
		Addr:     dst,
	}
	var serr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), frm, unix.MSG_DONTWAIT, sa)
			if serr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("sendto", serr)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// --- receiving ---------------------------------------------------------------

func (s *ifSock) readLoop() {
	defer func() {
		s.broken.Store(true) // never reuse a socket nobody reads
		close(s.done)
	}()
	buf := make([]byte, snapLen)
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	read := func(fd uintptr) bool {
		for {
			s.idle.Store(false)
			before := time.Now()
			n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			switch rerr {
			case unix.EINTR:
				continue // interrupted before anything was read: read again
			case unix.EAGAIN:
				// Everything that arrived before this read is handled.
				s.wentIdle(before)
				return false // wait for readiness
			}
			return true
		}
	}
	for {
		if err := s.raw.Read(read); err != nil {
			return // socket closed
		}
		now := time.Now()
		if rerr != nil {
			// ENETDOWN and friends are reported once when the interface goes
			// down; the socket resumes when it comes back. Checks learn the
			// link state from netlink, not from here.
			if errors.Is(rerr, unix.EBADF) {
				return
			}
			continue
		}
		if s.onFrame != nil {
			s.onFrame()
		}
		sll, _ := from.(*unix.SockaddrLinklayer)
		s.handle(buf[:n], sll, now)
	}
}

// handle looks at one received frame and wakes the checks it answers.
func (s *ifSock) handle(b []byte, from *unix.SockaddrLinklayer, now time.Time) {
	s.c.framesReceived.Add(1)
	if from != nil && from.Pkttype == unix.PACKET_OUTGOING {
		s.c.framesOwn.Add(1)
		return
	}
	f, err := parseFrame(b)
	if err != nil {
		if err != errNotProbe {
			s.c.framesInvalid.Add(1)
		}
		return
	}
	own := *s.mac.Load()
	if f.ethSrc == own {
		s.c.framesOwn.Add(1) // our own frame looped back (hairpin, reflection)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dispatch(&f, own, now) {
		s.c.framesOwn.Add(1)
	}
}

// dispatch applies the verdict rules to a parsed frame and fires the
// matching waiters. It reports whether the frame turned out to be ours.
// Called with s.mu held.
func (s *ifSock) dispatch(f *frame, own [6]byte, now time.Time) (ours bool) {
	if len(s.waiters) == 0 {
		return false
	}
	switch f.kind {
	case kindARPRequest, kindARPReply:
		if f.senderMAC == own {
			return true
		}
		if !f.senderIP.IsUnspecified() {
			for _, w := range s.waiters[f.senderIP] {
				switch {
				case !w.gateway:
					w.fire(f.senderMAC, f.kind.String(), now)
				case f.kind == kindARPReply:
					w.fire(f.senderMAC, f.kind.String(), now)
				}
			}
		} else if f.kind == kindARPRequest {
			// Another host's RFC 5227 probe for the same address.
			for _, w := range s.waiters[f.targetIP] {
				if !w.gateway {
					w.fire(f.senderMAC, EvidenceARPProbe, now)
				}
			}
		}
	case kindNS:
		if f.hasSrcLL && f.srcLL == own {
			return true
		}
		if f.ipSrc.IsUnspecified() {
			// A DAD probe. Ours if it carries one of our nonces (RFC 7527).
			for _, w := range s.waiters[f.target] {
				if w.nonce != nil && bytes.Equal(w.nonce, f.nonce) {
					return true
				}
			}
			for _, w := range s.waiters[f.target] {
				if !w.gateway {
					w.fire(f.ethSrc, EvidenceDADProbe, now)
				}
			}
			return false
		}
		mac := f.ethSrc
		if f.hasSrcLL {
			mac = f.srcLL
		}
		for _, w := range s.waiters[f.ipSrc] {
			if !w.gateway {
				w.fire(mac, EvidenceNDSource, now)
			}
		}
	case kindNA:
		mac := f.ethSrc
		if f.hasTgtLL {
			if f.tgtLL == own {
				return true
			}
			mac = f.tgtLL
		}
		for _, w := range s.waiters[f.target] {
			switch {
			case !w.gateway:
				w.fire(mac, f.kind.String(), now)
			case f.solicited:
				w.fire(mac, f.kind.String(), now)
			}
		}
		if f.ipSrc != f.target && !f.ipSrc.IsUnspecified() {
			for _, w := range s.waiters[f.ipSrc] {
				if !w.gateway {
					w.fire(f.ethSrc, EvidenceNDSource, now)
				}
			}
		}
	}
	return false
}

// newNonce returns a 6-byte DAD nonce, the size Linux recognises.
func newNonce() ([]byte, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return b, nil
}
