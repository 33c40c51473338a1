package probe_test

// Silence is a verdict only when it is proven. Each test
// provokes one way an answer can be lost or a window cut short on this host
// and asserts that the engine then finds the answer or says it cannot
// decide - never Free, never Unreachable.

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// stall is an OnFrame hook that, once armed, holds the reader on the next
// frame until freed (or for hold, when hold > 0).
type stall struct {
	hold    time.Duration
	held    atomic.Bool
	mu      sync.Mutex
	armed   bool
	release chan struct{}
}

func newStall(hold time.Duration) *stall { return &stall{hold: hold} }

func (s *stall) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = true
	s.release = make(chan struct{})
}

func (s *stall) onFrame() {
	s.mu.Lock()
	if !s.armed {
		s.mu.Unlock()
		return
	}
	s.armed = false
	ch := s.release
	s.mu.Unlock()
	s.held.Store(true)
	if s.hold > 0 {
		time.Sleep(s.hold) // the injected fault: a reader that is this slow
	} else {
		<-ch
	}
	s.held.Store(false)
}

// free lets a held reader go on. Register it with t.Cleanup after the
// engine, so that it runs before the engine's Close waits for the reader.
func (s *stall) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
}

// arpBurst sends n unrelated gratuitous ARP requests (sender 10.3.x.y, a
// MAC of nobody on the LAN) from h's eth0 as fast as it can.
func arpBurst(t testing.TB, h *netlab.Host, n int) {
	t.Helper()
	conn := listenIn(t, h)
	defer conn.Close()
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)})
		if _, err := conn.WriteTo(netlab.ARPFrame(broadcast, h.MAC, 1, h.MAC, a, nil, a), &packet.Addr{HardwareAddr: broadcast}); err != nil {
			t.Fatalf("arp burst: %v", err)
		}
	}
}

// A reply that sits unread in the queue when the window ends must still be
// found: the reader is held for 300ms on the busy host's reply (longer than
// the 100ms window). The old engine answered Free at the deadline.
func TestReplyQueuedAtDeadline(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	st := newStall(300 * time.Millisecond)
	e := newEngine(t, probe.Options{OnFrame: st.onFrame})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "") // socket open
	for _, tc := range []proofCase{
		{netlab.Busy4, false, probe.Conflict, netlab.BusyMAC},
		{netlab.Busy6, false, probe.Conflict, netlab.BusyMAC},
		{netlab.GW4, true, probe.Reachable, netlab.GwMAC},
		{netlab.GW6, true, probe.Reachable, netlab.GwMAC},
	} {
		st.arm()
		res := mustCheck(t, e, on(l.Node, tc.addr), probe.Params{}, tc.gw)
		expect(t, res, tc.want, tc.mac)
		if res.Elapsed < 300*time.Millisecond {
			t.Fatalf("%s: answered in %v although the reader was held 300ms: the stall did not happen", tc.addr, res.Elapsed)
		}
		t.Logf("%s: %s after %v (reader held 300ms, window 100ms)", tc.addr, res.Verdict, res.Elapsed)
	}
}

// A reader that never catches up: the engine cannot prove silence, so the
// check is an error after its rounds - never Free or Unreachable.
func TestReaderStuckIsAnError(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	st := newStall(0)
	e := newEngine(t, probe.Options{OnFrame: st.onFrame})
	t.Cleanup(st.free)
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "") // socket open
	st.arm()
	// Hold the reader on an unrelated frame; every answer queues behind it.
	arpBurst(t, l.GW, 1)
	netlab.WaitFor(t, "the reader to be held", func() (bool, error) { return st.held.Load(), nil })
	for _, a := range []string{netlab.Busy4, netlab.Free4} {
		res, err := e.CheckConflict(t.Context(), on(l.Node, a), probe.Params{})
		expectErr(t, err, probe.ErrUnproven, "still unread", "3 rounds")
		if res.Verdict != 0 || res.Rounds != 3 {
			t.Fatalf("%s: result %+v with error", a, res)
		}
	}
	_, err := e.CheckGateway(t.Context(), on(l.Node, netlab.GW4), probe.Params{})
	expectErr(t, err, probe.ErrUnproven)
	if st := e.Stats(); st.Unproven != 3 || st.Free != 1 || st.ExtraRounds != 6 {
		t.Fatalf("stats %+v", st)
	}
}

