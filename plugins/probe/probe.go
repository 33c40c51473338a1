//go:build linux

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults, from spiderpool-agent's documented behaviour.
const (
	DefaultWindow      = 100 * time.Millisecond // reply window of one check
	DefaultRetries     = 3                      // retries of a failed send
	DefaultProbes      = 3                      // probes spread over the window
	DefaultIdleTimeout = 30 * time.Second       // idle socket lifetime

	// DefaultProbeRate is the probes per second one socket (one plugin on
	// one interface) sends at most, in bursts of up to a fiftieth of it:
	// 4000/s lets a burst of 1024 conflict checks (3072 probes) start
	// within 0.8 s and 3840 (11520 probes, issue 10's load) within 2.9 s,
	// inside the agent's 5 s call timeout, while no burst on the wire
	// exceeds 80 frames - far below the 1000-frame receive backlog of a
	// Linux host. Frames to the same gateway are shared, so gateway
	// checks cost far less than this.
	DefaultProbeRate = 4000
	// DefaultReceiveBuffer is the receive buffer of a socket
	// (SO_RCVBUFFORCE): room for about 8000 queued ARP/ND frames.
	DefaultReceiveBuffer = 8 << 20

	// maxRounds bounds how often a check probes a whole window again when
	// its silence could not be proven (frames dropped on the socket, the
	// queue not drained in time) before it answers ErrUnproven.
	maxRounds = 3
	// drainGrace bounds the wait, after a window ends, for the reader to
	// have handled every frame that arrived before the end.
	drainGrace = time.Second
)

// Errors a check can return, wrapped with context ("cannot probe eth0 ...").
// Test them with errors.Is.
var (
	// ErrInterface: the interface is missing, down, without carrier, NOARP,
	// without an Ethernet MAC address, or otherwise unusable for probing.
	ErrInterface = errors.New("interface unusable")
	// ErrNoLinkLocal: an IPv6 gateway check needs a usable link-local
	// address on the interface and there is none.
	ErrNoLinkLocal = errors.New("no usable IPv6 link-local address")
	// ErrSend: every attempt to send the first probe failed.
	ErrSend = errors.New("sending probe failed")
	// ErrInvalid: the request itself is wrong (bad address, bad sender).
	ErrInvalid = errors.New("invalid probe request")
	// ErrClosed: the Engine is closed.
	ErrClosed = errors.New("probe engine closed")
	// ErrNetns: the network namespace path cannot be opened or entered, or
	// is no network namespace (then ErrInvalid is wrapped too).
	ErrNetns = errors.New("network namespace unusable")
	// ErrUnproven: the window was silent but the engine cannot prove that
	// no answer was lost on this host (frames dropped on the socket, or
	// frames still unread when the window ended), in every round it tried.
	// It happens under overload; it is never a verdict.
	ErrUnproven = errors.New("silence not proven")
)

// Verdict is the outcome of a check that ran to completion.
type Verdict uint8

const (
	// Free: no host answered for the address within the window.
	Free Verdict = iota + 1
	// Conflict: another host uses or is probing for the address.
	Conflict
	// Reachable: the gateway answered within the window.
	Reachable
	// Unreachable: the gateway did not answer within the window.
	Unreachable
)

func (v Verdict) String() string {
	switch v {
	case Free:
		return "free"
	case Conflict:
		return "conflict"
	case Reachable:
		return "reachable"
	case Unreachable:
		return "unreachable"
	}
	return "unknown"
}

// Evidence values of Result.Evidence: the kind of frame that decided a
// Conflict or Reachable verdict.
const (
	EvidenceARPReply   = "arp-reply"              // ARP reply from the address
	EvidenceARPRequest = "arp-request"            // ARP request with the address as sender IP
	EvidenceARPProbe   = "arp-probe"              // another host's RFC 5227 probe for the address
	EvidenceNA         = "neighbor-advertisement" // NA for the address
	EvidenceDADProbe   = "dad-probe"              // another node's DAD solicitation for the address
	EvidenceNDSource   = "nd-source"              // an ND message sent from the address
)

// Target names what to probe and where.
type Target struct {
	// Netns is the path of a network namespace file, such as
	// /var/run/netns/NAME or /proc/PID/ns/net. Empty means the network
	// namespace of the calling thread (normally the process's own).
	Netns string
	// Interface is the name of the Ethernet interface inside Netns.
	Interface string
	// Addr is the candidate address (CheckConflict) or the gateway
	// (CheckGateway), IPv4 or IPv6.
	Addr netip.Addr
}

