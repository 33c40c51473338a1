package sdktest

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// detector is a small detector whose faults the test picks.
type detector struct {
	sdk.Base
	ignoreCtx bool // Check sleeps 3s whatever its context says
	plainErr  bool // Configure refuses with an error that has no position
	// kind is the block kind of its answer about blockedAddr.
	kind sdk.BlockKind
}

// blockedAddr is the address the test detector blocks at once.
var blockedAddr = netip.MustParsePrefix("192.0.2.99/32")

type cfg struct {
	Limit int `hcl:"limit,optional"`
}

func (d *detector) Info() sdk.Info {
	return sdk.Info{Name: "kit", Kind: sdk.KindDetector, Version: "1", APIVersion: sdk.APIVersion}
}
func (d *detector) ConfigSchema() sdk.Schema { return sdk.MustSchemaOf(&cfg{}) }
func (d *detector) ValidateConfig(ctx context.Context, req sdk.ConfigureRequest) error {
	return d.Configure(ctx, req) // it applies nothing anyway
}

func (d *detector) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var c cfg
	if err := req.Config.Decode(&c); err != nil {
		return err
	}
	if c.Limit < 0 {
		if d.plainErr {
			return errors.New("limit must not be negative")
		}
		return req.Config.AttrError("limit", "must not be negative")
	}
	return nil
}
func (d *detector) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	if req.Address == blockedAddr {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: d.kind, Reason: "reserved"}, nil
	}
	if d.ignoreCtx {
		time.Sleep(3 * time.Second)
	} else {
		<-ctx.Done() // slow, but it watches its context
	}
	return sdk.CheckResult{Verdict: sdk.VerdictError, Reason: "no answer in time"}, nil
}

// The kit's runs happen in a child process (this test binary again, with
// childEnv naming the plugin to run): a failing Run must fail its test,
// which the parent observes from outside. TestKit is both: the parent when
// childEnv is unset, the child when it is set.
const childEnv = "SDKTEST_CHILD"

func TestKit(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "good":
		Run(t, &detector{kind: sdk.BlockPolicy}, Options{BadConfig: "limit = -1", Blocked: []sdk.CheckRequest{{Interface: "lo", Address: blockedAddr}}})
		return
	case "kindless":
		Run(t, &detector{}, Options{BadConfig: "limit = -1", Blocked: []sdk.CheckRequest{{Interface: "lo", Address: blockedAddr}}})
		return
	case "ignores-ctx":
		Run(t, &detector{ignoreCtx: true}, Options{BadConfig: "limit = -1"})
		return
	case "plain-error":
		Run(t, &detector{plainErr: true}, Options{BadConfig: "limit = -1"})
		return
	case "bad-table":
		Run(t, &prefixDetector{}, Options{BadConfigs: []BadConfig{
			{Body: "max_prefix = 33", At: "1:14", Contains: "0 to 32"},
			{Body: `deny = ["10.0.0.0/8", "10.1.0.1/16"]`, At: "1:23"},
		}})
		return
	case "bad-table-wrong-place":
		Run(t, &prefixDetector{}, Options{BadConfigs: []BadConfig{{Body: "\nmax_prefix = 33", At: "1:14"}}})
		return
	case "bad-table-accepted":
		Run(t, &prefixDetector{}, Options{BadConfigs: []BadConfig{{Body: "max_prefix = 32"}}})
		return
	case "verdicts":
		Verdicts(t, &prefixDetector{}, VerdictTable{Config: `deny = ["10.1.0.0/16"]` + "\nmax_prefix = 30", Want: map[string]sdk.Verdict{
			"10.1.2.3/24": sdk.VerdictBlock, "10.2.0.1/24": sdk.VerdictPass, "10.2.0.1/31": sdk.VerdictBlock,
		}})
		return
	case "verdicts-wrong":
		Verdicts(t, &prefixDetector{}, VerdictTable{Config: `deny = ["10.1.0.0/16"]`, Want: map[string]sdk.Verdict{
			"10.1.2.3/24": sdk.VerdictPass,
		}})
		return
	}
	t.Run("a good plugin passes quietly", func(t *testing.T) {
		out, ok := child(t, "good")
		if !ok {
			t.Fatalf("a good plugin failed the kit:\n%s", out)
		}
		if strings.Contains(out, "[ERROR]") || strings.Contains(out, "[WARN]") {
			t.Errorf("a passing run logs:\n%s", out)
		}
	})
	// Each other child: whether the kit must pass it, and what its output
	// must say.
	tests := []struct {
		name, mode string
		pass       bool
		says       []string
	}{
		// The client gives up at the deadline whatever the plugin does; the
		// kit must see that the plugin's Check itself overran.
		{"a Check that ignores its context fails", "ignores-ctx", false, []string{"it must watch ctx"}},
		// IPAM acts on the kind: a block that does not say it fails the kit.
		{"a block without a kind fails", "kindless", false, []string{"FAIL: TestKit/blocks_carry_a_kind", `a block has kind "": set CheckResult.BlockKind`}},
		{"a table of bad configs refused where it says passes", "bad-table", true, nil},
		{"a bad config refused elsewhere fails", "bad-table-wrong-place", false, []string{"refused it at 2:14 of the body, want 1:14"}},
		{"a bad config accepted fails", "bad-table-accepted", false, []string{"ValidateConfig accepted or refused without a position"}},
		{"a verdict table that holds passes", "verdicts", true, nil},
		{"a verdict table that does not hold fails with the reason", "verdicts-wrong", false, []string{"10.1.2.3/24 on lo: block (10.1.2.3 is in 10.1.0.0/16), want pass"}},
		{"a refusal without a position fails", "plain-error", false, []string{"Configure(bad config)", "want a *sdk.ConfigError"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := child(t, tt.mode)
			if ok != tt.pass {
				t.Fatalf("the kit's run of %s passed = %v, want %v:\n%s", tt.mode, ok, tt.pass, out)
			}
			for _, s := range tt.says {
				if !strings.Contains(out, s) {
					t.Errorf("the kit's run of %s does not say %q:\n%s", tt.mode, s, out)
				}
			}
		})
	}
}

// prefixDetector blocks addresses inside its deny prefixes or with a longer
// prefix than max_prefix: a config with a list and a ranged integer.
type prefixDetector struct {
	sdk.Base
	cfg prefixConfig
}

type prefixConfig struct {
	Deny      []netip.Prefix `hcl:"deny,optional"`
	MaxPrefix int            `hcl:"max_prefix,optional" min:"0" max:"32"`
}

func (d *prefixDetector) Info() sdk.Info {
	return sdk.Info{Name: "prefix", Kind: sdk.KindDetector, Version: "1", APIVersion: sdk.APIVersion}
}
func (d *prefixDetector) ConfigSchema() sdk.Schema {
	return sdk.MustSchemaOf(&prefixConfig{MaxPrefix: 32})
}
func (d *prefixDetector) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	c := prefixConfig{MaxPrefix: 32}
	if err := req.Config.Decode(&c); err != nil {
		return err
	}
	d.cfg = c
	return nil
}
func (d *prefixDetector) Check(_ context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	for _, p := range d.cfg.Deny {
		if p.Contains(req.Address.Addr()) {
			return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: req.Address.Addr().String() + " is in " + p.String()}, nil
		}
	}
	if req.Address.Bits() > d.cfg.MaxPrefix {
		return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: "prefix too long"}, nil
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass}, nil
}

func child(t *testing.T, mode string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("child: %v", err)
	}
	return string(out), err == nil
}
