//go:build linux

// Receiving: the reader, waiters by address, and the verdict rules that
// decide which frame answers which check.

package probe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

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

func (s *ifSock) readLoop() {
	defer func() {
		s.broken.Store(true) // never reuse a socket nobody reads
		close(s.done)
	}()
	buf := make([]byte, arpnd.SnapLen)
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
	f, err := arpnd.Parse(b)
	if err != nil {
		if err != arpnd.ErrNotProbe {
			s.c.framesInvalid.Add(1)
		}
		return
	}
	own := *s.mac.Load()
	if f.EthSrc == own {
		s.c.framesOwn.Add(1) // our own frame looped back (hairpin, reflection)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dispatch(&f, own, now) {
		s.c.framesOwn.Add(1)
	}
}

// dispatch fires the waiters a parsed frame answers and reports whether
// the frame turned out to be ours. Which address a frame claims, and for
// which station, is arpnd.ClaimsInto's rule (shared with the agent's watch
// of allocated addresses); what is left here is whose claim counts for
// which check (answers). Called with s.mu held.
func (s *ifSock) dispatch(f *arpnd.Frame, own [6]byte, now time.Time) (ours bool) {
	if len(s.waiters) == 0 {
		return false
	}
	if fromUs(f, own) {
		return true
	}
	if f.Kind == arpnd.KindNS && f.IPSrc.IsUnspecified() {
		// A DAD probe: ours if it carries one of our nonces (RFC 7527).
		for _, w := range s.waiters[f.Target] {
			if w.nonce != nil && bytes.Equal(w.nonce, f.Nonce) {
				return true
			}
		}
	}
	var buf [arpnd.MaxClaims]arpnd.Claim
	for _, c := range buf[:arpnd.ClaimsInto(f, &buf)] {
		for _, w := range s.waiters[c.Addr] {
			if answers(w, c, f) {
				w.fire(c.MAC, c.Evidence, now)
			}
		}
	}
	return false
}

// fromUs tells whether f names our MAC as the station that sent it: the
// ARP sender, or the NS's source or the NA's target link-layer option (the
// Ethernet source was looked at before).
func fromUs(f *arpnd.Frame, own [6]byte) bool {
	switch f.Kind {
	case arpnd.KindARPRequest, arpnd.KindARPReply:
		return f.SenderMAC == own
	case arpnd.KindNS:
		return f.HasSrcLL && f.SrcLL == own
	case arpnd.KindNA:
		return f.HasTgtLL && f.TgtLL == own
	}
	return false
}

// answers tells whether claim c, made by frame f, decides w. Any claim on
// a candidate is a conflict. A gateway is reachable only on an answer: an
// ARP reply, or an NA for it that is solicited (the answer to a probe from
// our link-local address) or sent to all-nodes ff02::1 - the answer to a
// probe from :: (RFC 4861 7.2.4): the owner multicasts it with the
// solicited flag clear, so it looks like any unsolicited advertisement.
// Whatever prompted it, an NA for the gateway's address arriving while we
// wait means a node holds that address on this link now - the question
// asked. The waiter exists only from just before the first probe to the
// verdict, so an old advertisement cannot answer it.
func answers(w *waiter, c arpnd.Claim, f *arpnd.Frame) bool {
	if !w.gateway {
		return true
	}
	switch c.Evidence {
	case arpnd.EvidenceARPReply:
		return true
	case arpnd.EvidenceNA:
		return f.Solicited || f.IPDst == arpnd.AllNodes
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
