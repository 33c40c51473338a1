package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// TestRawConfig checks the extraction of a plugin's config block: the bytes
// strictly between the braces, the position after the opening brace, and
// that decoding it with the SDK names positions in the original file.
func TestRawConfig(t *testing.T) {
	src := "# agent\n" + // line 1
		"plugin \"ip-conflict\" {\n" + // line 2
		"  timeout = \"1s\"\n" + // line 3
		"  config {\n" + // line 4, "{" at column 10
		"    window  = \"250ms\"\n" + // line 5
		"    retries = 7\n" + // line 6
		"    bogus   = true\n" + // line 7
		"    set = { \"a.b\" = \"1\" }\n" + // line 8: braces inside the block
		"  }\n" + // line 9
		"}\n"
	dir := writeDir(t, map[string]string{"a.hcl": src})
	path := filepath.Join(dir, "a.hcl")
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	raw := c.Plugin("ip-conflict").Config

	open := strings.Index(src, "config {") + len("config {")
	close := strings.Index(src, "  }\n}") + len("  ")
	if got, want := string(raw.Body), src[open:close]; got != want {
		t.Fatalf("Body = %q, want %q", got, want)
	}
	if raw.Filename != path {
		t.Errorf("Filename = %q, want %q", raw.Filename, path)
	}
	if want := (hcl.Pos{Line: 4, Column: 11, Byte: open}); raw.Start != want {
		t.Errorf("Start = %+v, want %+v", raw.Start, want)
	}

	// Re-parsing gives positions in the original file.
	body, diags := raw.Parse()
	if diags.HasErrors() {
		t.Fatalf("Parse: %v", diags)
	}
	attrs, diags := body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("JustAttributes: %v", diags)
	}
	for name, pos := range map[string]hcl.Pos{
		"window":  {Line: 5, Column: 5, Byte: strings.Index(src, "window")},
		"retries": {Line: 6, Column: 5, Byte: strings.Index(src, "retries")},
		"bogus":   {Line: 7, Column: 5, Byte: strings.Index(src, "bogus")},
	} {
		a := attrs[name]
		if a == nil {
			t.Errorf("attribute %s missing", name)
			continue
		}
		if a.Range.Filename != path || a.Range.Start != pos {
			t.Errorf("%s at %s:%+v, want %s:%+v", name, a.Range.Filename, a.Range.Start, path, pos)
		}
	}

	// Decoding against a plugin's schema: an unknown attribute names the
	// operator's file, line and column.
	type probeConfig struct {
		Window  time.Duration     `hcl:"window,optional"`
		Retries int               `hcl:"retries,optional"`
		Set     map[string]string `hcl:"set,optional"`
	}
	var pc probeConfig
	err := raw.Decode(&pc)
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Decode error = %v, want a *sdk.ConfigError", err)
	}
	wantContains(t, err.Error(), path+":7:5: Unsupported argument")

	// Without the bogus attribute it decodes.
	fixed := strings.Replace(src, "    bogus   = true\n", "", 1)
	if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	raw = mustLoad(t, LoadOptions{ConfigDir: dir}).Plugin("ip-conflict").Config
	pc = probeConfig{}
	if err := raw.Decode(&pc); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := (probeConfig{Window: 250 * time.Millisecond, Retries: 7, Set: map[string]string{"a.b": "1"}}); !reflect.DeepEqual(pc, want) {
		t.Errorf("decoded %+v, want %+v", pc, want)
	}
	err = raw.Validate(sdk.Schema{Attributes: []sdk.Attribute{{Name: "window", Type: sdk.TypeNumber}, {Name: "retries", Type: sdk.TypeNumber}, {Name: "set", Type: sdk.TypeStringMap}}})
	wantContains(t, err.Error(), path+":5:15: Invalid value for \"window\"")
}

