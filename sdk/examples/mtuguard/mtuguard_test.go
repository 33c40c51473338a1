package mtuguard

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest/lan"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(sdktest.Logger(t)), sdktest.Options{
		GoodConfig: `min_mtu = 1280`,
		BadConfig:  `min_mtu = 70000`,
	})
}

// The verdict table, on a LAN of namespaces of the test's own (sdktest/lan;
// as root): the workload's eth0 at MTU 1234.
func TestCheckInANamespace(t *testing.T) {
	l := lan.New(t, "10.0.0.7/24")
	l.SetMTU(t, 1234) // an MTU the host is unlikely to have
	p := New(sdktest.Logger(t))
	ctx := context.Background()
	tests := []struct {
		minMTU, iface string
		want          sdk.Verdict
	}{
		{"1200", l.Interface, sdk.VerdictPass},
		{"1500", l.Interface, sdk.VerdictBlock},
		{"1500", "lo", sdk.VerdictPass}, // lo's MTU is 65536
	}
	for _, tt := range tests {
		if err := p.Configure(ctx, sdk.ConfigureRequest{Config: sdk.RawConfig{Body: []byte("min_mtu = " + tt.minMTU)}}); err != nil {
			t.Fatal(err)
		}
		res, err := p.Check(ctx, sdk.CheckRequest{Interface: tt.iface, Netns: l.Netns, Address: netip.MustParsePrefix("10.0.0.7/24")})
		if err != nil || res.Verdict != tt.want {
			t.Errorf("min_mtu %s, %s: %+v, %v; want %s", tt.minMTU, tt.iface, res, err, tt.want)
		}
	}
	// Outside the namespace eth0 is another interface or none: the
	// namespace must be used.
	if res, err := p.Check(ctx, sdk.CheckRequest{Interface: "eth0", Address: netip.MustParsePrefix("10.0.0.7/24")}); err == nil && strings.Contains(res.Reason, "MTU 1234") {
		t.Error("Check without Netns saw the workload's eth0")
	}
}
