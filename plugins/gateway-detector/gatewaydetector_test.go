//go:build linux

package gatewaydetector

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
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
	p := New(nil)
	i := p.Info()
	if i.Name != "gateway-detector" || i.Kind != sdk.KindDetector || i.APIVersion != sdk.APIVersion ||
		!slices.Equal(i.Capabilities, []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"}) {
		t.Errorf("info %+v", i)
	}
	var names []string
	for _, a := range p.ConfigSchema().Attributes {
		names = append(names, a.Name+"="+a.Default)
	}
	want := []string{`window="100ms"`, "retries=3", "probes=3", `idle_timeout="30s"`, "probe_rate=4000"}
	if !slices.Equal(names, want) {
		t.Errorf("schema %v, want %v", names, want)
	}
}

func TestJudge(t *testing.T) {
	mac, _ := net.ParseMAC("aa:bb:cc:dd:ee:01")
	o := probeplugin.DefaultOptions()
	tests := []struct {
		res     probe.Result
		verdict sdk.Verdict
		reason  string
	}{
		{probe.Result{Verdict: probe.Reachable, Addr: netip.MustParseAddr("10.0.0.1"), Interface: "eth0", Responder: mac, RTT: 120400 * time.Nanosecond},
			sdk.VerdictPass, "gateway 10.0.0.1 answered from aa:bb:cc:dd:ee:01 in 120µs on eth0"},
		{probe.Result{Verdict: probe.Reachable, Addr: netip.MustParseAddr("fd00::1"), Interface: "eth0", Responder: mac, RTT: 3 * time.Millisecond},
			sdk.VerdictPass, "gateway fd00::1 answered from aa:bb:cc:dd:ee:01 in 3ms on eth0"},
		{probe.Result{Verdict: probe.Unreachable, Addr: netip.MustParseAddr("10.0.0.1"), Interface: "eth0"},
			sdk.VerdictBlock, "gateway 10.0.0.1 did not answer within 100ms on eth0"},
		{probe.Result{Verdict: probe.Unreachable, Addr: netip.MustParseAddr("fd00::1"), Interface: "net1"},
			sdk.VerdictBlock, "gateway fd00::1 did not answer within 100ms on net1"},
	}
	for _, tt := range tests {
		got := Judge(tt.res, o)
		if got.Verdict != tt.verdict || got.Reason != tt.reason {
			t.Errorf("Judge(%+v) = %s %q, want %s %q", tt.res, got.Verdict, got.Reason, tt.verdict, tt.reason)
		}
		// a dead gateway is unreachable: IPAM fails the allocation at once.
		wantKind := sdk.BlockUnspecified
		if got.Verdict == sdk.VerdictBlock {
			wantKind = sdk.BlockUnreachable
		}
		if got.BlockKind != wantKind {
			t.Errorf("Judge(%+v) kind = %q, want %q", tt.res, got.BlockKind, wantKind)
		}
	}
}

func TestChecksWithoutProbing(t *testing.T) {
	p := New(nil)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	ctx := context.Background()
	if err := p.Configure(ctx, sdk.ConfigureRequest{Agent: sdk.AgentSettings{EnableIPv6: true}}); err != nil {
		t.Fatal(err)
	}
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
