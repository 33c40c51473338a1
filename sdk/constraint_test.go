package sdk

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

type constrained struct {
	Deny      []netip.Prefix   `hcl:"deny" min_items:"1" max_items:"3"`
	MaxPrefix int              `hcl:"max_prefix,optional" min:"0" max:"32"`
	Gateway   netip.Addr       `hcl:"gateway,optional"`
	MAC       net.HardwareAddr `hcl:"mac,optional"`
	Mode      string           `hcl:"mode,optional" enum:"strict,loose"`
	Uplinks   []string         `hcl:"uplinks,optional" format:"ifname"`
	Window    time.Duration    `hcl:"window,optional" min:"10ms" max:"1s"`
}

func TestConstraintsRefuseAtTheValue(t *testing.T) {
	tests := []struct {
		body, at, says string
	}{
		{"deny = [\"10.0.0.0/8\"]\nmax_prefix = 33", "2:14", "33 is out of range: 0 to 32"},
		{"deny = [\"10.0.0.0/8\"]\nmax_prefix = -1", "2:14", "out of range: 0 to 32"},
		{`deny = ["10.0.0.0/8", "10.1.0.1/16"]`, "1:23", "host bits set: the network is 10.1.0.0/16"},
		{`deny = ["10.0.0.0/8", "nonsense"]`, "1:23", "is not a network prefix"},
		{`deny = []`, "1:8", "the list has 0 items: 1 to 3 items"},
		{`deny = ["1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8"]`, "1:8", "4 items"},
		{"deny = [\"10.0.0.0/8\"]\ngateway = \"10.0.0\"", "2:11", "is not an IP address"},
		{"deny = [\"10.0.0.0/8\"]\nmac = \"02:00\"", "2:7", "is not a MAC address"},
		{"deny = [\"10.0.0.0/8\"]\nmode = \"lax\"", "2:8", `"lax" is not one of "strict", "loose"`},
		{"deny = [\"10.0.0.0/8\"]\nuplinks = [\"eth0\", \"a/b\"]", "2:20", "is not an interface name"},
		{"deny = [\"10.0.0.0/8\"]\nuplinks = [\"averyveryverylongname\"]", "2:12", "is not an interface name"},
		{"deny = [\"10.0.0.0/8\"]\nwindow = \"2s\"", "2:10", "2s is out of range: 10ms to 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			raw := RawConfig{Filename: "agent.hcl", Body: []byte(tt.body), Start: hcl.Pos{Line: 1, Column: 1}}
			c := constrained{MaxPrefix: 24}
			err := raw.Decode(&c)
			want := "agent.hcl:" + tt.at + ": "
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Decode = %v, want %q...%q", err, want, tt.says)
			}
			if c.MaxPrefix != 24 || c.Deny != nil {
				t.Errorf("a refused block assigned values: %+v", c)
			}
			// The agent checks the same against the schema the plugin
			// sent over the wire, without the plugin's structs.
			schema := schemaFromProto(schemaToProto(MustSchemaOf(&constrained{})))
			if verr := raw.Validate(schema); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate = %v, want the same as Decode: %v", verr, err)
			}
		})
	}
}

func TestConstraintsDecodeNetworkTypes(t *testing.T) {
	raw := RawConfig{Filename: "a.hcl", Body: []byte(`
deny       = ["10.0.0.0/8", "fd00::/8"]
max_prefix = 32
gateway    = "10.0.0.1"
mac        = "02:00:5e:10:00:01"
mode       = "loose"
uplinks    = ["eth0", "bond0.100"]
window     = "1s"
`)}
	var c constrained
	if err := raw.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := constrained{
		Deny:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		MaxPrefix: 32, Gateway: netip.MustParseAddr("10.0.0.1"),
		MAC:  net.HardwareAddr{2, 0, 0x5e, 0x10, 0, 1},
		Mode: "loose", Uplinks: []string{"eth0", "bond0.100"}, Window: time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", c, want)
	}
}

func TestConstraintsInTheSchema(t *testing.T) {
	s := MustSchemaOf(&constrained{Deny: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, MaxPrefix: 24})
	got := map[string]string{}
	for _, a := range s.Attributes {
		got[a.Name] = a.Type + " | " + a.Default + " | " + a.Constraint()
	}
	want := map[string]string{
		"deny":       `list(string) | ["192.0.2.0/24"] | 1 to 3 items; each a network prefix such as 10.0.0.0/8`,
		"max_prefix": "integer | 24 | 0 to 32",
		"gateway":    "string |  | an IP address such as 10.0.0.1",
		"mac":        "string |  | a MAC address such as 02:00:5e:10:00:01",
		"mode":       `string |  | one of "strict", "loose"`,
		"uplinks":    "list(string) |  | each an interface name (1 to 15 characters, no '/', ':' or spaces)",
		"window":     "duration |  | 10ms to 1s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema:\n got %q\nwant %q", got, want)
	}
	// Everything survives the wire.
	if back := schemaFromProto(schemaToProto(s)); !reflect.DeepEqual(back, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, s)
	}
}

func TestConstraintTagsMisusedAreProgrammingErrors(t *testing.T) {
	type minOnString struct {
		S string `hcl:"s" min:"1"`
	}
	type badFormat struct {
		S string `hcl:"s" format:"url"`
	}
	type itemsOnInt struct {
		N int `hcl:"n" max_items:"3"`
	}
	type inverted struct {
		N int `hcl:"n" min:"5" max:"1"`
	}
	for _, target := range []any{&minOnString{}, &badFormat{}, &itemsOnInt{}, &inverted{}} {
		if _, err := SchemaOf(target); err == nil {
			t.Errorf("SchemaOf(%T) accepted a constraint that does not fit", target)
		}
	}
}

// A schema from a plugin is hostile input to the agent: counts that do not
// fit and formats it does not know must not panic or refuse everything.
func TestConstraintsFromTheWireAreBounded(t *testing.T) {
	p := schemaToProto(Schema{Attributes: []Attribute{{Name: "x", Type: TypeStringList, Format: "future"}}})
	p.Attributes[0].MaxItems = -5
	p.Attributes[0].MinItems = 1 << 40
	s := schemaFromProto(p)
	if err := (RawConfig{Filename: "a.hcl", Body: []byte(`x = ["a"]`)}).Validate(s); err != nil {
		t.Errorf("Validate with nonsense bounds = %v, want no bound applied", err)
	}
}
