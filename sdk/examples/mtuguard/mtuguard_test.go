package mtuguard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(sdktest.Logger(t)), sdktest.Options{
		GoodConfig: `min_mtu = 1280`,
		BadConfig:  `min_mtu = 70000`,
	})
}

// The verdict table, in a namespace of the test's own with a veth pair of
// MTU 1400 (as root).
func TestCheckInANamespace(t *testing.T) {
	name := fmt.Sprintf("mtug-%d-%d", os.Getpid(), rand.IntN(1e6))
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "add", "w0", "mtu", "1400", "type", "veth", "peer", "name", "w1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		}
	}
	p := New(sdktest.Logger(t))
	ctx := context.Background()
	tests := []struct {
		minMTU, iface string
		want          sdk.Verdict
	}{
		{"1280", "w0", sdk.VerdictPass},
		{"1500", "w0", sdk.VerdictBlock},
		{"1500", "lo", sdk.VerdictPass}, // lo's MTU is 65536
	}
	for _, tt := range tests {
		if err := p.Configure(ctx, sdk.ConfigureRequest{Config: sdk.RawConfig{Body: []byte("min_mtu = " + tt.minMTU)}}); err != nil {
			t.Fatal(err)
		}
		res, err := p.Check(ctx, sdk.CheckRequest{Interface: tt.iface, Netns: "/var/run/netns/" + name, Address: netip.MustParsePrefix("10.0.0.7/24")})
		if err != nil || res.Verdict != tt.want {
			t.Errorf("min_mtu %s, %s: %+v, %v; want %s", tt.minMTU, tt.iface, res, err, tt.want)
		}
	}
	// w0 exists only in the namespace: without Netns it is an error.
	if _, err := p.Check(ctx, sdk.CheckRequest{Interface: "w0"}); err == nil {
		t.Error("Check without Netns found w0: the namespace was not used")
	}
}