func (t Target) String() string {
	if t.Netns == "" {
		return t.Interface
	}
	return t.Interface + " (netns " + t.Netns + ")"
}

// Params tunes one check. The zero value means the defaults.
type Params struct {
	// Window is how long to wait for an answer after the first probe went
	// out: an absolute deadline computed once. Zero means DefaultWindow.
	Window time.Duration
	// Retries is how often a failed send is retried before the check fails
	// (first probe) or the probe is skipped (later probes). Zero means
	// DefaultRetries; a negative value means no retries.
	Retries int
	// Probes is how many probes are sent, spread evenly over the window;
	// the check stops at the first decisive answer. Zero means
	// DefaultProbes.
	Probes int
}

func (p Params) withDefaults() Params {
	if p.Window <= 0 {
		p.Window = DefaultWindow
	}
	switch {
	case p.Retries == 0:
		p.Retries = DefaultRetries
	case p.Retries < 0:
		p.Retries = 0
	}
	if p.Probes <= 0 {
		p.Probes = DefaultProbes
	}
	return p
}

// Sender optionally sets the source address of a gateway check.
//
// By default an IPv4 gateway check is an ARP probe from 0.0.0.0, which
// leaves no entry in the gateway's ARP cache, and an IPv6 gateway check is
// sent from the interface's link-local address. Using a workload's address as
// sender writes that address into the gateway's neighbour cache: do it only
// after the conflict check for that address passed, and say so with
// ConflictChecked (Spiderpool issue 4475).
type Sender struct {
	// Addr is the sender IP (IPv4) or the NS source (IPv6). Zero: default.
	Addr netip.Addr
	// ConflictChecked must be true when Addr is set.
	ConflictChecked bool
}

// Result describes a completed check.
type Result struct {
	Verdict   Verdict
	Addr      netip.Addr // the address checked
	Interface string     // the interface used
	// Responder is the MAC address of the host that answered: the owner of
	// the conflicting address or the gateway. Nil when nobody answered.
	Responder net.HardwareAddr
	// Evidence names the frame that decided the verdict, one of the
	// Evidence* constants. Empty when nobody answered.
	Evidence string
	// RTT is the time from the first probe to the decisive answer. With
	// several probes it is an upper bound on the real round trip.
	RTT time.Duration
	// ProbesSent counts probes handed to the kernel; SendErrors counts
	// failed send attempts (including retried ones).
	ProbesSent int
	SendErrors int
	// Rounds counts the windows probed: more than 1 when the silence of an
	// earlier one could not be proven.
	Rounds int
	// Elapsed is the whole time the check took, socket setup included.
	Elapsed time.Duration
}

// Options configures an Engine. The zero value is valid.
type Options struct {
	// IdleTimeout is how long a socket stays open with no check using it.
	// Zero means DefaultIdleTimeout; a negative value closes a socket as
	// soon as its last check ends.
	IdleTimeout time.Duration
	// ProbeRate is the most probes per second a socket sends, in bursts
	// of up to ProbeRate/50 (at least 1). Zero means DefaultProbeRate; a
	// negative value turns pacing off.
	ProbeRate float64
	// ReceiveBuffer is the socket's receive buffer in bytes. Zero means
	// DefaultReceiveBuffer. The kernel rounds small values up to its
	// minimum (a few frames).
	ReceiveBuffer int
	// OnFrame, when set, is called by a socket's reader before it handles
	// each frame. It is a seam for tests (stall the reader to leave
	// answers queued at a window's end) and must return.
	OnFrame func()
}

func (o Options) withDefaults() Options {
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ProbeRate == 0 {
		o.ProbeRate = DefaultProbeRate
	}
	if o.ReceiveBuffer <= 0 {
		o.ReceiveBuffer = DefaultReceiveBuffer
	}
	return o
}

// burst is the pacer's bucket size for o.ProbeRate.
func (o Options) burst() int {
	b := int(o.ProbeRate / 50)
	if b < 1 {
		b = 1
	}
	return b
}

