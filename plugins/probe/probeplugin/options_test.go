//go:build linux

package probeplugin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Options)
		attr string // "" = valid
		msg  string
	}{
		{"defaults", func(*Options) {}, "", ""},
		{"window at the maximum", func(o *Options) { o.Window = 10 * time.Second }, "", ""},
		{"window one nanosecond", func(o *Options) { o.Window = 1 }, "", ""},
		{"window zero", func(o *Options) { o.Window = 0 }, "window", `"0s" is out of range`},
		{"window too long", func(o *Options) { o.Window = 11 * time.Second }, "window", "at most 10s"},
		{"no retries", func(o *Options) { o.Retries = 0 }, "", ""},
		{"ten retries", func(o *Options) { o.Retries = 10 }, "", ""},
		{"negative retries", func(o *Options) { o.Retries = -1 }, "retries", "0 to 10"},
		{"eleven retries", func(o *Options) { o.Retries = 11 }, "retries", "11 is out of range"},
		{"one probe", func(o *Options) { o.Probes = 1 }, "", ""},
		{"zero probes", func(o *Options) { o.Probes = 0 }, "probes", "1 to 10"},
		{"eleven probes", func(o *Options) { o.Probes = 11 }, "probes", "11 is out of range"},
		{"idle zero", func(o *Options) { o.IdleTimeout = 0 }, "", ""},
		{"idle negative", func(o *Options) { o.IdleTimeout = -time.Second }, "idle_timeout", "negative"},
		{"rate zero", func(o *Options) { o.ProbeRate = 0 }, "probe_rate", "out of range"},
		{"rate too high", func(o *Options) { o.ProbeRate = MaxProbeRate + 1 }, "probe_rate", "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mod(&o)
			err := o.Validate()
			if tt.attr == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", o, err)
				}
				return
			}
			var ae *AttrError
			if !errors.As(err, &ae) || ae.Attr != tt.attr {
				t.Fatalf("Validate(%+v) = %v, want an error about %q", o, err, tt.attr)
			}
			if !strings.HasPrefix(err.Error(), tt.attr+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not start with %q and mention %q", err, tt.attr+": ", tt.msg)
			}
		})
	}
}

func TestParams(t *testing.T) {
	o := DefaultOptions()
	if got := o.Params(); got.Window != 100*time.Millisecond || got.Retries == nil || *got.Retries != 3 || got.Probes != 3 {
		t.Errorf("default Params() = %+v, want 100ms, 3 retries, 3 probes", got)
	}
	o.Retries = 0
	if got := o.Params().Retries; got == nil || *got != 0 {
		t.Errorf("retries = 0 gives probe Retries %v, want 0 (no retries, not the default)", got)
	}
	if got := o.EngineOptions().IdleTimeout; got == nil || *got != 30*time.Second {
		t.Errorf("default idle timeout %v", got)
	}
	o.IdleTimeout = 0
	if got := o.EngineOptions().IdleTimeout; got == nil || *got != 0 {
		t.Errorf("idle_timeout = 0 gives engine IdleTimeout %v, want 0 (close at once, not the default)", got)
	}
}

type extraConfig struct {
	Flag   bool   `hcl:"flag,optional" help:"a flag"`
	Name   string `hcl:"name,optional"`
	hidden int
}

func raw(body string) sdk.RawConfig {
	return sdk.RawConfig{Filename: "agent.hcl", Body: []byte(body), Start: hcl.Pos{Line: 20, Column: 3, Byte: 0}}
}

