//go:build linux

package ipconflict

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin/probeplugintest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

// The default conformance Check asks about 192.0.2.1 on "lo", which is
// NOARP: the plugin must answer VerdictError at once, without a frame sent.
func TestConformance(t *testing.T) {
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{
		GoodConfig: "window = \"50ms\"\nretries = 2\nprobes = 2\nidle_timeout = \"1s\"\n",
	})
}

func TestConformanceRejectsOutOfRange(t *testing.T) {
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{BadConfig: "probes = 11\n"})
}

func TestInfoAndSchema(t *testing.T) {
	probeplugintest.InfoAndSchema(t, New(nil), "ip-conflict")
}

func TestJudge(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	// a conflict is in_use: IPAM quarantines and tries the next.
	probeplugintest.Judge(t, Judge, sdk.BlockInUse, []probeplugintest.JudgeCase{
		{Res: probe.Result{Verdict: probe.Free, Addr: netip.MustParseAddr("10.0.0.7"), Interface: "eth0", ProbesSent: 3},
			Verdict: sdk.VerdictPass, Reason: "10.0.0.7 is not in use on eth0 (no answer within 100ms, 3 probes)"},
		{Res: probe.Result{Verdict: probe.Free, Addr: netip.MustParseAddr("fd00::7"), Interface: "net1", ProbesSent: 1},
			Opts:    func(o *probeplugin.Options) { o.Window = 1500 * time.Millisecond },
			Verdict: sdk.VerdictPass, Reason: "fd00::7 is not in use on net1 (no answer within 1.5s, 1 probe)"},
		{Res: probe.Result{Verdict: probe.Conflict, Addr: netip.MustParseAddr("10.0.0.7"), Interface: "eth0", Responder: mac},
			Verdict: sdk.VerdictBlock, Reason: "10.0.0.7 is in use by 52:54:00:12:34:56 on eth0"},
		{Res: probe.Result{Verdict: probe.Conflict, Addr: netip.MustParseAddr("fd00::7"), Interface: "eth0", Responder: mac},
			Verdict: sdk.VerdictBlock, Reason: "fd00::7 is in use by 52:54:00:12:34:56 on eth0"},
	})
}

func TestDisabledFamilyAndBadRequests(t *testing.T) {
	p := New(nil)
	probeplugintest.Configured(t, p, sdk.AgentSettings{EnableIPv4: true})
	ctx := context.Background()
	res, err := p.Check(ctx, sdk.CheckRequest{Interface: "eth0", Address: netip.MustParsePrefix("fd00::7/64")})
	if err != nil || res.Verdict != sdk.VerdictSkip || !strings.Contains(res.Reason, "IPv6 is disabled") {
		t.Errorf("disabled IPv6: %+v %v", res, err)
	}
	res, err = p.Check(ctx, sdk.CheckRequest{Interface: "eth0"})
	if err != nil || res.Verdict != sdk.VerdictError || res.Reason == "" {
		t.Errorf("no address: %+v %v", res, err)
	}
}

// Loopback is NOARP and has no MAC: an error naming the interface, never a
// pass, and no frame sent.
func TestLoopbackIsAnError(t *testing.T) {
	p := New(nil)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	res, err := p.Check(context.Background(), sdk.CheckRequest{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.1/32")})
	if err != nil || res.Verdict != sdk.VerdictError || !strings.HasPrefix(res.Reason, "cannot probe lo") ||
		res.Evidence["error"] != "interface" {
		t.Errorf("Check on lo = %+v, %v", res, err)
	}
	if got := p.Health(context.Background()).Detail.(probeplugin.HealthDetail).Checks; got != 1 {
		t.Errorf("health counts %d checks", got)
	}
}