func TestRawConfigShapes(t *testing.T) {
	tests := []struct {
		name, hcl string
		body      string
		start     hcl.Pos
	}{
		{"empty", "plugin \"x\" {\n  config {}\n}\n", "", hcl.Pos{Line: 2, Column: 11, Byte: 23}},
		{"empty lines", "plugin \"x\" {\n  config {\n  }\n}\n", "\n  ", hcl.Pos{Line: 2, Column: 11, Byte: 23}},
		{"one line", "plugin \"x\" {\n  config { a = 1 }\n}\n", " a = 1 ", hcl.Pos{Line: 2, Column: 11, Byte: 23}},
		{"comments kept", "plugin \"x\" {\n  config {\n    # note }\n    a = \"}\"\n  }\n}\n", "\n    # note }\n    a = \"}\"\n  ", hcl.Pos{Line: 2, Column: 11, Byte: 23}},
		{"unicode before", "# é ü\nplugin \"x\" {\n  config {\n  a = 1\n  }\n}\n", "\n  a = 1\n  ", hcl.Pos{Line: 3, Column: 11, Byte: 31}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"a.hcl": tt.hcl})})
			raw := c.Plugin("x").Config
			if string(raw.Body) != tt.body || raw.Start != tt.start {
				t.Errorf("Body %q Start %+v, want %q %+v", raw.Body, raw.Start, tt.body, tt.start)
			}
			if string([]byte(tt.hcl)[raw.Start.Byte:raw.Start.Byte+len(raw.Body)]) != tt.body {
				t.Errorf("Start.Byte does not point at the body")
			}
			if _, diags := raw.Parse(); diags.HasErrors() {
				t.Errorf("Parse: %v", diags)
			}
		})
	}
}

// TestExample loads config.hcl.example: it must load without error, set
// every option, and its values must be the defaults.
func TestExample(t *testing.T) {
	path := filepath.Join("..", "..", "config.hcl.example")
	c := mustLoad(t, LoadOptions{ConfigDir: path})
	def := Default().Settings()
	got := c.Settings()
	if len(got) != len(def) {
		t.Fatalf("the example has %d settings, the defaults %d", len(got), len(def))
	}
	for i, s := range got {
		// Plugin config blocks are the plugins' business: test/e2e checks
		// the example's blocks against the schemas the plugins report.
		pluginBlock := strings.HasSuffix(s.Key, ".config")
		if s.Key != def[i].Key || (s.Value != def[i].Value && !pluginBlock) {
			t.Errorf("example %s = %q, default %q", s.Key, s.Value, def[i].Value)
		}
		optional := strings.HasSuffix(s.Key, ".config") || strings.HasSuffix(s.Key, ".path") || strings.HasSuffix(s.Key, ".checksum") || strings.HasSuffix(s.Key, ".component") ||
			// failure_policy is about checks: it means nothing for a tuner.
			s.Key == "plugin.sysctl-tuner.failure_policy"
		if s.Source.Kind != KindFile && !optional {
			t.Errorf("the example does not set %s", s.Key)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	// Every variable and conf.yml key is documented.
	for _, e := range EnvVars() {
		wantContains(t, text, "env "+e.Name)
	}
	for _, k := range []string{"tuneSysctlConfig", "enableIPConflictDetection", "enableGatewayDetection", "enableIPv4", "enableIPv6", "ipamUnixSocketPath"} {
		wantContains(t, text, "conf.yml "+k)
	}
	for _, opt := range []string{"reconcile_interval", "proc_sys_root", "set = {", "drop = [", "window = \"100ms\"", "retries = 3", "probes = 3"} {
		wantContains(t, text, opt)
	}
}

// FuzzLoadHCL: no HCL input may panic Load.
func FuzzLoadHCL(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("..", "..", "config.hcl.example")); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"health_port = 5710\n",
		"helth_port = 1\n",
		"metrics {\n port = 1\n}\n",
		"plugin \"x\" {\n config {\n a = 1\n }\n}\n",
		"plugin \"x\" {\n config { a = 1 }\n}\n",
		"plugin \"x\" {\n timeout = null\n checksum = 1\n}\n",
		"log_level = [for x in [1] : x]\n",
		"health_port = 1e100\n",
		"health_port = -0\n",
		"plugin \"\" {}\n",
		"plugin {}\n",
		"ipam {\n max_allocated_ips = \"5\"\n}\n",
		"shutdown_timeout = {a = 1}\n",
		"enable_ipv4 = upper(\"x\")\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "a.hcl"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(LoadOptions{ConfigDir: dir})
		if err == nil {
			_ = c.Settings()
			for _, p := range c.Plugins {
				_, _ = p.Config.Parse()
			}
		} else if _, ok := err.(*Error); !ok {
			t.Fatalf("error %T, want *Error", err)
		}
	})
}
