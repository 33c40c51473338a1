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
	// The client gives up at the deadline whatever the plugin does; the
	// kit must see that the plugin's Check itself overran.
	t.Run("a Check that ignores its context fails", func(t *testing.T) {
		out, ok := child(t, "ignores-ctx")
		if ok || !strings.Contains(out, "it must watch ctx") {
			t.Errorf("a Check that sleeps through its deadline passed the kit:\n%s", out)
		}
	})
	// IPAM acts on the kind: a block that does not say it fails the kit.
	t.Run("a block without a kind fails", func(t *testing.T) {
		out, ok := child(t, "kindless")
		if ok || !strings.Contains(out, "FAIL: TestKit/blocks_carry_a_kind") || !strings.Contains(out, `a block has kind "": set CheckResult.BlockKind`) {
			t.Errorf("a block without a kind passed the kit:\n%s", out)
		}
	})
	t.Run("a refusal without a position fails", func(t *testing.T) {
		out, ok := child(t, "plain-error")
		if ok || !strings.Contains(out, "Configure(bad config)") || !strings.Contains(out, "want a *sdk.ConfigError") {
			t.Errorf("a refusal without a position passed the kit:\n%s", out)
		}
	})
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
