// Package sdktest is the conformance kit for spiderpool-agent plugins. Call
// Run from a plain `go test` in your plugin's package: it serves the plugin
// in process over real gRPC (go-plugin's test/reattach mode), connects to it
// as the agent would, and checks that it keeps the contract: complete info,
// a schema that survives the wire, a good config accepted and a bad one
// refused with file:line:column by both ValidateConfig and Configure, a
// Check that returns by its context's deadline on the plugin's side, blocks
// that say what they mean (sdk.BlockKind), well formed health and metrics,
// and a Shutdown that returns.
//
// The kit is quiet when all is well: the plugin's and go-plugin's log lines
// are shown only when a test fails.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Options tunes the conformance run to the plugin under test.
type Options struct {
	// GoodConfig is a config { } body the plugin must accept. Empty is fine
	// for a plugin whose attributes are all optional.
	GoodConfig string
	// BadConfig is a body the plugin must reject with a position. The
	// default sets an attribute no plugin has.
	BadConfig string
	// Check is the request used to test that Check honours its deadline.
	// The default asks about 192.0.2.1/32 (TEST-NET-1) on "lo".
	Check *sdk.CheckRequest
	// Blocked are requests the detector blocks under GoodConfig, one per
	// kind of block it gives: each must be answered block with a kind of
	// sdk.BlockKinds, which is what the agent's IPAM acts on. Every other
	// answer the kit sees must be well formed too (a block with a kind, no
	// kind on any other verdict).
	Blocked []sdk.CheckRequest
	// CheckDeadline bounds that Check; the default is 300ms. The plugin's
	// Check must return within CheckDeadline plus CheckSlack of the call,
	// measured inside the plugin process, not at the client (which gives
	// up at the deadline whatever the plugin does).
	CheckDeadline time.Duration
	// CheckSlack is the time a Check may take past its deadline to notice
	// it and return; the default is 250ms, room for a loaded machine.
	CheckSlack time.Duration
	// Agent settings sent with every Configure; the default enables both
	// families.
	Agent *sdk.AgentSettings
}

// Start serves p in process and returns a client connected to it over gRPC.
// The server stops when the test ends.
func Start(t testing.TB, p sdk.Plugin) *sdk.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	out := &heldLog{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "sdktest", Level: hclog.Warn, Output: out})
	t.Cleanup(func() { out.flush(t) }) // runs last: after the server is gone
	go plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(p, logger),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           logger,
		Test:             &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed},
	})
	var rc *plugin.ReattachConfig
	select {
	case rc = <-reattach:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sdktest: the plugin did not start serving within 10s")
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		// Reattaching skips negotiation, so name the plugin set directly.
		Plugins:          sdk.VersionedPlugins(nil, nil)[sdk.ProtocolVersion],
		Reattach:         rc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	})
	t.Cleanup(func() {
		client.Kill()
		cancel()
		<-closed
	})
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("sdktest: connect to the plugin: %v", err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("sdktest: dispense: %v", err)
	}
	return raw.(*sdk.Client)
}

// Logger returns a logger for the plugin under test that, like the kit,
// shows its lines only when the test fails.
func Logger(t testing.TB) sdk.Logger {
	out := &heldLog{}
	t.Cleanup(func() { out.flush(t) })
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Debug, Output: out})
}

// heldLog keeps log lines and shows them only when the test failed: a
// passing run prints nothing (go-plugin logs an ERROR when its test server's
// listener closes, which is how every run ends).
type heldLog struct {
	mu    sync.Mutex
	lines []string
}

