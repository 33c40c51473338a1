//go:build linux

// Types of the API (targets, parameters, results, options, stats, errors)
// and the defaults.

package probe

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
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
	// within 0.8 s and 3840 (11520 probes, the burst load of test/burst) within 2.9 s,
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
	// ErrNoLinkLocal: the interface has no usable IPv6 link-local
	// address.
	//
	// Deprecated: no check returns it any more; an IPv6 gateway check
	// without one probes from :: instead.
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
	EvidenceARPReply      = arpnd.EvidenceARPReply      // ARP reply from the address
	EvidenceARPRequest    = arpnd.EvidenceARPRequest    // ARP request with the address as sender IP
	EvidenceGratuitousARP = arpnd.EvidenceGratuitousARP // ARP request whose sender and target IP are the address
	EvidenceARPProbe      = arpnd.EvidenceARPProbe      // another host's RFC 5227 probe for the address
	EvidenceNA            = arpnd.EvidenceNA            // NA for the address
	EvidenceDADProbe      = arpnd.EvidenceDADProbe      // another node's DAD solicitation for the address
	EvidenceNDSource      = arpnd.EvidenceNDSource      // an ND message sent from the address
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

// Params tunes one check. The zero value means the defaults: a zero Window
// or Probes is no meaningful value, and Retries is a pointer because zero
// retries is one.
type Params struct {
	// Window is how long to wait for an answer after the first probe went
	// out: an absolute deadline computed once. Zero means DefaultWindow.
	Window time.Duration
	// Retries is how often a failed send is retried before the check fails
	// (first probe) or the probe is skipped (later probes). nil means
	// DefaultRetries; new(0) means none.
	Retries *int
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
	case p.Retries == nil:
		p.Retries = new(DefaultRetries)
	case *p.Retries < 0:
		p.Retries = new(0)
	}
	if p.Probes <= 0 {
		p.Probes = DefaultProbes
	}
	return p
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
	// Source is the source address of the probes: 0.0.0.0 (IPv4), ::
	// (IPv6 conflict checks, and gateway checks on an interface without
	// a usable link-local address) or the interface's link-local
	// address. Invalid when no probe was built.
	Source netip.Addr
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

// Options configures an Engine. The zero value means the defaults.
type Options struct {
	// IdleTimeout is how long a socket stays open with no check using it.
	// nil means DefaultIdleTimeout; new(time.Duration(0)) closes a socket
	// as soon as its last check ends. A pointer, because zero is a
	// meaningful timeout.
	IdleTimeout *time.Duration
	// ProbeRate is the most probes per second a socket sends, in bursts
	// of up to ProbeRate/burstsPerSecond (at least 1). Zero or less means
	// DefaultProbeRate: pacing is always on.
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
	if o.IdleTimeout == nil {
		o.IdleTimeout = new(DefaultIdleTimeout)
	} else if *o.IdleTimeout < 0 {
		o.IdleTimeout = new(time.Duration(0))
	}
	if o.ProbeRate <= 0 {
		o.ProbeRate = DefaultProbeRate
	}
	if o.ReceiveBuffer <= 0 {
		o.ReceiveBuffer = DefaultReceiveBuffer
	}
	return o
}

// burstsPerSecond sizes the pacer's bucket: it holds a fiftieth of a
// second's probes (80 at the default rate, 20 ms of sending). That is far
// inside the 1000-frame receive backlog of the hosts on the link and small
// for a switch's ARP policer, yet large enough that the probes of one
// check (DefaultProbes) and of a few checks at once never wait for
// tokens.
const burstsPerSecond = 50

// burst is the pacer's bucket size for o.ProbeRate.
func (o Options) burst() int {
	b := int(o.ProbeRate / burstsPerSecond)
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
