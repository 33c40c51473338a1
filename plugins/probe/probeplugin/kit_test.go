//go:build linux

package probeplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("cannot probe eth0: %w: interface is down", probe.ErrInterface), ReasonInterface},
		{fmt.Errorf("cannot probe eth0: %w", probe.ErrNoLinkLocal), ReasonInterface},
		{fmt.Errorf("cannot probe eth0: %w after 4 attempts: %w", probe.ErrSend, errors.New("ENOBUFS")), ReasonSend},
		{fmt.Errorf("%w: no address given", probe.ErrInvalid), ReasonInvalid},
		{fmt.Errorf("cannot probe eth0: %w", context.DeadlineExceeded), ReasonTimeout},
		{fmt.Errorf("cannot probe eth0: %w", context.Canceled), ReasonTimeout},
		// By sentinel, not by text: the old text without it is "other".
		{fmt.Errorf("cannot probe eth0 (netns /x): %w: open /x: %w", probe.ErrNetns, fs.ErrNotExist), ReasonNetns},
		{fmt.Errorf("cannot probe eth0 (netns /x): %w: enter /x: operation not permitted", probe.ErrNetns), ReasonNetns},
		{errors.New("cannot probe eth0 (netns /x): enter network namespace /x: operation not permitted"), ReasonOther},
		// A path that is no network namespace is a bad request.
		{fmt.Errorf("cannot probe eth0 (netns /x): %w: %w: /x is a FIFO", probe.ErrNetns, probe.ErrInvalid), ReasonInvalid},
		{fmt.Errorf("cannot probe eth0: %w after 3 rounds (dropped)", probe.ErrUnproven), ReasonUnproven},
		{fmt.Errorf("cannot probe eth0: %w", probe.ErrClosed), ReasonOther},
		{errors.New("something else"), ReasonOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		100 * time.Millisecond:    "100ms",
		120345 * time.Nanosecond:  "120µs",
		1234567 * time.Nanosecond: "1.235ms",
		500 * time.Nanosecond:     "500ns",
		0:                         "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
	}
	if Plural(1, "probe") != "1 probe" || Plural(3, "probe") != "3 probes" || Plural(0, "probe") != "0 probes" {
		t.Error("Plural")
	}
	for a, want := range map[string]string{"10.0.0.1": "ipv4", "::ffff:10.0.0.1": "ipv4", "fd00::1": "ipv6"} {
		if got := Family(netip.MustParseAddr(a)); got != want {
			t.Errorf("Family(%s) = %s", a, got)
		}
	}
	if Family(netip.Addr{}) != "unknown" {
		t.Error("Family(invalid)")
	}
}

var mac, _ = net.ParseMAC("52:54:00:12:34:56")

// fake returns a Run that answers res or err without touching the network
// and records what it was asked.
func fake(res probe.Result, err error, got *probe.Target, gotP *probe.Params) func(*probe.Engine, context.Context, probe.Target, probe.Params) (probe.Result, error) {
	return func(_ *probe.Engine, _ context.Context, t probe.Target, p probe.Params) (probe.Result, error) {
		if got != nil {
			*got = t
		}
		if gotP != nil {
			*gotP = p
		}
		res.Addr, res.Interface = t.Addr, t.Interface
		return res, err
	}
}

func judge(res probe.Result, o Options) sdk.CheckResult {
	if res.Verdict == probe.Conflict {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: "busy", Evidence: map[string]string{"own": "x"}}
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: "free within " + o.Window.String()}
}

func newTestKit(t *testing.T, rtt bool) *Kit {
	k := NewKit(nil, Names{Prefix: "tk", What: "Test checks", Blocked: "blocked", BlockedHelp: "Blocked.", RTT: rtt})
	t.Cleanup(func() { _ = k.Shutdown(context.Background()) })
	return k
}