func TestSchema(t *testing.T) {
	s := Schema(&extraConfig{Name: "x"})
	want := []sdk.Attribute{
		{Name: "window", Type: sdk.TypeDuration, Default: `"100ms"`},
		{Name: "retries", Type: sdk.TypeInteger, Default: "3"},
		{Name: "probes", Type: sdk.TypeInteger, Default: "3"},
		{Name: "idle_timeout", Type: sdk.TypeDuration, Default: `"30s"`},
		{Name: "probe_rate", Type: sdk.TypeInteger, Default: "4000"},
		{Name: "flag", Type: sdk.TypeBool, Description: "a flag"},
		{Name: "name", Type: sdk.TypeString, Default: `"x"`},
	}
	if len(s.Attributes) != len(want) {
		t.Fatalf("schema %+v", s)
	}
	for i, a := range s.Attributes {
		if a.Name != want[i].Name || a.Type != want[i].Type || a.Default != want[i].Default || a.Required {
			t.Errorf("attribute %d = %+v, want %+v", i, a, want[i])
		}
		if i < 5 && a.Description == "" {
			t.Errorf("attribute %q has no description", a.Name)
		}
	}
	if got := Schema(nil); len(got.Attributes) != 5 {
		t.Errorf("Schema(nil) has %d attributes", len(got.Attributes))
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    Options
		flag    bool
		errPart string // "" = no error
	}{
		{"empty keeps defaults", "", DefaultOptions(), false, ""},
		{"all set", "window = \"250ms\"\nretries = 0\nprobes = 1\nidle_timeout = \"0s\"\nprobe_rate = 50\nflag = true\n",
			Options{Window: 250 * time.Millisecond, Retries: 0, Probes: 1, IdleTimeout: 0, ProbeRate: 50}, true, ""},
		{"rate out of range", "probe_rate = 0\n", Options{}, false, `agent.hcl:20:16: Invalid value for "probe_rate"`},
		{"window out of range", "retries = 2\nwindow = \"11s\"\n", Options{}, false,
			`agent.hcl:21:10: Invalid value for "window": "11s" is out of range`},
		{"probes out of range", "probes = 0\n", Options{}, false, `agent.hcl:20:12: Invalid value for "probes"`},
		{"retries out of range", "retries = 12\n", Options{}, false, `agent.hcl:20:13: Invalid value for "retries"`},
		{"fractional retries", "retries = 1.5\n", Options{}, false, "not a whole number"},
		{"bad duration", "window = \"fast\"\n", Options{}, false, `agent.hcl:20:12: Invalid value for "window"`},
		{"unknown attribute", "windw = \"1s\"\n", Options{}, false, `agent.hcl:20:3: Unsupported argument`},
		{"typo gets did-you-mean", "flg = true\n", Options{}, false, `Did you mean "flag"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			var x extraConfig
			err := Decode(raw(tt.body), &o, &x)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("Decode(%q) = %v, want an error containing %q", tt.body, err, tt.errPart)
				}
				var ce *sdk.ConfigError
				if !strings.Contains(tt.errPart, "whole number") && !errors.As(err, &ce) {
					t.Fatalf("Decode(%q) error %T is not an *sdk.ConfigError", tt.body, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.body, err)
			}
			if o != tt.want || x.Flag != tt.flag {
				t.Fatalf("Decode(%q) = %+v, %+v; want %+v, flag %v", tt.body, o, x, tt.want, tt.flag)
			}
		})
	}
}

func TestDecodeWithoutExtraRejectsItsAttributes(t *testing.T) {
	o := DefaultOptions()
	err := Decode(raw("flag = true\n"), &o, nil)
	if err == nil || !strings.Contains(err.Error(), "agent.hcl:20:3") {
		t.Fatalf("Decode(flag) without extra = %v", err)
	}
}

func TestDecodeBadExtra(t *testing.T) {
	o := DefaultOptions()
	if err := Decode(raw(""), &o, extraConfig{}); err == nil {
		t.Error("a non-pointer extra must be refused")
	}
	type dup struct {
		W time.Duration `hcl:"window,optional"`
	}
	if err := Decode(raw(""), &o, &dup{}); err == nil || !strings.Contains(err.Error(), `"window" is defined twice`) {
		t.Errorf("a repeated attribute: %v", err)
	}
}
