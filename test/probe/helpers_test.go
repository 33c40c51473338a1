// Package probe_test tests the ARP/NDP probe engine (plugins/probe) on the
// wire: LANs of real network namespaces (test/netlab), with test-side
// responders, captures and floods written independently of the engine.
package probe_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Every test builds a LAN of network namespaces with test/netlab; it needs
// root and fails (never skips) without it.
func TestMain(m *testing.M) {
	netlab.Sweep() // namespaces of earlier runs that died before their cleanup
	os.Exit(m.Run())
}

func newEngine(t testing.TB, o probe.Options) *probe.Engine {
	t.Helper()
	e := probe.NewEngine(o)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return e
}

// on returns a target on eth0 of h, found through its /var/run/netns path.
func on(h *netlab.Host, a string) probe.Target {
	tg := probe.Target{Netns: h.Path, Interface: "eth0"}
	if a != "" {
		tg.Addr = netip.MustParseAddr(a)
	}
	return tg
}

// lanEngine is a test's usual start: in parallel with the others, on a
// standard LAN of its own, with an engine of options o.
func lanEngine(t *testing.T, o probe.Options) (*netlab.StdLAN, *probe.Engine) {
	t.Helper()
	t.Parallel()
	return netlab.NewStdLAN(t), newEngine(t, o)
}

func mustConflict(t testing.TB, e *probe.Engine, tg probe.Target, p probe.Params) probe.Result {
	t.Helper()
	return mustCheck(t, e, tg, p, false)
}

func mustGateway(t testing.TB, e *probe.Engine, tg probe.Target, p probe.Params) probe.Result {
	t.Helper()
	return mustCheck(t, e, tg, p, true)
}

// checkOf runs the gateway check of tg when gw, else its conflict check.
func checkOf(ctx context.Context, e *probe.Engine, tg probe.Target, p probe.Params, gw bool) (probe.Result, error) {
	if gw {
		return e.CheckGateway(ctx, tg, p)
	}
	return e.CheckConflict(ctx, tg, p)
}

// mustCheck is checkOf failing t on an error.
func mustCheck(t testing.TB, e *probe.Engine, tg probe.Target, p probe.Params, gw bool) probe.Result {
	t.Helper()
	res, err := checkOf(context.Background(), e, tg, p, gw)
	if err != nil {
		t.Fatalf("%s(%s, %s): %v", map[bool]string{false: "CheckConflict", true: "CheckGateway"}[gw], tg, tg.Addr, err)
	}
	return res
}

// proofCase is a check of addr - its gateway check when gw, else its
// conflict check - and the verdict and responder MAC it must get.
type proofCase struct {
	addr string
	gw   bool
	want probe.Verdict
	mac  string
}

// expect checks verdict and responder (nil responder: nobody answered).
func expect(t testing.TB, res probe.Result, v probe.Verdict, responder string) {
	t.Helper()
	if res.Verdict != v {
		t.Fatalf("%s: verdict %s, want %s (result %+v)", res.Addr, res.Verdict, v, res)
	}
	if responder == "" {
		if res.Responder != nil || res.Evidence != "" {
			t.Fatalf("%s: silent verdict names responder %s (%s)", res.Addr, res.Responder, res.Evidence)
		}
		return
	}
	if res.Responder.String() != responder {
		t.Fatalf("%s: responder %s, want %s", res.Addr, res.Responder, responder)
	}
}

// expectErr checks that err wraps want and mentions each of the fragments.
func expectErr(t testing.TB, err, want error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %q", err, want)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
}

// arpingAnswered cross-checks with iputils arping -D from h's eth0: did
// anyone answer for a?
func arpingAnswered(t testing.TB, h *netlab.Host, a string) bool {
	t.Helper()
	return netlab.ArpingDAD(t, h.NS, "eth0", a)
}

// ndisc6Answered cross-checks with ndisc6 from h's eth0: does a answer a
// Neighbor Solicitation?
func ndisc6Answered(t testing.TB, h *netlab.Host, a string) bool {
	t.Helper()
	return netlab.Ndisc6Answered(t, h.NS, "eth0", a)
}
