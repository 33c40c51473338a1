package denylist

import (
	"context"
	"net/netip"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{
		GoodConfig: `deny = ["192.0.2.0/29"]`,
		BadConfig:  `deny = ["192.0.2.0/29", "10.0.0.0/33"]`,
		Blocked:    []sdk.CheckRequest{{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.3/32")}},
	})
}

func TestCheck(t *testing.T) {
	p := New(hclog.NewNullLogger())
	err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: sdk.RawConfig{
		Filename: "a.hcl", Body: []byte(`deny = ["10.0.0.0/29", "2001:db8::/126"]`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want sdk.Verdict
	}{
		{"10.0.0.7/24", sdk.VerdictBlock},
		{"10.0.0.8/24", sdk.VerdictPass},
		{"2001:db8::3/64", sdk.VerdictBlock},
		{"2001:db8::4/64", sdk.VerdictPass},
	}
	for _, tt := range tests {
		res, err := p.Check(context.Background(), sdk.CheckRequest{Address: netip.MustParsePrefix(tt.addr)})
		if err != nil || res.Verdict != tt.want {
			t.Errorf("Check(%s) = %v, %v; want %v", tt.addr, res.Verdict, err, tt.want)
		}
	}
	if got := p.Metrics(context.Background())[1].Value; got != 2 {
		t.Errorf("blocked_total = %v, want 2", got)
	}
}

func TestConfigureRejectsBadPrefixAndKeepsOld(t *testing.T) {
	p := New(hclog.NewNullLogger())
	ctx := context.Background()
	good := sdk.RawConfig{Filename: "a.hcl", Body: []byte(`deny = ["10.0.0.0/29"]`)}
	if err := p.Configure(ctx, sdk.ConfigureRequest{Config: good}); err != nil {
		t.Fatal(err)
	}
	bad := sdk.RawConfig{Filename: "a.hcl", Body: []byte(`deny = ["10.0.0.0/33"]`)}
	err := p.Configure(ctx, sdk.ConfigureRequest{Config: bad})
	if err == nil || err.Error() != `a.hcl:1:9: Invalid value for "deny": "10.0.0.0/33" is not a prefix such as 10.0.0.0/29` {
		t.Fatalf("Configure(bad prefix) = %v", err)
	}
	res, _ := p.Check(ctx, sdk.CheckRequest{Address: netip.MustParsePrefix("10.0.0.1/24")})
	if res.Verdict != sdk.VerdictBlock {
		t.Errorf("after a rejected reload the old deny list must stay in force, got %v", res.Verdict)
	}
}
