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
		{Name: "retries", Type: TypeInteger, Default: "3"},
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
		{"not a whole number", "name = \"x\"\nretries = 1.5", `agent.hcl:8:11: Invalid value for "retries": 1.5 is not a whole number`},
		{"string into a number", "name = \"x\"\nretries = \"many\"", `agent.hcl:8:11: Invalid value for "retries": an integer is required, not string`},
		{"beyond int64", "name = \"x\"\nretries = 99999999999999999999", `agent.hcl:8:11: Invalid value for "retries": 99999999999999999999 is out of range: -9223372036854775808 to 9223372036854775807`},
		{"infinite", "name = \"x\"\nretries = 1e400", `agent.hcl:8:11: Invalid value for "retries": 1e+400 is out of range`},
		{"infinite float", "name = \"x\"\nratio = -1e400", `agent.hcl:8:9: Invalid value for "ratio": -1e+400 is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg testConfig
			err := RawConfig{Filename: "agent.hcl", Body: []byte(tt.body), Start: start}.Decode(&cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v\nwant an error containing %q", err, tt.want)
			}
			requirePositioned(t, err)
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
	f.Add([]byte(`retries = 99999999999999999999`))
	f.Add([]byte(`small = 2.5`))
	f.Add([]byte(`small = -129`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var cfg testConfig
		var ints intConfig
		err := RawConfig{Filename: "fuzz.hcl", Body: body, Start: hcl.Pos{Line: 3, Column: 1, Byte: 9}}.Decode(&cfg, &ints)
		if err != nil {
			requirePositioned(t, err)
		}
	})
}

// requirePositioned fails unless err is a *ConfigError whose every
// diagnostic names a file, line and column.
func requirePositioned(t *testing.T, err error) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %q (%T) is not a *ConfigError", err, err)
	}
	for _, d := range ce.Diagnostics {
		if d.Subject == nil || d.Subject.Filename == "" || d.Subject.Start.Line < 1 || d.Subject.Start.Column < 1 {
			if d.Summary == "Missing required argument" {
				continue // HCL puts these on the block, which has no range here
			}
			t.Fatalf("diagnostic %q has no position: %+v", d.Summary, d.Subject)
		}
	}
}

type intConfig struct {
	Small int8    `hcl:"small,optional"`
	Port  uint16  `hcl:"port,optional"`
	Big   uint64  `hcl:"big,optional"`
	F32   float32 `hcl:"f32,optional"`
}

// Every integer kind is range-checked on its own bounds, with the
// attribute's position; nothing is assigned when one value does not fit.
func TestDecodeRangeChecksEveryKind(t *testing.T) {
	tests := []struct{ body, want string }{
		{"small = 127", ""},
		{"small = -128", ""},
		{"small = 128", `a.hcl:1:9: Invalid value for "small": 128 is out of range: -128 to 127`},
		{"small = -129", `-129 is out of range: -128 to 127`},
		{"port = 65535", ""},
		{"port = 65536", `"port": 65536 is out of range: 0 to 65535`},
		{"port = -1", `"port": -1 is out of range: 0 to 65535`},
		{"big = 18446744073709551615", ""},
		{"big = 18446744073709551616", `is out of range: 0 to 18446744073709551615`},
		{"f32 = 1e39", `"f32": 1e+39 is out of range`},
		{"port = 2.5", `"port": 2.5 is not a whole number`},
	}
	for _, tt := range tests {
		cfg := intConfig{Small: 7, Port: 7}
		err := RawConfig{Filename: "a.hcl", Body: []byte(tt.body)}.Decode(&cfg)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Decode(%s) = %v", tt.body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v, want %q", tt.body, err, tt.want)
			continue
		}
		requirePositioned(t, err)
		if cfg.Small != 7 || cfg.Port != 7 {
			t.Errorf("Decode(%s) assigned a value although it failed: %+v", tt.body, cfg)
		}
	}
}

func TestDecodeSeveralTargets(t *testing.T) {
	type shared struct {
		Window time.Duration `hcl:"window,optional"`
	}
	type own struct {
		Deny []string `hcl:"deny,optional"`
	}
	s, o := shared{Window: time.Second}, own{}
	if err := (RawConfig{Filename: "a.hcl", Body: []byte("deny = [\"x\"]\nwindow = \"2s\"")}).Decode(&s, &o); err != nil {
		t.Fatal(err)
	}
	if s.Window != 2*time.Second || len(o.Deny) != 1 {
		t.Errorf("got %+v %+v", s, o)
	}
	err := RawConfig{Filename: "a.hcl", Body: []byte("windw = \"2s\"")}.Decode(&s, &o)
	if err == nil || !strings.Contains(err.Error(), `Did you mean "window"?`) {
		t.Errorf("unknown attribute across targets = %v", err)
	}
	if _, err := SchemaOf(&s, &shared{}); err == nil || !strings.Contains(err.Error(), `"window" is defined twice`) {
		t.Errorf("SchemaOf with a repeated attribute = %v", err)
	}
}

func TestAttrErrorPointsAtTheValue(t *testing.T) {
	raw := RawConfig{Filename: "agent.hcl", Start: hcl.Pos{Line: 20, Column: 3, Byte: 400}, Body: []byte(`min_mtu = 70000
set = { "a.b" = "1", "c.d" = "x" }
keys = ["p", "q"]`)}
	tests := []struct {
		err  *ConfigError
		want string
	}{
		{raw.AttrError("min_mtu", "70000 is above 65535"), `agent.hcl:20:13: Invalid value for "min_mtu": 70000 is above 65535`},
		{raw.EntryError("set", "c.d", false, "bad key"), `agent.hcl:21:22: Invalid value for "set": bad key`},
		{raw.EntryError("set", "c.d", true, "bad value"), `agent.hcl:21:30: Invalid value for "set": bad value`},
		{raw.EntryError("keys", "q", false, "bad"), `agent.hcl:22:14:`},
		{raw.AttrError("unset", "the default is wrong"), `agent.hcl:20:3: Invalid value for "unset"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("got %q, want prefix %q", got, tt.want)
		}
	}
}

