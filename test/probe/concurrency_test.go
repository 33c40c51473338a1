package probe_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Two checks of the same address at once on one engine: both right, and
// neither takes the other's probe for a conflict.
func TestSameAddressAtOnce(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})
	for _, tc := range []struct {
		a         string
		v         probe.Verdict
		responder string
	}{{netlab.Free4, probe.Free, ""}, {netlab.Free6, probe.Free, ""}, {netlab.Busy4, probe.Conflict, netlab.BusyMAC}, {netlab.Busy6, probe.Conflict, netlab.BusyMAC}} {
		var wg sync.WaitGroup
		res := make([]probe.Result, 2)
		errs := make([]error, 2)
		for i := range res {
			wg.Go(func() { res[i], errs[i] = e.CheckConflict(context.Background(), on(l.Node, tc.a), probe.Params{}) })
		}
		wg.Wait()
		for i := range res {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			expect(t, res[i], tc.v, tc.responder)
		}
	}
}

// Two nodes probing the same free address at once must not both take it
// (RFC 5227 §2.1.1, RFC 4862 §5.4.3). A node that sees the other's probe
// reports a conflict naming the other and stops probing; the other may then
// rightly find the address free. Never both free.
func TestTwoNodesProbeAtOnce(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	node2 := l.AddHost("node2", netlab.Node2MAC)
	e := newEngine(t, probe.Options{})
	// Open both sockets first, and use a wider window: the two checks must
	// overlap even when the machine is busy with other tests.
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	expect(t, mustConflict(t, e, on(node2, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	p := probe.Params{Window: 300 * time.Millisecond}
	both := 0
	for i := range 5 {
		for _, a := range []string{fmt.Sprintf("10.0.0.%d", 70+i), fmt.Sprintf("fd00::%d", 70+i)} {
			var wg sync.WaitGroup
			var r1, r2 probe.Result
			var e1, e2 error
			wg.Go(func() { r1, e1 = e.CheckConflict(context.Background(), on(l.Node, a), p) })
			wg.Go(func() { r2, e2 = e.CheckConflict(context.Background(), on(node2, a), p) })
			wg.Wait()
			if e1 != nil || e2 != nil {
				t.Fatal(e1, e2)
			}
			if r1.Verdict != probe.Conflict && r2.Verdict != probe.Conflict {
				t.Fatalf("%s: both nodes found it free:\n%+v\n%+v", a, r1, r2)
			}
			want := "arp-probe"
			if r1.Addr.Is6() {
				want = "dad-probe"
			}
			for _, c := range []struct {
				r     probe.Result
				other string
			}{{r1, netlab.Node2MAC}, {r2, netlab.NodeMAC}} {
				if c.r.Verdict == probe.Conflict && (c.r.Responder.String() != c.other || c.r.Evidence != want) {
					t.Fatalf("%s: conflict names %s (%s), want %s (%s)", a, c.r.Responder, c.r.Evidence, c.other, want)
				}
			}
			if r1.Verdict == r2.Verdict {
				both++
			}
		}
	}
	t.Logf("both nodes saw each other in %d of 10 rounds", both)
	if st := e.Stats(); st.SocketsOpened != 2 {
		t.Fatalf("two interfaces, %d sockets", st.SocketsOpened)
	}
}

// A burst of checks on one interface costs one window, not one each. Busy
// addresses hidden in the burst must still be found.
func TestManyConcurrent(t *testing.T) {
	l := netlab.NewStdLAN(t)
	e := newEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC) // socket open
	for _, n := range []int{256, 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			addrs := make([]string, n)
			for i := range addrs {
				if i%2 == 0 {
					addrs[i] = fmt.Sprintf("10.1.%d.%d", i/256, i%256)
				} else {
					addrs[i] = fmt.Sprintf("fd00::1:%x", i)
				}
			}
			addrs[n/3], addrs[n/2+1] = netlab.Busy4, netlab.Busy6
			res := make([]probe.Result, n)
			errs := make([]error, n)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range addrs {
				wg.Go(func() { res[i], errs[i] = e.CheckConflict(context.Background(), on(l.Node, addrs[i]), probe.Params{}) })
			}
			wg.Wait()
			wall := time.Since(start)
			for i := range addrs {
				if errs[i] != nil {
					t.Fatalf("%s: %v", addrs[i], errs[i])
				}
				want := probe.Free
				if addrs[i] == netlab.Busy4 || addrs[i] == netlab.Busy6 {
					want = probe.Conflict
				}
				if res[i].Verdict != want {
					t.Fatalf("%s: %s, want %s", addrs[i], res[i].Verdict, want)
				}
			}
			t.Logf("%d concurrent checks (100ms window) took %v", n, wall)
			// One window each would take n windows (25.6s for 256). The
			// bound only proves the burst shares its windows; how close it
			// comes to one window is make bench's job, not a timed test's
			// on a loaded 2-core CI machine under -race.
			// Pacing sends n*3 probes at DefaultProbeRate at most: that
			// much longer is by design.
			paced := time.Duration(float64(n*probe.DefaultProbes) / probe.DefaultProbeRate * float64(time.Second))
			limit := paced + 20*probe.DefaultWindow
			if wall > limit {
				t.Fatalf("%d concurrent checks took %v, want under %v", n, wall, limit)
			}
		})
	}
	if st := e.Stats(); st.SocketsOpened != 1 || st.SendErrors != 0 {
		t.Fatalf("stats after the burst: %+v", st)
	}
}
