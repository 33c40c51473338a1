//go:build linux

// The Engine and the check: validation, socket, frame, rounds, verdict.

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

// Engine runs checks. It is safe for concurrent use; create one per process
// and share it.
type Engine struct {
	opts Options
	c    counters

	mu     sync.Mutex
	socks  map[sockKey]*entry
	closed bool
}

// NewEngine returns an Engine. Close it to release its sockets.
func NewEngine(o Options) *Engine {
	o = o.withDefaults()
	return &Engine{opts: o, socks: make(map[sockKey]*entry)}
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
// Silence for the whole window is Free once it is proven: every probe left
// in time, the reader handled every frame that arrived before the end, and
// the kernel dropped none on the socket (else the window is probed again,
// and then the check fails with ErrUnproven). An unusable interface, a
// send that fails after all retries, a namespace path that is no network
// namespace, or a cancelled ctx is an error, never Free.
func (e *Engine) CheckConflict(ctx context.Context, t Target, p Params) (Result, error) {
	return e.check(ctx, t, p, false)
}

// CheckGateway tells whether the gateway t.Addr answers on t.Interface.
//
// IPv4: a broadcast ARP request for the gateway from 0.0.0.0, which leaves
// no entry in the gateway's ARP cache (a workload's address as sender would
// be written there before its conflict check: Spiderpool issue 4475). IPv6:
// a Neighbor Solicitation to the gateway's solicited-node group, from the
// interface's link-local address with the source link-layer option when it
// has a usable one, else from :: without options (see gatewayNS).
// Reachable on an ARP reply from the gateway's IP, or a Neighbor
// Advertisement for it that is solicited or sent to all-nodes; Unreachable
// on silence, proven as for CheckConflict (else ErrUnproven).
func (e *Engine) CheckGateway(ctx context.Context, t Target, p Params) (Result, error) {
	return e.check(ctx, t, p, true)
}

func (e *Engine) check(ctx context.Context, t Target, p Params, gateway bool) (res Result, err error) {
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
	if err := validate(t, gateway); err != nil {
		return res, err
	}
	p = p.withDefaults()
	fail := func(err error) error { return fmt.Errorf("cannot probe %s: %w", t, err) }

	en, err := e.acquireLink(ctx, t)
	if err != nil {
		return res, fail(err)
	}
	defer e.release(en)
	s := en.sock
	mac := s.hwAddr()

	var (
		frm   []byte
		nonce []byte
	)
	v6 := t.Addr.Is6()
	switch {
	case !v6:
		res.Source = arpnd.IPv4Zero
		frm, err = arpnd.BuildARPRequest(mac, arpnd.IPv4Zero, t.Addr)
	case v6 && !gateway:
		res.Source = arpnd.IPv6Zero
		nonce, err = newNonce()
		if err == nil {
			frm, err = arpnd.BuildNS(mac, arpnd.IPv6Zero, t.Addr, nonce, false)
		}
	default:
		res.Source, frm, err = gatewayNS(s, mac, t.Addr)
	}
	if err != nil {
		return res, fail(err)
	}

	switch {
	case v6 && !gateway:
		// Others' DAD probes for the candidate go to its solicited-node
		// group; make sure the NIC lets them in. NAs answering DAD go to
		// all-nodes, joined with it.
		_, group := arpnd.SolicitedNode(t.Addr)
		if err := s.join(group); err != nil {
			return res, fail(err)
		}
		defer s.leave(group)
	case v6 && res.Source.IsUnspecified():
		// The gateway answers a probe from :: to all-nodes.
		if err := s.join(arpnd.AllNodesMAC); err != nil {
			return res, fail(err)
		}
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

func validate(t Target, gateway bool) error {
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
	return nil
}

// acquireLink returns the socket entry for t with its link checked usable.
// A socket whose interface vanished or was renamed is dropped and opened
// afresh once, since the name may now belong to a new interface: a
// workload's interface deleted and created again in the same namespace
// (CNI DEL then ADD) must not cost a failed check.
func (e *Engine) acquireLink(ctx context.Context, t Target) (*entry, error) {
	for attempt := 0; ; attempt++ {
		en, err := e.acquire(ctx, t)
		if err != nil {
			return nil, err
		}
		err = en.sock.checkLink(ctx)
		if err == nil {
			return en, nil
		}
		if errors.Is(err, ErrInterface) {
			e.forget(en)
		}
		broken := en.sock.isBroken()
		e.release(en)
		if !broken || attempt > 0 {
			return nil, err
		}
	}
}

// gatewayNS builds the IPv6 gateway probe and returns its source address.
//
// With a usable link-local address it is address resolution: an NS from
// it with the source link-layer option (Linux ignores a multicast NS from
// a unicast source without one), answered by a solicited NA to us.
//
// A fresh interface has no usable link-local: the kernel keeps it
// tentative through DAD, a second or more after the interface came up,
// and none exists with IPv6 addresses off on it. Waiting for it made every
// IPv6 gateway check on a new workload cost that second. The probe then
// goes from :: with no options, which is a DAD probe for the gateway's
// address: its owner defends it with an NA to all-nodes, solicited flag
// clear (RFC 4861 7.2.4, RFC 4862 5.4.3; Linux: ndisc_recv_ns answers
// every NS from :: for an address it holds so, router or not, and keeps
// no neighbour entry for the prober). The price: an owner whose address is
// itself still tentative takes the probe for another node's DAD and gives
// the address up (Linux: addrconf_dad_failure) - a gateway configured less
// than its DAD time (1 s by default) before the check. The link-local
// form, where usable, has no such effect.
func gatewayNS(s *ifSock, mac net.HardwareAddr, gw netip.Addr) (netip.Addr, []byte, error) {
	src, err := s.linkLocal()
	switch {
	case err == nil:
		frm, err := arpnd.BuildNS(mac, src, gw, nil, true)
		return src, frm, err
	case errors.Is(err, ErrNoLinkLocal):
		frm, err := arpnd.BuildNS(mac, arpnd.IPv6Zero, gw, nil, false)
		return arpnd.IPv6Zero, frm, err
	}
	return netip.Addr{}, nil, err
}
