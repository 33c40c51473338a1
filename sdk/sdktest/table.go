package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// BadConfig is a config { } body a plugin must refuse, and where.
type BadConfig struct {
	// Body is the block's body, e.g. `max_prefix = 33`.
	Body string
	// At is "LINE:COLUMN" within Body, 1-based, of the value the refusal
	// must point at: "1:14" is the 33 above. Empty accepts any position
	// in the body.
	At string
	// Contains, when set, must appear in the refusal's text.
	Contains string
}

// requireAt checks that err refuses bad with a *sdk.ConfigError whose first
// diagnostic points where bad says.
func requireAt(t *testing.T, what string, err error, bad BadConfig) {
	t.Helper()
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || len(ce.Diagnostics) == 0 {
		t.Fatalf("%s accepted or refused without a position: %v (want a *sdk.ConfigError: RawConfig.Decode's error, or RawConfig.AttrError)", what, err)
	}
	d := ce.Diagnostics[0]
	if d.Subject == nil || d.Subject.Filename != "sdktest.hcl" || d.Subject.Start.Line < 10 {
		t.Fatalf("%s: %q does not point into the block: %+v", what, err, d.Subject)
	}
	// raw() puts the body at line 10, column 1 of sdktest.hcl.
	got := fmt.Sprintf("%d:%d", d.Subject.Start.Line-9, d.Subject.Start.Column)
	if bad.At != "" && got != bad.At {
		t.Errorf("%s refused it at %s of the body, want %s: %v", what, got, bad.At, err)
	}
	if bad.Contains != "" && !strings.Contains(err.Error(), bad.Contains) {
		t.Errorf("%s: %q does not say %q", what, err, bad.Contains)
	}
}

// VerdictTable is a detector's expected verdicts for a set of addresses.
type VerdictTable struct {
	// Config is the config { } body the detector is configured with.
	Config string
	// Request is the template of every check: Interface (default "lo"),
	// Netns (on an sdktest/lan LAN: l.Interface and l.Netns), Gateway.
	Request sdk.CheckRequest
	// Want maps an address in CIDR form ("10.0.0.7/24") to its verdict.
	Want map[string]sdk.Verdict
	// Timeout bounds each check; the default is 5s.
	Timeout time.Duration
}

// Verdicts serves detector p as the agent would (Start), configures it
// with tab.Config and checks every address of tab.Want, one subtest each
// in address order, reporting the verdict and reason it got when they
// differ from the table.
func Verdicts(t *testing.T, p sdk.Plugin, tab VerdictTable) {
	t.Helper()
	if tab.Request.Interface == "" {
		tab.Request.Interface = "lo"
	}
	if tab.Timeout == 0 {
		tab.Timeout = 5 * time.Second
	}
	c := Start(t, p)
	ctx := context.Background()
	err := c.Configure(ctx, sdk.ConfigureRequest{Config: raw(tab.Config),
		Agent: sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}})
	if err != nil {
		t.Fatalf("Configure(%q): %v", tab.Config, err)
	}
	addrs := make([]string, 0, len(tab.Want))
	for a := range tab.Want {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		t.Run(a, func(t *testing.T) {
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				t.Fatalf("table address %q: %v (want CIDR form, e.g. 10.0.0.7/24)", a, err)
			}
			req := tab.Request
			req.Address = pfx
			cctx, cancel := context.WithTimeout(ctx, tab.Timeout)
			defer cancel()
			res, err := c.Check(cctx, req)
			if err != nil {
				res = sdk.CheckResult{Verdict: sdk.VerdictError, Reason: err.Error()}
			}
			if res.Verdict != tab.Want[a] {
				t.Errorf("%s on %s: %s (%s), want %s", a, req.Interface, res.Verdict, res.Reason, tab.Want[a])
			}
		})
	}
}