// Stats are cumulative counters of an Engine, for plugins to export.
type Stats struct {
	Checks      uint64 // checks started
	Errors      uint64 // checks that ended with an error
	Free        uint64 // checks by verdict
	Conflicts   uint64
	Reachable   uint64
	Unreachable uint64

	ProbesSent uint64 // probe frames sent
	SendErrors uint64 // failed send attempts

	// Unproven counts checks that ended with ErrUnproven (also counted in
	// Errors); ExtraRounds counts windows probed again because the
	// silence of one could not be proven.
	Unproven    uint64
	ExtraRounds uint64

	FramesReceived uint64 // frames that passed the socket filter
	FramesOwn      uint64 // of those: our own frames looped back, ignored
	FramesInvalid  uint64 // of those: malformed, bad checksum or hop limit
	KernelDrops    uint64 // frames the kernel dropped on our sockets

	SocketsOpened uint64 // sockets opened so far
	SocketsOpen   int    // sockets open now
}

type counters struct {
	checks, errors, free, conflicts, reachable, unreachable atomic.Uint64
	probesSent, sendErrors                                  atomic.Uint64
	unproven, extraRounds                                   atomic.Uint64
	framesReceived, framesOwn, framesInvalid, kernelDrops   atomic.Uint64
	socketsOpened                                           atomic.Uint64
}

// Engine runs checks. It is safe for concurrent use; create one per process
// and share it.
type Engine struct {
	opts Options
	idle time.Duration
	c    counters

	mu     sync.Mutex
	socks  map[sockKey]*entry
	closed bool
}

// entry is a reference-counted socket in the Engine's table.
type entry struct {
	key     sockKey
	ready   chan struct{} // closed once opening finished (sock or err set)
	sock    *ifSock
	err     error
	refs    int
	idleGen uint64
	idle    *time.Timer
	gone    bool // removed from the table; close when refs drops to 0
}

// NewEngine returns an Engine. Close it to release its sockets.
func NewEngine(o Options) *Engine {
	o = o.withDefaults()
	return &Engine{opts: o, idle: o.IdleTimeout, socks: make(map[sockKey]*entry)}
}

// Close closes every socket. Checks still running end with an error.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var all []*entry
	for k, en := range e.socks {
		delete(e.socks, k)
		en.gone = true
		if en.idle != nil {
			en.idle.Stop()
		}
		all = append(all, en)
	}
	e.mu.Unlock()
	var errs []error
	for _, en := range all {
		<-en.ready
		if en.sock != nil {
			errs = append(errs, en.sock.close())
		}
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the Engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	open := 0
	var socks []*ifSock
	for _, en := range e.socks {
		select {
		case <-en.ready:
			if en.sock != nil {
				open++
				socks = append(socks, en.sock)
			}
		default:
		}
	}
	e.mu.Unlock()
	for _, s := range socks {
		s.collectDrops()
	}
	c := &e.c
	return Stats{
		Checks:         c.checks.Load(),
		Errors:         c.errors.Load(),
		Free:           c.free.Load(),
		Conflicts:      c.conflicts.Load(),
		Reachable:      c.reachable.Load(),
		Unreachable:    c.unreachable.Load(),
		ProbesSent:     c.probesSent.Load(),
		SendErrors:     c.sendErrors.Load(),
		Unproven:       c.unproven.Load(),
		ExtraRounds:    c.extraRounds.Load(),
		FramesReceived: c.framesReceived.Load(),
		FramesOwn:      c.framesOwn.Load(),
		FramesInvalid:  c.framesInvalid.Load(),
		KernelDrops:    c.kernelDrops.Load(),
		SocketsOpened:  c.socketsOpened.Load(),
		SocketsOpen:    open,
	}
}

// CheckConflict tells whether another host on t.Interface's link uses or
// probes for t.Addr.
//
// IPv4: RFC 5227 ARP probes (sender 0.0.0.0, target MAC zero). Conflict on
// any ARP request or reply whose sender IP is t.Addr from a MAC that is not
// ours, or another host's probe for t.Addr.
//
// IPv6: RFC 4862 DAD Neighbor Solicitations from :: to the solicited-node
// group, with an RFC 7527 nonce and no source link-layer option. Conflict on
// a Neighbor Advertisement for t.Addr from another MAC, another node's DAD
// solicitation for it, or any ND message sent from t.Addr by another MAC.
//
// Silence for the whole window is Free. An unusable interface, a send that
// fails after all retries, or a cancelled ctx is an error, never Free.
func (e *Engine) CheckConflict(ctx context.Context, t Target, p Params) (Result, error) {
	return e.check(ctx, t, p, false, Sender{})
}

