package probe_test

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
)

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
func on(h *host, a string) probe.Target {
	tg := probe.Target{Netns: h.path, Interface: "eth0"}
	if a != "" {
		tg.Addr = netip.MustParseAddr(a)
	}
	return tg
}

func mustConflict(t testing.TB, e *probe.Engine, tg probe.Target, p probe.Params) probe.Result {
	t.Helper()
	res, err := e.CheckConflict(context.Background(), tg, p)
	if err != nil {
		t.Fatalf("CheckConflict(%s, %s): %v", tg, tg.Addr, err)
	}
	return res
}

func mustGateway(t testing.TB, e *probe.Engine, tg probe.Target, p probe.Params, s probe.Sender) probe.Result {
	t.Helper()
	res, err := e.CheckGateway(context.Background(), tg, p, s)
	if err != nil {
		t.Fatalf("CheckGateway(%s, %s): %v", tg, tg.Addr, err)
	}
	return res
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

// arpingAnswered runs iputils arping -D (Debian package iputils-arping) from
// h and reports whether anyone answered for a.
func arpingAnswered(t testing.TB, h *host, a string) bool {
	t.Helper()
	if _, err := exec.LookPath("arping"); err != nil {
		t.Fatalf("cross-check needs iputils arping (apt-get install iputils-arping): %v", err)
	}
	// iputils arping -D is RFC 5227's probe (sender 0.0.0.0): exit 0 when
	// nobody answered (free), 1 when someone did (duplicate).
	cmd := exec.Command("ip", "netns", "exec", h.ns, "arping", "-D", "-q", "-c", "3", "-w", "1", "-I", "eth0", a)
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return true
	}
	t.Fatalf("arping -D %s: %v", a, err)
	return false
}

// ndisc6Answered runs ndisc6 (package ndisc6) from h: does a answer a
// Neighbor Solicitation?
func ndisc6Answered(t testing.TB, h *host, a string) bool {
	t.Helper()
	if _, err := exec.LookPath("ndisc6"); err != nil {
		t.Fatalf("cross-check needs ndisc6 (apt-get install ndisc6): %v", err)
	}
	err := exec.Command("ip", "netns", "exec", h.ns, "ndisc6", "-q", "-1", "-r", "2", "-w", "100", a, "eth0").Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return false
	}
	t.Fatalf("ndisc6 %s: %v", a, err)
	return false
}