func TestKitCheck(t *testing.T) {
	ctx := context.Background()
	req := sdk.CheckRequest{Interface: "eth0", Netns: "/var/run/netns/w", Address: netip.MustParsePrefix("10.0.0.7/24")}
	busy := probe.Result{Verdict: probe.Conflict, Responder: mac, Evidence: "arp-reply", RTT: 42 * time.Microsecond, ProbesSent: 1}
	free := probe.Result{Verdict: probe.Free, ProbesSent: 3, SendErrors: 1}
	a4 := netip.MustParseAddr("10.0.0.7")

	tests := []struct {
		name     string
		agent    sdk.AgentSettings
		check    Check
		verdict  sdk.Verdict
		reason   string
		evidence map[string]string
	}{
		{"conflict", sdk.AgentSettings{EnableIPv4: true}, Check{Addr: a4, Run: fake(busy, nil, nil, nil), Judge: judge},
			sdk.VerdictBlock, "busy", map[string]string{"family": "ipv4", "responder_mac": "52:54:00:12:34:56", "rtt": "42µs",
				"evidence": "arp-reply", "probes_sent": "1", "window": "100ms", "own": "x"}},
		{"free", sdk.AgentSettings{EnableIPv4: true}, Check{Addr: a4, Run: fake(free, nil, nil, nil), Judge: judge},
			sdk.VerdictPass, "free within 100ms", map[string]string{"family": "ipv4", "probes_sent": "3", "send_errors": "1", "window": "100ms"}},
		{"engine error is an error, never a pass", sdk.AgentSettings{EnableIPv4: true},
			Check{Addr: a4, Run: fake(probe.Result{}, fmt.Errorf("cannot probe eth0: %w: interface is down", probe.ErrInterface), nil, nil), Judge: judge},
			sdk.VerdictError, "cannot probe eth0: interface unusable: interface is down", map[string]string{"family": "ipv4", "error": "interface"}},
		{"skip comes first", sdk.AgentSettings{}, Check{Skip: "no gateway given", Err: errors.New("x")},
			sdk.VerdictSkip, "no gateway given", map[string]string{"family": "ipv4"}},
		{"request error", sdk.AgentSettings{EnableIPv4: true}, Check{Addr: a4, Err: fmt.Errorf("%w: mixed families", probe.ErrInvalid)},
			sdk.VerdictError, "invalid probe request: mixed families", map[string]string{"family": "ipv4", "error": "invalid"}},
		{"no address", sdk.AgentSettings{EnableIPv4: true}, Check{Run: fake(free, nil, nil, nil), Judge: judge},
			sdk.VerdictError, "invalid probe request: no address given", map[string]string{"family": "ipv4", "error": "invalid"}},
		{"IPv4 disabled", sdk.AgentSettings{EnableIPv6: true}, Check{Addr: a4, Run: fake(busy, nil, nil, nil), Judge: judge},
			sdk.VerdictSkip, "IPv4 is disabled on this node (enable_ipv4 = false)", map[string]string{"family": "ipv4"}},
		{"IPv6 disabled", sdk.AgentSettings{EnableIPv4: true}, Check{Addr: netip.MustParseAddr("fd00::7"), Run: fake(busy, nil, nil, nil), Judge: judge},
			sdk.VerdictSkip, "IPv6 is disabled on this node (enable_ipv6 = false)", map[string]string{"family": "ipv6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestKit(t, false)
			if err := k.Configure(sdk.ConfigureRequest{Agent: tt.agent}, nil); err != nil {
				t.Fatal(err)
			}
			got := k.Check(ctx, req, tt.check)
			if got.Verdict != tt.verdict || got.Reason != tt.reason {
				t.Fatalf("Check = %s %q, want %s %q", got.Verdict, got.Reason, tt.verdict, tt.reason)
			}
			if fmt.Sprint(got.Evidence) != fmt.Sprint(tt.evidence) {
				t.Errorf("evidence %v, want %v", got.Evidence, tt.evidence)
			}
			if got.Duration <= 0 {
				t.Errorf("duration %v", got.Duration)
			}
		})
	}
}