// DecodeBody decodes a block of a file the caller parsed: attributes into
// the target with the caller's prefix in messages, nested blocks of the
// named types handed back (an unknown one gets a did-you-mean), nothing
// assigned when anything fails.
func TestDecodeBody(t *testing.T) {
	parse := func(t *testing.T, src string) hcl.Body {
		t.Helper()
		body, diags := RawConfig{Filename: "a.hcl", Body: []byte(src)}.Parse()
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return body
	}
	tls := []hcl.BlockHeaderSchema{{Type: "tls"}}

	var c testConfig
	content, err := DecodeBody(parse(t, "name = \"x\"\nretries = 2\ntls {\n  ca = \"/c\"\n}\n"), tls, "etcd.", &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "x" || c.Retries != 2 {
		t.Errorf("decoded %+v", c)
	}
	if len(content.Blocks) != 1 || content.Blocks[0].Type != "tls" || content.Blocks[0].DefRange.Start.Line != 3 {
		t.Errorf("blocks = %+v, want the tls block of line 3", content.Blocks)
	}
	if r := content.Attributes["retries"].Expr.Range(); r.Start.Line != 2 || r.Start.Column != 11 {
		t.Errorf("retries at %v, want a.hcl:2:11", r)
	}

	c = testConfig{Name: "keep"}
	_, err = DecodeBody(parse(t, "name = \"y\"\nretries = 1.5\ntlss {\n}\n"), tls, "etcd.", &c)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	for _, want := range []string{
		`a.hcl:2:11: Invalid value for "etcd.retries": 1.5 is not a whole number`,
		`a.hcl:3:1: Unsupported block type`, `Did you mean "tls"?`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("error %T, want *ConfigError", err)
	}
	if c.Name != "keep" {
		t.Errorf("name = %q after a failed decode, want it untouched", c.Name)
	}
}