// CheckGateway tells whether the gateway t.Addr answers on t.Interface.
//
// IPv4: a broadcast ARP request for the gateway, from 0.0.0.0 unless s sets
// a sender. IPv6: a Neighbor Solicitation from the interface's link-local
// address (or s.Addr) with the source link-layer option, to the gateway's
// solicited-node group. Reachable on an ARP reply from the gateway's IP, or
// a solicited Neighbor Advertisement for it; Unreachable on silence.
func (e *Engine) CheckGateway(ctx context.Context, t Target, p Params, s Sender) (Result, error) {
	return e.check(ctx, t, p, true, s)
}

func (e *Engine) check(ctx context.Context, t Target, p Params, gateway bool, snd Sender) (res Result, err error) {
	start := time.Now()
	e.c.checks.Add(1)
	t.Addr = t.Addr.Unmap().WithZone("")
	res = Result{Addr: t.Addr, Interface: t.Interface}
	defer func() {
		res.Elapsed = time.Since(start)
		if err != nil {
			e.c.errors.Add(1)
			res.Verdict = 0
			return
		}
		switch res.Verdict {
		case Free:
			e.c.free.Add(1)
		case Conflict:
			e.c.conflicts.Add(1)
		case Reachable:
			e.c.reachable.Add(1)
		case Unreachable:
			e.c.unreachable.Add(1)
		}
	}()
	if err := validate(t, gateway, snd); err != nil {
		return res, err
	}
	p = p.withDefaults()
	fail := func(err error) error { return fmt.Errorf("cannot probe %s: %w", t, err) }

	en, err := e.acquire(ctx, t)
	if err != nil {
		return res, fail(err)
	}
	defer e.release(en)
	s := en.sock

	if err := s.checkLink(ctx); err != nil {
		if errors.Is(err, ErrInterface) {
			e.forget(en)
		}
		return res, fail(err)
	}
	mac := s.hwAddr()

	var (
		frm   []byte
		nonce []byte
	)
	v6 := t.Addr.Is6()
	switch {
	case !v6 && !gateway:
		frm, err = buildARPRequest(mac, ipv4Zero, t.Addr)
	case !v6 && gateway:
		sender := ipv4Zero
		if snd.Addr.IsValid() {
			sender = snd.Addr.Unmap().WithZone("")
		}
		frm, err = buildARPRequest(mac, sender, t.Addr)
	case v6 && !gateway:
		nonce, err = newNonce()
		if err == nil {
			frm, err = buildNS(mac, ipv6Zero, t.Addr, nonce, false)
		}
	default:
		src := snd.Addr.Unmap().WithZone("")
		if !src.IsValid() {
			src, err = s.linkLocal()
		}
		if err == nil {
			frm, err = buildNS(mac, src, t.Addr, nil, true)
		}
	}
	if err != nil {
		return res, fail(err)
	}

	if v6 && !gateway {
		// Others' DAD probes for the candidate go to its solicited-node
		// group; make sure the NIC lets them in. NAs answering DAD go to
		// all-nodes, joined when the socket opened.
		_, group := solicitedNode(t.Addr)
		if err := s.join(group); err != nil {
			return res, fail(err)
		}
		defer s.leave(group)
	}

	w := s.register(t.Addr, gateway, nonce)
	defer s.unregister(w)

	var why []string
	for round := 1; ; round++ {
		res.Rounds = round
		if round > 1 {
			e.c.extraRounds.Add(1)
		}
		firstAt, silent, err := s.probeWindow(ctx, w, frm, p, &res)
		switch {
		case errors.Is(err, ErrClosed):
			e.forget(en)
			return res, fail(err)
		case err != nil:
			return res, fail(err)
		case !silent.proven():
			// Answered after all: the reply was among the frames the
			// drain handled.
			if w.answered() {
				return e.answered(res, w, firstAt, gateway), nil
			}
			why = append(why, fmt.Sprintf("round %d: %s", round, silent))
			if round < maxRounds && roomFor(ctx, p.Window) {
				continue
			}
			e.c.unproven.Add(1)
			return res, fail(fmt.Errorf("%w after %d rounds (%s)", ErrUnproven, round, strings.Join(why, "; ")))
		case silent.hit:
			return e.answered(res, w, firstAt, gateway), nil
		}
		// Silence means Free/Unreachable only if the interface was usable
		// throughout: check it again.
		if err := s.checkLink(ctx); err != nil {
			if errors.Is(err, ErrInterface) {
				e.forget(en)
			}
			return res, fail(err)
		}
		if w.answered() {
			return e.answered(res, w, firstAt, gateway), nil
		}
		if gateway {
			res.Verdict = Unreachable
		} else {
			res.Verdict = Free
		}
		return res, nil
	}
}

