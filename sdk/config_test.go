package sdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

type testConfig struct {
	Window  time.Duration     `hcl:"window,optional" help:"reply window"`
	Retries int               `hcl:"retries,optional"`
	Ratio   float64           `hcl:"ratio,optional"`
	Name    string            `hcl:"name"`
	On      bool              `hcl:"on,optional"`
	Keys    []string          `hcl:"keys,optional"`
	Set     map[string]string `hcl:"set,optional"`
	Ignored string
}

func TestSchemaOf(t *testing.T) {
	s, err := SchemaOf(&testConfig{Window: 100 * time.Millisecond, Retries: 3, Keys: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Attribute{
		{Name: "window", Type: TypeDuration, Description: "reply window", Default: `"100ms"`},
		{Name: "retries", Type: TypeNumber, Default: "3"},
		{Name: "ratio", Type: TypeNumber},
		{Name: "name", Type: TypeString, Required: true},
		{Name: "on", Type: TypeBool},
		{Name: "keys", Type: TypeStringList, Default: `["a"]`},
		{Name: "set", Type: TypeStringMap},
	}
	if !reflect.DeepEqual(s.Attributes, want) {
		t.Errorf("SchemaOf:\n got %+v\nwant %+v", s.Attributes, want)
	}
	if _, err := SchemaOf(testConfig{}); err == nil {
		t.Error("SchemaOf(non-pointer) must fail")
	}
	type bad struct {
		C chan int `hcl:"c"`
	}
	if _, err := SchemaOf(&bad{}); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("SchemaOf(unsupported field) = %v, want an error naming it", err)
	}
}

func TestDecode(t *testing.T) {
	body := `
name    = "x"
window  = "250ms"
retries = 5
ratio   = 0.5
on      = true
keys    = ["a", "b"]
set     = { "net.ipv4.conf.eth0/100.rp_filter" = "0", k = 2 }
`
	cfg := testConfig{Window: time.Second, Retries: 3}
	if err := (RawConfig{Filename: "f.hcl", Body: []byte(body)}).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := testConfig{
		Name: "x", Window: 250 * time.Millisecond, Retries: 5, Ratio: 0.5, On: true,
		Keys: []string{"a", "b"}, Set: map[string]string{"net.ipv4.conf.eth0/100.rp_filter": "0", "k": "2"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	cfg := testConfig{Window: time.Second, Retries: 3}
	if err := (RawConfig{Body: []byte(`name = "n"`)}).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Window != time.Second || cfg.Retries != 3 {
		t.Errorf("defaults lost: %+v", cfg)
	}
}

func TestDecodeErrorsKeepPositions(t *testing.T) {
	// The block starts at line 7, column 12 of the operator's file.
	start := hcl.Pos{Line: 7, Column: 12, Byte: 100}
	tests := []struct {
		name, body, want string
	}{
		{"unknown attribute with did-you-mean", "name = \"x\"\nwindw = \"1s\"", `agent.hcl:8:1: Unsupported argument: An argument named "windw" is not expected here. Did you mean "window"?`},
		{"bad duration", `name = "x"
window = "fast"`, `agent.hcl:8:10: Invalid value for "window": "fast" is not a duration`},
		{"negative duration", `name = "x"
window = "-1s"`, `agent.hcl:8:10`},
		{"wrong type", `name = "x"
on = "maybe"`, `agent.hcl:8:6: Invalid value for "on": a bool is required`},
		{"missing required", `on = true`, `Missing required argument: The argument "name" is required`},
		{"syntax error", `name = `, `agent.hcl:7:`},
		{"variables are not allowed", `name = var.x`, `agent.hcl:7:19: Variables not allowed`},
		{"not a whole number", "name = \"x\"\nretries = 1.5", `"retries": 1.5 is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg testConfig
			err := RawConfig{Filename: "agent.hcl", Body: []byte(tt.body), Start: start}.Decode(&cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateAgainstReportedSchema(t *testing.T) {
	schema := MustSchemaOf(&testConfig{})
	ok := RawConfig{Filename: "a.hcl", Body: []byte(`name = "x"`)}
	if err := ok.Validate(schema); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	bad := RawConfig{Filename: "a.hcl", Body: []byte(`name = "x"
retries = "many"`)}
	err := bad.Validate(schema)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Diagnostics[0].Subject.Start.Line != 2 {
		t.Errorf("Validate(bad) = %v, want a ConfigError at line 2", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`name = "x"
window = "1s"
set = { a = "b" }`))
	f.Add([]byte(`keys = [1, null]`))
	f.Add([]byte(`retries = 1e400`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var cfg testConfig
		_ = RawConfig{Filename: "fuzz.hcl", Body: body}.Decode(&cfg)
	})
}