func (h *heldLog) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lines) < 1000 {
		h.lines = append(h.lines, strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (h *heldLog) flush(t testing.TB) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !t.Failed() {
		return
	}
	for _, l := range h.lines {
		t.Log(l)
	}
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	metricRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	labelRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

var validTypes = map[string]bool{
	sdk.TypeString: true, sdk.TypeNumber: true, sdk.TypeInteger: true, sdk.TypeBool: true,
	sdk.TypeDuration: true, sdk.TypeStringList: true, sdk.TypeStringMap: true,
}

// Run checks p against the plugin contract, each part a subtest.
func Run(t *testing.T, p sdk.Plugin, opts Options) {
	if opts.BadConfig == "" {
		opts.BadConfig = "sdktest_no_such_attribute = 1\n"
	}
	if opts.CheckDeadline == 0 {
		opts.CheckDeadline = 300 * time.Millisecond
	}
	if opts.CheckSlack == 0 {
		opts.CheckSlack = 250 * time.Millisecond
	}
	if opts.Agent == nil {
		opts.Agent = &sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}
	}
	served := p
	var timer *checkTimer
	if d, ok := p.(sdk.Detector); ok {
		timer = &checkTimer{Detector: d, returned: make(chan time.Duration, 1)}
		served = timer
	}
	c := Start(t, served)
	ctx := context.Background()

	var info sdk.Info
	t.Run("info is complete", func(t *testing.T) {
		var err error
		info, err = c.Info(ctx)
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if !nameRE.MatchString(info.Name) {
			t.Errorf("name %q must match %s", info.Name, nameRE)
		}
		if info.Version == "" {
			t.Error("version is empty")
		}
		if err := sdk.CheckAPIVersion(sdk.APIVersion, info.APIVersion); err != nil {
			t.Errorf("api version: %v", err)
		}
		switch info.Kind {
		case sdk.KindDetector:
			if _, ok := p.(sdk.Detector); !ok {
				t.Error("kind is detector but the plugin does not implement sdk.Detector")
			}
		case sdk.KindTuner:
			if _, ok := p.(sdk.Tuner); !ok {
				t.Error("kind is tuner but the plugin does not implement sdk.Tuner")
			}
		default:
			t.Errorf("kind %q is neither detector nor tuner", info.Kind)
		}
	})

	t.Run("schema round trips", func(t *testing.T) {
		got, err := c.ConfigSchema(ctx)
		if err != nil {
			t.Fatalf("ConfigSchema: %v", err)
		}
		want := p.ConfigSchema()
		if len(got.Attributes) != len(want.Attributes) {
			t.Fatalf("schema has %d attributes over gRPC, %d in process", len(got.Attributes), len(want.Attributes))
		}
		seen := map[string]bool{}
		for i, a := range got.Attributes {
			if a != want.Attributes[i] {
				t.Errorf("attribute %d: %+v over gRPC, %+v in process", i, a, want.Attributes[i])
			}
			if !labelRE.MatchString(a.Name) || seen[a.Name] {
				t.Errorf("attribute name %q is not snake_case or is repeated", a.Name)
			}
			seen[a.Name] = true
			if !validTypes[a.Type] {
				t.Errorf("attribute %q has unknown type %q", a.Name, a.Type)
			}
		}
	})

	t.Run("good config is accepted", func(t *testing.T) {
		if err := c.ValidateConfig(ctx, sdk.ConfigureRequest{Config: raw(opts.GoodConfig), Agent: *opts.Agent}); err != nil {
			t.Fatalf("ValidateConfig(good config): %v", err)
		}
		err := c.Configure(ctx, sdk.ConfigureRequest{Config: raw(opts.GoodConfig), Agent: *opts.Agent})
		if err != nil {
			t.Fatalf("Configure(good config): %v", err)
		}
		// Configure is idempotent: the same block again must be accepted.
		if err := c.Configure(ctx, sdk.ConfigureRequest{Config: raw(opts.GoodConfig), Agent: *opts.Agent}); err != nil {
			t.Fatalf("second Configure(good config): %v", err)
		}
	})

	t.Run("bad config is rejected with a position", func(t *testing.T) {
		// The dry run first: a reload is refused as a whole only when
		// ValidateConfig finds what Configure would refuse.
		requirePositioned(t, "ValidateConfig(bad config)", c.ValidateConfig(ctx, sdk.ConfigureRequest{Config: raw(opts.BadConfig), Agent: *opts.Agent}))
		requirePositioned(t, "Configure(bad config)", c.Configure(ctx, sdk.ConfigureRequest{Config: raw(opts.BadConfig), Agent: *opts.Agent}))
		// The plugin must still work with its good config afterwards.
		if err := c.Configure(ctx, sdk.ConfigureRequest{Config: raw(opts.GoodConfig), Agent: *opts.Agent}); err != nil {
			t.Fatalf("Configure(good config) after a bad one: %v", err)
		}
	})

	if info.Kind == sdk.KindDetector {
		t.Run("check honours its deadline", func(t *testing.T) {
			req := sdk.CheckRequest{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.1/32")}
			if opts.Check != nil {
				req = *opts.Check
			}
			cctx, cancel := context.WithTimeout(ctx, opts.CheckDeadline)
			defer cancel()
			res, err := c.Check(cctx, req)
			// The client gives up at the deadline whatever the plugin does:
			// what counts is when the plugin's Check returned.
			limit := opts.CheckDeadline + opts.CheckSlack
			select {
			case took := <-timer.returned:
				if took > limit {
					t.Errorf("Check returned %v after it was called, with a deadline of %v: it must watch ctx", took, opts.CheckDeadline)
				}
			case <-time.After(limit + time.Second):
				t.Fatalf("Check has not returned %v after its deadline of %v: it must watch ctx; every call that ignores it leaks a goroutine in the plugin", limit+time.Second-opts.CheckDeadline, opts.CheckDeadline)
			}
			if err == nil {
				checkVerdict(t, res)
			}
		})
		if len(opts.Blocked) > 0 {
			t.Run("blocks carry a kind", func(t *testing.T) {
				for _, req := range opts.Blocked {
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					res, err := c.Check(cctx, req)
					cancel()
					if err != nil {
						t.Errorf("Check(%s on %s): %v", req.Address, req.Interface, err)
						continue
					}
					if res.Verdict != sdk.VerdictBlock {
						t.Errorf("Check(%s on %s) = %q (%s), want a block (Options.Blocked)", req.Address, req.Interface, res.Verdict, res.Reason)
						continue
					}
					checkVerdict(t, res)
				}
			})
		}
	}

	if info.Kind == sdk.KindTuner {
		t.Run("tuner reports valid key states", func(t *testing.T) {
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			for _, k := range st.Keys {
				switch k.State {
				case "applied", "unchanged", "unsupported", "failed":
				default:
					t.Errorf("key %q has state %q", k.Key, k.State)
				}
				if k.State == "failed" && k.Error == "" {
					t.Errorf("key %q failed without an error", k.Key)
				}
			}
		})
	}

	t.Run("health is well formed", func(t *testing.T) {
		h, err := c.Health(ctx)
		if err != nil {
			t.Fatalf("Health: %v", err)
		}
		switch h.State {
		case sdk.HealthReady, sdk.HealthDegraded, sdk.HealthFailed:
		default:
			t.Errorf("health state %q", h.State)
		}
		if h.State != sdk.HealthReady && h.Message == "" {
			t.Errorf("health %q comes without a message", h.State)
		}
		if d, ok := h.Detail.(json.RawMessage); ok && !json.Valid(d) {
			t.Errorf("health detail is not valid JSON: %s", d)
		}
	})

	t.Run("metrics are well formed", func(t *testing.T) {
		samples, err := c.Metrics(ctx)
		if err != nil {
			t.Fatalf("Metrics: %v", err)
		}
		for _, s := range samples {
			checkSample(t, s)
		}
	})

	t.Run("shutdown returns", func(t *testing.T) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Shutdown(sctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

// checkVerdict checks one answer of a detector: a known verdict, a reason
// unless it passed, and a block kind exactly on blocks. A block without a
// kind still works (the agent takes it as sdk.BlockFail, as it took every
// block of a plugin older than API 1.2), but a current plugin says what
// its block means, or IPAM cannot quarantine, skip or stop as it should.
func checkVerdict(t *testing.T, res sdk.CheckResult) {
	t.Helper()
	switch res.Verdict {
	case sdk.VerdictPass, sdk.VerdictBlock, sdk.VerdictSkip, sdk.VerdictError:
	default:
		t.Errorf("verdict %q is not one of pass, block, skip, error", res.Verdict)
	}
	if res.Verdict != sdk.VerdictPass && res.Reason == "" {
		t.Errorf("verdict %q comes without a reason", res.Verdict)
	}
	switch {
	case res.Verdict == sdk.VerdictBlock && !slices.Contains(sdk.BlockKinds, res.BlockKind):
		t.Errorf("a block has kind %q: set CheckResult.BlockKind to one of %s (%q)", res.BlockKind, kindList(), res.Reason)
	case res.Verdict != sdk.VerdictBlock && res.BlockKind != sdk.BlockUnspecified:
		t.Errorf("verdict %q carries block kind %q: a kind belongs on blocks only", res.Verdict, res.BlockKind)
	}
}

func kindList() string {
	var out []string
	for _, k := range sdk.BlockKinds {
		out = append(out, string(k))
	}
	return strings.Join(out, ", ")
}

// checkTimer serves a detector and reports how long each Check took inside
// the plugin process.
type checkTimer struct {
	sdk.Detector
	returned chan time.Duration
}

func (c *checkTimer) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	start := time.Now()
	defer func() {
		select {
		case c.returned <- time.Since(start):
		default:
		}
	}()
	return c.Detector.Check(ctx, req)
}

// ValidateConfig forwards the dry run as the plugin itself would serve it.
func (c *checkTimer) ValidateConfig(ctx context.Context, req sdk.ConfigureRequest) error {
	return sdk.ValidateWith(ctx, c.Detector, req)
}

func requirePositioned(t *testing.T, what string, err error) {
	t.Helper()
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%s = %v, want a *sdk.ConfigError (return RawConfig.Decode's error, or RawConfig.AttrError for a value that parses but is wrong)", what, err)
	}
	for _, d := range ce.Diagnostics {
		if d.Subject == nil || d.Subject.Filename != "sdktest.hcl" || d.Subject.Start.Line < 10 {
			t.Errorf("%s: diagnostic %q does not point into sdktest.hcl at line 10 or later: %+v", what, d.Summary, d.Subject)
		}
	}
	if !strings.HasPrefix(err.Error(), "sdktest.hcl:") {
		t.Errorf("%s: error %q does not start with file:line:col", what, err)
	}
}

func checkSample(t *testing.T, s sdk.Sample) {
	t.Helper()
	if !metricRE.MatchString(s.Name) {
		t.Errorf("metric %q is not snake_case", s.Name)
	}
	if strings.HasPrefix(s.Name, "spiderpool_") {
		t.Errorf("metric %q carries the spiderpool_ prefix; the agent adds it", s.Name)
	}
	switch s.Type {
	case sdk.Counter:
		if !strings.HasSuffix(s.Name, "_total") {
			t.Errorf("counter %q must end in _total", s.Name)
		}
		if s.Value < 0 {
			t.Errorf("counter %q is negative", s.Name)
		}
	case sdk.Gauge, sdk.Summary:
		if strings.HasSuffix(s.Name, "_total") {
			t.Errorf("%s %q must not end in _total", s.Type, s.Name)
		}
	default:
		t.Errorf("metric %q has type %q", s.Name, s.Type)
	}
	if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
		t.Errorf("metric %q has value %v", s.Name, s.Value)
	}
	for k := range s.Labels {
		if !labelRE.MatchString(k) {
			t.Errorf("metric %q has label %q", s.Name, k)
		}
	}
}

func raw(body string) sdk.RawConfig {
	return sdk.RawConfig{Filename: "sdktest.hcl", Body: []byte(body), Start: hclPos(10)}
}