// roomFor tells whether ctx leaves time for another window of w.
func roomFor(ctx context.Context, w time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > 2*w
}

// windowOutcome is how one probing window ended without an error.
type windowOutcome struct {
	hit        bool   // an answer arrived
	notDrained bool   // the reader had not handled everything by the end
	dropped    uint64 // frames the kernel dropped on the socket meanwhile
}

func (o windowOutcome) proven() bool { return o.hit || (!o.notDrained && o.dropped == 0) }

func (o windowOutcome) String() string {
	switch {
	case o.notDrained:
		return fmt.Sprintf("frames received before the window ended were still unread %s later", drainGrace)
	case o.dropped > 0:
		return fmt.Sprintf("the kernel dropped %d frames on the socket during the window", o.dropped)
	}
	return "proven"
}

// probeWindow runs one window: it sends p.Probes probes through the pacer,
// the first starting the window, and returns at the first answer, or once
// silence is proven or disproven. The window ends p.Window after the first
// probe left, and never sooner than each later probe had its share of it:
// probe k (from 0), due k*W/P after the first, gets W - k*W/P after it
// actually left, so a probe sent late (CPU pressure, pacing) moves the end.
// At the end the reader must have handled every frame that arrived before
// it, and the kernel must have dropped none on the socket since before the
// first probe.
func (s *ifSock) probeWindow(ctx context.Context, w *waiter, frm []byte, p Params, res *Result) (firstAt time.Time, out windowOutcome, err error) {
	drops0, err := s.drops()
	if err != nil {
		return firstAt, out, err
	}
	first, err := s.sendRetry(ctx, frm, p.Retries, false, res)
	if err != nil {
		return firstAt, out, err
	}
	// RTTs count from the start of the send; the window from its end.
	firstAt = first.before
	deadline := first.after.Add(p.Window)
	interval := p.Window / time.Duration(p.Probes)
	timer := time.NewTimer(0)
	defer timer.Stop()
	wait := func(until time.Time) (bool, error) {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(until))
		select {
		case <-w.hit:
			return true, nil
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case <-s.done:
			return false, fmt.Errorf("%w: socket closed", ErrClosed)
		}
	}
	for k := 1; k < p.Probes; k++ {
		hit, err := wait(first.after.Add(time.Duration(k) * interval))
		if hit || err != nil {
			return firstAt, windowOutcome{hit: hit}, err
		}
		at, err := s.sendRetry(ctx, frm, p.Retries, true, res)
		if err != nil {
			if w.answered() {
				return firstAt, windowOutcome{hit: true}, nil
			}
			return firstAt, out, err
		}
		if end := at.after.Add(p.Window - time.Duration(k)*interval); end.After(deadline) {
			deadline = end
		}
	}
	hit, err := wait(deadline)
	if hit || err != nil {
		return firstAt, windowOutcome{hit: hit}, err
	}
	// Everything that arrived before the deadline must have been handled.
	if err := s.drained(ctx, deadline, deadline.Add(drainGrace)); err != nil {
		if errors.Is(err, errNotDrained) {
			return firstAt, windowOutcome{hit: w.answered(), notDrained: true}, nil
		}
		return firstAt, out, err
	}
	if w.answered() {
		return firstAt, windowOutcome{hit: true}, nil
	}
	drops1, err := s.drops()
	if err != nil {
		return firstAt, out, err
	}
	return firstAt, windowOutcome{dropped: drops1 - drops0}, nil
}

func (e *Engine) answered(res Result, w *waiter, firstAt time.Time, gateway bool) Result {
	if gateway {
		res.Verdict = Reachable
	} else {
		res.Verdict = Conflict
	}
	res.Responder = append(net.HardwareAddr(nil), w.ans.mac[:]...)
	res.Evidence = w.ans.evidence
	res.RTT = w.ans.at.Sub(firstAt)
	if res.RTT < 0 {
		res.RTT = 0
	}
	return res
}