func TestKitPassesRequestAndParams(t *testing.T) {
	k := newTestKit(t, false)
	if err := k.Configure(sdk.ConfigureRequest{Config: raw(`window = "250ms"` + "\nretries = 0\nprobes = 5\n"),
		Agent: sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true}}, nil); err != nil {
		t.Fatal(err)
	}
	var tg probe.Target
	var p probe.Params
	req := sdk.CheckRequest{Interface: "eth1", Netns: "/proc/1/ns/net", Address: netip.MustParsePrefix("fd00::7/64")}
	k.Check(context.Background(), req, Check{Addr: req.Address.Addr(), Run: fake(probe.Result{Verdict: probe.Free}, nil, &tg, &p), Judge: judge})
	if tg != (probe.Target{Netns: "/proc/1/ns/net", Interface: "eth1", Addr: netip.MustParseAddr("fd00::7")}) {
		t.Errorf("target %+v", tg)
	}
	// retries = 0 in the config is no retries, not the engine's default.
	if p.Window != 250*time.Millisecond || p.Retries == nil || *p.Retries != 0 || p.Probes != 5 {
		t.Errorf("params %+v", p)
	}
}

func TestKitMetrics(t *testing.T) {
	ctx := context.Background()
	k := newTestKit(t, true)
	ss := k.Metrics(ctx)
	// Every known series exists from the start, at zero.
	if n := len(ss); n != 8+2+2+len(Reasons)+3+2 {
		t.Errorf("%d samples at start", n)
	}
	for _, s := range ss {
		if s.Value != 0 || len(s.Observations) != 0 {
			t.Errorf("%s%v starts at %v %v", s.Name, s.Labels, s.Value, s.Observations)
		}
		if s.Help == "" {
			t.Errorf("%s has no help", s.Name)
		}
	}
	a4 := netip.MustParseAddr("10.0.0.7")
	busy := probe.Result{Verdict: probe.Conflict, Responder: mac, RTT: 2 * time.Millisecond, ProbesSent: 1}
	free := probe.Result{Verdict: probe.Free, ProbesSent: 3, SendErrors: 2}
	req := sdk.CheckRequest{Interface: "eth0"}
	k.Check(ctx, req, Check{Addr: a4, Run: fake(busy, nil, nil, nil), Judge: judge})
	k.Check(ctx, req, Check{Addr: a4, Run: fake(free, nil, nil, nil), Judge: judge})
	k.Check(ctx, req, Check{Addr: a4, Run: fake(free, nil, nil, nil), Judge: judge})
	k.Check(ctx, req, Check{Addr: a4, Run: fake(probe.Result{ProbesSent: 1}, fmt.Errorf("x: %w", context.DeadlineExceeded), nil, nil), Judge: judge})
	k.Check(ctx, req, Check{Skip: "no gateway given"})

	ss = k.Metrics(ctx)
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"tk_checks_total", []string{"family", "ipv4", "verdict", "block"}, 1},
		{"tk_checks_total", []string{"family", "ipv4", "verdict", "pass"}, 2},
		{"tk_checks_total", []string{"family", "ipv4", "verdict", "error"}, 1},
		{"tk_checks_total", []string{"family", "ipv6", "verdict", "pass"}, 0},
		{"tk_checks_total", []string{"family", "unknown", "verdict", "skip"}, 1},
		{"tk_blocked_total", []string{"family", "ipv4"}, 1},
		{"tk_probes_sent_total", nil, 8},
		{"tk_send_errors_total", nil, 4},
		{"tk_errors_total", []string{"reason", "timeout"}, 1},
		{"tk_errors_total", []string{"reason", "send"}, 0},
		{"tk_sockets_open", nil, 0},
	} {
		if got := sdktest.FindSample(t, ss, c.name, c.kv...); got.Value != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got.Value, c.want)
		}
	}
	if obs := sdktest.FindSample(t, ss, "tk_check_duration_seconds").Observations; len(obs) != 5 {
		t.Errorf("check durations %v", obs)
	}
	if obs := sdktest.FindSample(t, ss, "tk_rtt_seconds").Observations; len(obs) != 1 || obs[0] != 0.002 {
		t.Errorf("rtts %v", obs)
	}
	// Summaries carry the observations since the last collection only;
	// counters stay cumulative.
	ss = k.Metrics(ctx)
	if obs := sdktest.FindSample(t, ss, "tk_check_duration_seconds").Observations; len(obs) != 0 {
		t.Errorf("second collection repeats durations %v", obs)
	}
	if got := sdktest.FindSample(t, ss, "tk_probes_sent_total").Value; got != 8 {
		t.Errorf("probes_sent_total fell to %v", got)
	}
	if d := k.Health(ctx).Detail.(HealthDetail); d.Checks != 5 {
		t.Errorf("health detail %+v", d)
	}
}

