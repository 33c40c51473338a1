package e2e

import (
	"os"
	"os/exec"
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

// A newcomer validates config.hcl.example against the plugins of a
// checkout's build, wherever that checkout is (here below /tmp, which the
// daemon refuses): --plugin-dir, relative to where the command runs, names
// the binaries, which run; that the daemon would refuse them is a warning,
// once per plugin.
func TestExampleConfigValidatesAgainstACheckoutsBuild(t *testing.T) {
	example, err := filepath.Abs(filepath.Join("..", "..", "config.hcl.example"))
	if err != nil {
		t.Fatal(err)
	}
	checkout := t.TempDir()
	plugins := filepath.Join(checkout, "bin", "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	// The built-ins' set, as `make build` leaves it.
	copyBinary(t, bins.Agent, filepath.Join(plugins, "spiderpool-plugins"))
	cmd := exec.Command(bins.Agent, "config", "validate", "--config-dir", example, "--plugin-dir", "bin/plugins")
	cmd.Dir = checkout
	cmd.Env = agenttest.CleanEnv()
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil || !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("config validate --plugin-dir bin/plugins: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, name := range []string{"ip-conflict", "gateway-detector", "sysctl-tuner"} {
		line := "warning: plugin \"" + name + "\": the daemon would refuse to run it: "
		if n := strings.Count(errOut.String(), line); n != 1 {
			t.Errorf("%q said %d times, want once:\n%s", line, n, errOut.String())
		}
	}
	if !strings.Contains(errOut.String(), "is writable by group or others") {
		t.Errorf("the warning does not say why:\n%s", errOut.String())
	}
}