func validate(t Target, gateway bool, snd Sender) error {
	what := "candidate"
	if gateway {
		what = "gateway"
	}
	a := t.Addr
	switch {
	case t.Interface == "":
		return fmt.Errorf("%w: no interface", ErrInvalid)
	case !a.IsValid():
		return fmt.Errorf("%w: no %s address", ErrInvalid, what)
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(),
		a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s %s cannot be probed", ErrInvalid, what, a)
	}
	if snd.Addr.IsValid() {
		s := snd.Addr.Unmap()
		switch {
		case !gateway:
			return fmt.Errorf("%w: a conflict check has no sender", ErrInvalid)
		case !snd.ConflictChecked:
			return fmt.Errorf("%w: sender %s set before its conflict check passed (it would enter the gateway's neighbour cache)", ErrInvalid, s)
		case s.Is4() != a.Is4():
			return fmt.Errorf("%w: sender %s and gateway %s differ in family", ErrInvalid, s, a)
		case s.IsUnspecified() || s.IsMulticast() || s.IsLoopback():
			return fmt.Errorf("%w: sender %s is not a unicast address", ErrInvalid, s)
		}
	}
	return nil
}

// acquire returns the entry for t's (namespace, interface), opening its
// socket if needed, with one more reference.
func (e *Engine) acquire(ctx context.Context, t Target) (*entry, error) {
	ns, err := openNetns(t.Netns, t.Interface)
	if err != nil {
		return nil, err
	}
	defer ns.close()
	key := ns.key
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	en := e.socks[key]
	if en != nil && en.sock != nil && en.sock.isBroken() {
		// Its interface vanished or its reader stopped: start afresh. An
		// idle one is closed here; a used one by its last user.
		delete(e.socks, key)
		en.gone = true
		if en.refs == 0 {
			if en.idle != nil {
				en.idle.Stop()
			}
			defer en.sock.close()
		}
		en = nil
	}
	if en != nil {
		en.refs++
		en.idleGen++
		if en.idle != nil {
			en.idle.Stop()
			en.idle = nil
		}
		e.mu.Unlock()
		select {
		case <-en.ready:
		case <-ctx.Done():
			e.release(en)
			return nil, ctx.Err()
		}
		if en.err != nil {
			e.release(en)
			return nil, en.err
		}
		return en, nil
	}
	en = &entry{key: key, ready: make(chan struct{}), refs: 1}
	e.socks[key] = en
	e.mu.Unlock()

	// Open outside the lock; later callers for the same key wait on ready.
	s, err := openSock(ns, t.Interface, &e.c, e.opts)
	e.mu.Lock()
	en.sock, en.err = s, err
	if err != nil && e.socks[key] == en {
		delete(e.socks, key)
		en.gone = true
	}
	closed := e.closed
	close(en.ready)
	e.mu.Unlock()
	if err != nil {
		e.release(en)
		return nil, err
	}
	if closed {
		e.release(en)
		return nil, ErrClosed
	}
	e.c.socketsOpened.Add(1)
	return en, nil
}

// release drops a reference; the last one arms the idle timer.
func (e *Engine) release(en *entry) {
	e.mu.Lock()
	en.refs--
	if en.refs > 0 {
		e.mu.Unlock()
		return
	}
	if en.gone || e.closed || e.idle < 0 {
		if e.socks[en.key] == en {
			delete(e.socks, en.key)
		}
		en.gone = true
		e.mu.Unlock()
		if en.sock != nil {
			_ = en.sock.close()
		}
		return
	}
	en.idleGen++
	gen := en.idleGen
	en.idle = time.AfterFunc(e.idle, func() {
		e.mu.Lock()
		if en.refs != 0 || en.idleGen != gen || en.gone {
			e.mu.Unlock()
			return
		}
		if e.socks[en.key] == en {
			delete(e.socks, en.key)
		}
		en.gone = true
		e.mu.Unlock()
		if en.sock != nil {
			_ = en.sock.close()
		}
	})
	e.mu.Unlock()
}

// forget removes an entry whose interface vanished or was replaced, so that
// the next check opens a fresh socket; the old one closes with its last user.
func (e *Engine) forget(en *entry) {
	if !en.sock.isBroken() {
		return
	}
	e.mu.Lock()
	if e.socks[en.key] == en {
		delete(e.socks, en.key)
	}
	en.gone = true
	e.mu.Unlock()
}