// Frames dropped on the socket during a window (its receive buffer full)
// may have been the answer: that window proves nothing and is probed
// again. The reader is held while a burst fills a minimal receive buffer,
// then let go once the kernel counted drops after the check's only probe
// (Probes 1: no later probe can make up for it); the check must find the
// busy host in a later round, never answer Free. The old engine did.
func TestDropsDuringWindowProbeAgain(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	st := newStall(0)
	e := newEngine(t, probe.Options{OnFrame: st.onFrame, ReceiveBuffer: 1})
	t.Cleanup(st.free)
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "") // socket open
	for i, tc := range []proofCase{
		{netlab.Busy4, false, probe.Conflict, netlab.BusyMAC},
		{netlab.GW4, true, probe.Reachable, netlab.GwMAC},
		{netlab.Free4, false, probe.Free, ""},
	} {
		st.arm()
		arpBurst(t, l.GW, 200) // the first frame holds the reader, the rest fill the queue
		netlab.WaitFor(t, "the reader to be held", func() (bool, error) { return st.held.Load(), nil })
		drops := e.Stats().KernelDrops
		if drops == 0 {
			t.Fatalf("a 200-frame burst into a minimal buffer dropped nothing: the test cannot provoke drops")
		}
		type out struct {
			res probe.Result
			err error
		}
		done := make(chan out, 1)
		sent := e.Stats().ProbesSent
		go func() {
			r, err := checkOf(t.Context(), e, on(l.Node, tc.addr), probe.Params{Window: 300 * time.Millisecond, Probes: 1}, tc.gw)
			done <- out{r, err}
		}()
		// The answer to the only probe meets the full queue and is
		// dropped: let the reader go once the kernel counted it. Nothing
		// else arrives meanwhile, so the drop is the answer. A free
		// address has no answer: a few more frames make the drop.
		netlab.WaitFor(t, "the first probe", func() (bool, error) { return e.Stats().ProbesSent > sent, nil })
		if tc.want == probe.Free {
			arpBurst(t, l.GW, 20)
		}
		netlab.WaitFor(t, "drops during the window", func() (bool, error) { return e.Stats().KernelDrops > drops, nil })
		st.free()
		o := <-done
		if o.err != nil && !errors.Is(o.err, probe.ErrUnproven) {
			t.Fatalf("case %d %s: %v", i, tc.addr, o.err)
		}
		if o.err == nil {
			expect(t, o.res, tc.want, tc.mac)
		}
		t.Logf("%s: %s in %d rounds, err %v (kernel drops %d)", tc.addr, o.res.Verdict, o.res.Rounds, o.err, e.Stats().KernelDrops)
		if o.err == nil && o.res.Rounds < 2 {
			t.Fatalf("%s: decided in round 1 although frames were dropped during it", tc.addr)
		}
	}
}

// nthResponder answers, as the owner of v4 (h's MAC), only the n-th ARP
// probe for v4 it sees: the first n-1 are lost, as a neighbour or switch
// dropping part of a burst would lose them.
func nthResponder(t testing.TB, h *netlab.Host, n int, v4 netip.Addr) *atomic.Int64 {
	t.Helper()
	seen := new(atomic.Int64)
	readFrames(t, h, func(conn *packet.Conn, f []byte) {
		a, ok := parseARP(f)
		if !ok || a.op != 1 || a.tpa != v4 || !a.spa.IsUnspecified() {
			return
		}
		if seen.Add(1) != int64(n) {
			return
		}
		_, _ = conn.WriteTo(arpReply(h, v4, a), &packet.Addr{HardwareAddr: a.sha})
	})
	return seen
}

// A probe that leaves late (here: held back by pacing, as CPU pressure
// would) still gets its share of the window: with 10 probes/s and no burst
// the third probe leaves ~200ms after the first, after the nominal 100ms
// window ended. A host that answers only that third probe is found.
func TestLateProbeExtendsWindow(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	ghost := l.AddHost("ghost", "02:00:00:00:00:77")
	seen := nthResponder(t, ghost, 3, netlab.Addr("10.0.0.77"))
	e := newEngine(t, probe.Options{ProbeRate: 10})
	res := mustConflict(t, e, on(l.Node, "10.0.0.77"), probe.Params{})
	expect(t, res, probe.Conflict, "02:00:00:00:00:77")
	if res.ProbesSent != 3 || seen.Load() != 3 || res.RTT < 150*time.Millisecond {
		t.Fatalf("result %+v, responder saw %d probes: the third probe was not late", res, seen.Load())
	}
	t.Logf("answer to the third probe after %v (pacing 10/s, window 100ms)", res.RTT)
	// Pacing also delays the start: the window opens when the first probe
	// leaves, not when the check was asked.
	var wg sync.WaitGroup
	results := make([]probe.Result, 3)
	for i := range results {
		wg.Go(func() {
			results[i] = mustConflict(t, e, on(l.Node, "10.0.0.7"+string(rune('1'+i))), probe.Params{Probes: 1})
		})
	}
	wg.Wait()
	for _, r := range results {
		expect(t, r, probe.Free, "")
	}
}
