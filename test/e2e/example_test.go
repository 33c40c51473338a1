package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// config.hcl.example must list every option of every built-in plugin at its
// default, and pass `config validate` against the real plugins.
func TestExampleConfigIsCompleteAndValid(t *testing.T) {
	example := filepath.Join("..", "..", "config.hcl.example")
	cfg, err := config.Load(config.LoadOptions{ConfigDir: example})
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.NewNullLogger()
	schemas := map[string]sdk.Schema{
		"sysctl-tuner":     sysctltuner.New(log).ConfigSchema(),
		"ip-conflict":      ipconflict.New(log).ConfigSchema(),
		"gateway-detector": gatewaydetector.New(log).ConfigSchema(),
	}
	for name, schema := range schemas {
		body, diags := cfg.Plugin(name).Config.Parse()
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		attrs, diags := body.JustAttributes()
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		for _, a := range schema.Attributes {
			attr, ok := attrs[a.Name]
			if !ok {
				t.Errorf("config.hcl.example: plugin %q lacks %s (default %s)", name, a.Name, a.Default)
				continue
			}
			got, _ := attr.Expr.Value(nil)
			if !sameHCL(t, got, a.Default) {
				t.Errorf("config.hcl.example: plugin %q %s = %s, the plugin's default is %q", name, a.Name, got.GoString(), a.Default)
			}
		}
	}
	env := append(os.Environ(), "SPIDERPOOL_PLUGIN_DIR="+bins.PluginDir)
	out, errOut, code := agenttest.RunCLIEnv(bins, env, "config", "validate", "--config-dir", example)
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Errorf("config validate on the example: exit %d\n%s%s", code, out, errOut)
	}
}

// sameHCL compares a value with a default rendered as HCL (empty: the
// zero value of its type).
func sameHCL(t *testing.T, got cty.Value, def string) bool {
	t.Helper()
	if def == "" {
		switch {
		case got.Type() == cty.String:
			return got.AsString() == ""
		case got.Type() == cty.Bool:
			return got.False()
		case got.Type() == cty.Number:
			return got.Equals(cty.Zero).True()
		case got.Type().IsTupleType() || got.Type().IsObjectType():
			return got.LengthInt() == 0
		}
		return false
	}
	want, diags := sdk.RawConfig{Filename: "default", Body: []byte("v = " + def)}.Parse()
	if diags.HasErrors() {
		t.Fatalf("default %q: %v", def, diags)
	}
	attrs, _ := want.JustAttributes()
	wv, _ := attrs["v"].Expr.Value(nil)
	return got.Equals(wv).True()
}
