package sdk_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

type limits struct {
	Limit int      `hcl:"limit,optional" min:"1" max:"64" help:"how many"`
	Names []string `hcl:"names,optional"`
	// even is derived by the check, not an attribute.
	even bool
}

// limited is a detector whose only config code is its Configured fields.
type limited struct {
	sdk.Configured[limits]
}

var _ sdk.Validator = (*limited)(nil)

func newLimited() *limited {
	return &limited{Configured: sdk.Configured[limits]{
		Defaults: limits{Limit: 8, Names: []string{"a"}},
		Check: func(raw sdk.RawConfig, cfg *limits) error {
			if cfg.Limit == 13 {
				return raw.AttrError("limit", "13 is unlucky")
			}
			cfg.even = cfg.Limit%2 == 0
			return nil
		},
	}}
}

func (*limited) Info() sdk.Info {
	return sdk.Info{Name: "limited", Kind: sdk.KindDetector, Version: "1.0.0", APIVersion: sdk.APIVersion,
		Description: "passes every address"}
}

func (l *limited) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("limit %d", l.Config().Limit)}, ctx.Err()
}

func configure(t *testing.T, p *limited, body string) error {
	t.Helper()
	return p.Configure(context.Background(), sdk.ConfigureRequest{Config: sdk.RawConfig{Filename: "agent.hcl", Body: []byte(body)}})
}

// The kit's conformance run passes a plugin that has no config code of its
// own: schema, dry run and Configure agree, and bad values are positioned.
func TestConfiguredConforms(t *testing.T) {
	sdktest.Run(t, newLimited(), sdktest.Options{
		GoodConfig: "limit = 4\n",
		BadConfigs: []sdktest.BadConfig{
			{Body: "limit = 65", At: "1:9", Contains: "1 to 64"},
			{Body: "names = []\nlimit = 13", At: "2:9", Contains: "unlucky"},
		},
	})
}

func TestConfiguredKeepsTheBlockInForce(t *testing.T) {
	p := newLimited()
	if got := p.Config(); got.Limit != 8 || len(got.Names) != 1 {
		t.Fatalf("before Configure, Config = %+v, want the defaults", got)
	}
	if err := configure(t, p, "limit = 6\n"); err != nil {
		t.Fatal(err)
	}
	got := p.Config()
	if got.Limit != 6 || !got.even || len(got.Names) != 1 || got.Names[0] != "a" {
		t.Fatalf("Config = %+v, want limit 6, even (the check's), names defaulted", got)
	}
	// A refused block changes nothing, whether the decoder or the check
	// refuses it.
	for _, body := range []string{"limit = 13\n", "limit = 0\n", "limit = \n"} {
		err := configure(t, p, body)
		if err == nil || !strings.Contains(err.Error(), "agent.hcl:1:") {
			t.Fatalf("Configure(%q) = %v, want an error at agent.hcl:1", body, err)
		}
		if got := p.Config(); got.Limit != 6 {
			t.Fatalf("after the refused %q, Config = %+v, want limit 6 still", body, got)
		}
	}
	// Decoding a list replaces the default, never appends to it or shares it.
	if err := configure(t, p, "names = [\"x\", \"y\"]\n"); err != nil {
		t.Fatal(err)
	}
	if got := p.Config(); len(got.Names) != 2 || got.Limit != 8 || len(p.Defaults.Names) != 1 {
		t.Fatalf("Config = %+v with Defaults %+v, want names [x y], limit 8 again, defaults untouched", got, p.Defaults)
	}
}

func TestConfiguredSchemaShowsTheDefaults(t *testing.T) {
	s := newLimited().ConfigSchema()
	if len(s.Attributes) != 2 {
		t.Fatalf("schema = %+v, want limit and names", s)
	}
	for _, a := range s.Attributes {
		if a.Name == "limit" && a.Default != "8" {
			t.Fatalf("limit's default = %q, want 8", a.Default)
		}
	}
}
