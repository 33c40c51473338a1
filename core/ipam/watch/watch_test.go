package watch

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// clock is a settable clock for Options.Now.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) now() time.Time  { return *c.t.Load() }
func (c *clock) set(t time.Time) { c.t.Store(&t) }

// lanSender is a packet socket on a LAN host's eth0 that sends frames.
func lanSender(t *testing.T, h *netlab.Host) func(b []byte, err error) {
	t.Helper()
	var conn *packet.Conn
	err := netns.Do(h.Path, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = arpnd.Listen(ifi, 1<<16)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", h.NS, err)
	}
	t.Cleanup(func() { conn.Close() })
	return func(b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(b, &packet.Addr{HardwareAddr: net.HardwareAddr(b[0:6])}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func held(cid string, h *netlab.Host, addr string, defend bool) Held {
	return Held{Key: api.AttachmentKey{ContainerID: cid, Interface: "eth0"}, Workload: "default/" + cid, Netns: h.Path,
		Addrs: []Addr{{Addr: netip.MustParseAddr(addr), Pool: "lan4", Domain: "default", Defend: defend}}}
}

// framesOf is how many claims of addr the watcher counted.
func framesOf(w *Watcher, addr netip.Addr) uint64 {
	for _, c := range w.Contested() {
		if c.Address == addr {
			return c.Frames
		}
	}
	return 0
}

// A defended address is defended once per DefendInterval, on the
// watcher's clock: the claims within 10 s of a defence get none, the first
// claim 10 s after it gets the next.
func TestDefendOncePerInterval(t *testing.T) {
	netlab.RequireRoot(t)
	lan := netlab.NewLAN(t)
	wl := lan.AddHost("wl", "02:00:00:00:0a:01")
	thief := lan.AddHost("thief", "02:00:00:00:0a:99")
	clk := &clock{}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk.set(t0)
	var defended atomic.Int64
	w := New(Options{Node: "n1", Now: clk.now, OnDefend: func(netip.Addr, string) { defended.Add(1) }})
	t.Cleanup(w.Close)
	addr := netip.MustParseAddr("10.0.0.5")
	if err := w.Add(held("c1", wl, addr.String(), true)); err != nil {
		t.Fatal(err)
	}
	send := lanSender(t, thief)
	steps := []struct {
		at   time.Duration
		want int64
	}{
		{0, 1},               // the first claim is defended at once
		{5 * time.Second, 1}, // within the interval: not again
		{DefendInterval - time.Millisecond, 1},
		{DefendInterval, 2}, // 10 s after the defence: defended again
		{DefendInterval + 5*time.Second, 2},
		{2*DefendInterval - time.Millisecond, 2},
		{2 * DefendInterval, 3},
	}
	for i, s := range steps {
		clk.set(t0.Add(s.at))
		send(arpnd.BuildGratuitousARP(thief.MAC, addr))
		poll.Until(t, 10*time.Second, "the watcher to count the claim", poll.Bool(func() bool { return framesOf(w, addr) == uint64(i+1) }))
		if got := defended.Load(); got != s.want {
			t.Fatalf("claim %d at +%v: %d defences, want %d", i+1, s.at, got, s.want)
		}
	}
	if c := w.Contested(); len(c) != 1 || c[0].Defended != 3 || c[0].MAC != thief.MAC.String() {
		t.Errorf("contested %+v, want one conflict by %s defended 3 times", c, thief.MAC)
	}
}

// Claims of addresses the agent does not hold are learned as busy, per
// domain; an address another watched interface holds is not (the agent's
// own workload talking), and an address that becomes held is forgotten.
func TestBusyLearning(t *testing.T) {
	netlab.RequireRoot(t)
	lan := netlab.NewLAN(t)
	wl := lan.AddHost("wl", "02:00:00:00:0b:01")
	wl2 := lan.AddHost("wl2", "02:00:00:00:0b:02")
	host := lan.AddHost("host", "02:00:00:00:0b:99")
	clk := &clock{}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk.set(t0)
	pool := netip.MustParsePrefix("10.0.0.0/24")
	w := New(Options{Node: "n1", Now: clk.now, Pooled: func(domain string, a netip.Addr) (string, bool) {
		return "lan4", domain == "default" && pool.Contains(a)
	}})
	t.Cleanup(w.Close)
	ctx := context.Background()
	if err := w.Sync(ctx, []Held{held("c1", wl, "10.0.0.5", false), held("c2", wl2, "10.0.0.6", false)}); err != nil {
		t.Fatal(err)
	}
	fromHost, fromWl2 := lanSender(t, host), lanSender(t, wl2)
	busyAddr, outside, marker := netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.1.0.9"), netip.MustParseAddr("10.0.0.11")
	fromHost(arpnd.BuildARPRequest(host.MAC, netip.IPv4Unspecified(), netip.MustParseAddr("10.0.0.10"))) // a probe: a question, not a holder
	fromHost(arpnd.BuildGratuitousARP(host.MAC, outside))                                                // not a pool address
	fromHost(arpnd.BuildGratuitousARP(host.MAC, busyAddr))
	fromWl2(arpnd.BuildGratuitousARP(wl2.MAC, netip.MustParseAddr("10.0.0.6"))) // held by c2: its own workload
	fromWl2(arpnd.BuildGratuitousARP(wl2.MAC, marker))                          // not held by anyone: busy
	poll.Until(t, 10*time.Second, "10.0.0.9 and 10.0.0.11 learned as busy", poll.Bool(func() bool {
		_, ok1 := w.BusyIn("default", busyAddr)
		_, ok2 := w.BusyIn("default", marker)
		return ok1 && ok2
	}))
	// Each sender's frames are read in order: their earlier ones were judged.
	list := w.Busy()
	if len(list) != 2 || list[0].Address != busyAddr || list[0].MAC != host.MAC.String() || list[0].Domain != "default" ||
		list[0].Evidence != arpnd.EvidenceGratuitousARP || !list[0].Until.Equal(t0.Add(BusyFor)) || list[1].Address != marker {
		t.Fatalf("busy %+v, want 10.0.0.9 by %s until %v and 10.0.0.11", list, host.MAC, t0.Add(BusyFor))
	}
	if _, ok := w.BusyIn("vlan30", busyAddr); ok {
		t.Error("busy in another domain")
	}
	clk.set(t0.Add(BusyFor))
	if _, ok := w.BusyIn("default", busyAddr); ok {
		t.Error("still busy after BusyFor")
	}
	clk.set(t0)
	// The agent gives 10.0.0.9 out (the host left): it is no longer busy.
	if err := w.Add(held("c3", wl2, "10.0.0.9", false)); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.BusyIn("default", busyAddr); ok {
		t.Error("an address the agent holds stays busy")
	}
}

// Resyncs run while releases close interfaces and ADDs open them again:
// a resync's MAC refresh meets a release's close on the interface's
// netlink handle, which must not be asked after it is closed (the race
// detector saw it under a storm of ADDs and DELs), and an interface a
// resync opened but lost to an ADD must be dropped without waiting for a
// reader it never started (the resync hung there for good).
func TestResyncWhileReleasing(t *testing.T) {
	netlab.RequireRoot(t)
	lan := netlab.NewLAN(t)
	w := New(Options{Node: "n1"})
	t.Cleanup(w.Close)
	var hs []Held
	for i := range 8 {
		h := held("c"+string(rune('a'+i)), lan.AddHost("wl"+string(rune('a'+i)), "02:00:00:00:0b:0"+string(rune('1'+i))), "10.0.0."+string(rune('1'+i)), false)
		if err := w.Add(h); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	stop := netlab.Meanwhile(func() { _ = w.Sync(context.Background(), hs) })
	defer stop()
	for range 30 {
		for _, h := range hs {
			w.Remove(h.Key)
			if err := w.Add(h); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A release retires its interface at once and closes the socket behind
// the answer: a claim of the address the socket still delivers is no
// conflict (the address is free again, and whoever gets it next claims
// it), and Close waits for the socket to be closed.
func TestReleaseRetiresThenCloses(t *testing.T) {
	netlab.RequireRoot(t)
	lan := netlab.NewLAN(t)
	wl := lan.AddHost("wl", "02:00:00:00:0c:01")
	next := lan.AddHost("next", "02:00:00:00:0c:99")
	w := New(Options{Node: "n1"})
	t.Cleanup(w.Close)
	h := held("c1", wl, "10.0.0.5", true)
	if err := w.Add(h); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	ifc := w.ifaces[h.Key]
	w.mu.Unlock()
	w.Remove(h.Key)
	if !ifc.retired.Load() {
		t.Fatal("the released interface is not retired")
	}
	f, err := arpnd.Parse(must(arpnd.BuildGratuitousARP(next.MAC, h.Addrs[0].Addr)))
	if err != nil {
		t.Fatal(err)
	}
	ifc.handle(&f, time.Now())
	if n := w.Status().Detected; n != 0 {
		t.Fatalf("a claim seen by a released interface was reported as a conflict (%d detected)", n)
	}
	w.Close()
	select {
	case <-ifc.done:
	default:
		t.Fatal("Close returned before the released interface's reader ended")
	}
	ifc.nlMu.Lock()
	closed := ifc.nlClosed
	ifc.nlMu.Unlock()
	if !closed {
		t.Fatal("Close returned before the released interface's netlink handle was closed")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
