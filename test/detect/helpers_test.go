package detect

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func TestMain(m *testing.M) {
	netlab.Sweep()
	os.Exit(m.Run())
}

var dualStack = sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}

// serve starts p over gRPC and configures it with body.
func serve(t *testing.T, p sdk.Plugin, body string, agent sdk.AgentSettings) *sdk.Client {
	t.Helper()
	c := sdktest.Start(t, p)
	err := c.Configure(context.Background(), sdk.ConfigureRequest{
		Config: sdk.RawConfig{Filename: "detect.hcl", Body: []byte(body)},
		Agent:  agent,
	})
	if err != nil {
		t.Fatalf("Configure(%q): %v", body, err)
	}
	return c
}

// req is a check on eth0 of h, its namespace given by path.
func req(h *netlab.Host, addr, gw string) sdk.CheckRequest {
	r := sdk.CheckRequest{Interface: "eth0", Netns: h.Path, Address: netip.MustParsePrefix(addr)}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

// check runs a check with the agent's kind of deadline and verifies its
// verdict and that its reason contains every fragment.
func check(t *testing.T, c *sdk.Client, r sdk.CheckRequest, want sdk.Verdict, fragments ...string) sdk.CheckResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Check(ctx, r)
	if err != nil {
		t.Fatalf("Check(%s gw %s): %v", r.Address, r.Gateway, err)
	}
	if res.Verdict != want {
		t.Fatalf("Check(%s gw %s) = %s %q (evidence %v), want %s", r.Address, r.Gateway, res.Verdict, res.Reason, res.Evidence, want)
	}
	for _, f := range fragments {
		if !strings.Contains(res.Reason, f) {
			t.Fatalf("Check(%s gw %s): reason %q does not contain %q", r.Address, r.Gateway, res.Reason, f)
		}
	}
	if res.Duration <= 0 {
		t.Errorf("Check(%s): duration %v", r.Address, res.Duration)
	}
	return res
}

// singleStack runs the subtests "IPv6 disabled" and "IPv4 disabled": a
// plugin made by newPlugin on a node with one family disabled skips that
// family's check (r6, r4) and still runs the other's, which gets want with
// a reason containing fragment.
func singleStack(t *testing.T, newPlugin func() sdk.Plugin, r4, r6 sdk.CheckRequest, want sdk.Verdict, fragment string) {
	t.Helper()
	t.Run("IPv6 disabled", func(t *testing.T) {
		c4 := serve(t, newPlugin(), "", sdk.AgentSettings{EnableIPv4: true})
		check(t, c4, r6, sdk.VerdictSkip, "IPv6 is disabled")
		check(t, c4, r4, want, fragment)
	})
	t.Run("IPv4 disabled", func(t *testing.T) {
		c6 := serve(t, newPlugin(), "", sdk.AgentSettings{EnableIPv6: true})
		check(t, c6, r4, sdk.VerdictSkip, "IPv4 is disabled")
		check(t, c6, r6, want, fragment)
	})
}

// evidence verifies evidence entries.
func evidence(t *testing.T, res sdk.CheckResult, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := res.Evidence[kv[i]]; got != kv[i+1] {
			t.Errorf("evidence %q = %q, want %q (all: %v)", kv[i], got, kv[i+1], res.Evidence)
		}
	}
}

// metric returns the value of one sample collected from c; of a summary,
// the number of its observations.
func metric(t *testing.T, ss []sdk.Sample, name string, kv ...string) float64 {
	t.Helper()
	s := sdktest.FindSample(t, ss, name, kv...)
	if s.Type == sdk.Summary {
		return float64(len(s.Observations))
	}
	return s.Value
}

func metrics(t *testing.T, c *sdk.Client) []sdk.Sample {
	t.Helper()
	ss, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	return ss
}

// expectMetrics checks name{labels} = value triples: {name, value, k, v, ...}.
func expectMetrics(t *testing.T, ss []sdk.Sample, want ...[]any) {
	t.Helper()
	for _, w := range want {
		name, val := w[0].(string), w[1]
		var kv []string
		for _, x := range w[2:] {
			kv = append(kv, x.(string))
		}
		got := metric(t, ss, name, kv...)
		switch v := val.(type) {
		case int:
			if got != float64(v) {
				t.Errorf("%s%v = %v, want %d", name, kv, got, v)
			}
		case string: // ">0"
			if got <= 0 {
				t.Errorf("%s%v = %v, want more than 0", name, kv, got)
			}
		}
	}
}