func TestKitNoRTTSummaryUnlessAsked(t *testing.T) {
	k := newTestKit(t, false)
	for _, s := range k.Metrics(context.Background()) {
		if strings.HasSuffix(s.Name, "rtt_seconds") {
			t.Errorf("unexpected %s", s.Name)
		}
	}
}

func TestKitConfigureKeepsEngineUnlessIdleTimeoutChanges(t *testing.T) {
	k := newTestKit(t, false)
	agent := sdk.AgentSettings{EnableIPv4: true}
	first := k.eng
	if err := k.Configure(sdk.ConfigureRequest{Config: raw(`window = "50ms"`), Agent: agent}, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.Configure(sdk.ConfigureRequest{Config: raw(`window = "50ms"`), Agent: agent}, nil); err != nil {
		t.Fatal(err)
	}
	if k.eng != first {
		t.Error("a reload that keeps idle_timeout replaced the engine")
	}
	if k.Options().Window != 50*time.Millisecond {
		t.Errorf("window %v", k.Options().Window)
	}
	// A bad reload changes nothing.
	if err := k.Configure(sdk.ConfigureRequest{Config: raw(`window = "0s"`), Agent: sdk.AgentSettings{}}, nil); err == nil {
		t.Fatal("window = 0s accepted")
	}
	if k.Options().Window != 50*time.Millisecond || !k.agent.EnableIPv4 {
		t.Error("a rejected reload changed the settings")
	}
	if err := k.Configure(sdk.ConfigureRequest{Config: raw(`idle_timeout = "5s"`), Agent: agent}, nil); err != nil {
		t.Fatal(err)
	}
	if k.eng == first {
		t.Error("a new idle_timeout kept the old engine")
	}
	// The old engine is closed once its checks end (none here).
	waitClosed(t, first.e)
}

func waitClosed(t *testing.T, e *probe.Engine) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.CheckConflict(context.Background(), probe.Target{Netns: "/proc/self/ns/net", Interface: "sp-no-such-if", Addr: netip.MustParseAddr("192.0.2.1")}, probe.Params{})
		if errors.Is(err, probe.ErrClosed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("old engine still open: %v", err)
		}
		time.Sleep(time.Millisecond) // polling a goroutine we do not own
	}
}

func TestKitShutdown(t *testing.T) {
	ctx := context.Background()
	k := newTestKit(t, false)
	if h := k.Health(ctx); h.State != sdk.HealthReady {
		t.Fatalf("health %+v", h)
	}
	if err := k.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if h := k.Health(ctx); h.State != sdk.HealthFailed || h.Message == "" {
		t.Errorf("health after shutdown %+v", h)
	}
	res := k.Check(ctx, sdk.CheckRequest{Interface: "eth0"}, Check{Addr: netip.MustParseAddr("10.0.0.7"),
		Run: fake(probe.Result{Verdict: probe.Free}, nil, nil, nil), Judge: judge})
	if res.Verdict != sdk.VerdictError || !strings.Contains(res.Reason, "closed") {
		t.Errorf("check after shutdown: %+v", res)
	}
	if err := k.Configure(sdk.ConfigureRequest{}, nil); err == nil {
		t.Error("Configure after Shutdown accepted")
	}
}
