//go:build linux

package gatewaydetector

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin/probeplugintest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

// The conformance Check asks about a gateway on "lo", which is NOARP: the
// plugin must answer VerdictError at once, without a frame sent.
func TestConformance(t *testing.T) {
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{
		GoodConfig: "window = \"50ms\"\n",
		Check: &sdk.CheckRequest{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.7/24"),
			Gateway: netip.MustParseAddr("192.0.2.1")},
	})
}

// The default conformance Check gives no gateway: a skip.
func TestConformanceNoGateway(t *testing.T) {
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{BadConfig: "window = \"11s\"\n"})
}

func TestInfoAndSchema(t *testing.T) {
	probeplugintest.InfoAndSchema(t, New(nil), "gateway-detector")
}

func TestJudge(t *testing.T) {
	mac, _ := net.ParseMAC("aa:bb:cc:dd:ee:01")
	// a dead gateway is unreachable: IPAM fails the allocation at once.
	probeplugintest.Judge(t, Judge, sdk.BlockUnreachable, []probeplugintest.JudgeCase{
		{Res: probe.Result{Verdict: probe.Reachable, Addr: netip.MustParseAddr("10.0.0.1"), Interface: "eth0", Responder: mac, RTT: 120400 * time.Nanosecond},
			Verdict: sdk.VerdictPass, Reason: "gateway 10.0.0.1 answered from aa:bb:cc:dd:ee:01 in 120µs on eth0"},
		{Res: probe.Result{Verdict: probe.Reachable, Addr: netip.MustParseAddr("fd00::1"), Interface: "eth0", Responder: mac, RTT: 3 * time.Millisecond},
			Verdict: sdk.VerdictPass, Reason: "gateway fd00::1 answered from aa:bb:cc:dd:ee:01 in 3ms on eth0"},
		{Res: probe.Result{Verdict: probe.Unreachable, Addr: netip.MustParseAddr("10.0.0.1"), Interface: "eth0"},
			Verdict: sdk.VerdictBlock, Reason: "gateway 10.0.0.1 did not answer within 100ms on eth0"},
		{Res: probe.Result{Verdict: probe.Unreachable, Addr: netip.MustParseAddr("fd00::1"), Interface: "net1"},
			Verdict: sdk.VerdictBlock, Reason: "gateway fd00::1 did not answer within 100ms on net1"},
	})
}

func TestChecksWithoutProbing(t *testing.T) {
	p := New(nil)
	probeplugintest.Configured(t, p, sdk.AgentSettings{EnableIPv6: true})
	ctx := context.Background()
	tests := []struct {
		name    string
		addr    string
		gw      string
		verdict sdk.Verdict
		reason  string
	}{
		{"no gateway", "10.0.0.7/24", "", sdk.VerdictSkip, "no gateway given"},
		{"family mismatch", "10.0.0.7/24", "fd00::1", sdk.VerdictError,
			"invalid probe request: gateway fd00::1 is ipv6 but address 10.0.0.7/24 is ipv4"},
		{"family mismatch the other way", "fd00::7/64", "10.0.0.1", sdk.VerdictError,
			"invalid probe request: gateway 10.0.0.1 is ipv4 but address fd00::7/64 is ipv6"},
		{"IPv4 disabled", "10.0.0.7/24", "10.0.0.1", sdk.VerdictSkip, "IPv4 is disabled on this node (enable_ipv4 = false)"},
	}
	for _, tt := range tests {
		req := sdk.CheckRequest{Interface: "eth0", Address: netip.MustParsePrefix(tt.addr)}
		if tt.gw != "" {
			req.Gateway = netip.MustParseAddr(tt.gw)
		}
		res, err := p.Check(ctx, req)
		if err != nil || res.Verdict != tt.verdict || res.Reason != tt.reason {
			t.Errorf("%s: Check = %s %q (%v), want %s %q", tt.name, res.Verdict, res.Reason, err, tt.verdict, tt.reason)
		}
	}
}
