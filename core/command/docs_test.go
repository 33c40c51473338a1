package command

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// plugin docs shows what values may be, from the schema alone.
func TestWriteDocsShowsConstraints(t *testing.T) {
	type cfg struct {
		Deny      []netip.Prefix `hcl:"deny" min_items:"1" help:"prefixes never given out"`
		MaxPrefix int            `hcl:"max_prefix,optional" min:"0" max:"32"`
	}
	var b strings.Builder
	if err := writeDocs(&b, sdk.Info{Name: "cidr-denylist", Kind: sdk.KindDetector}, sdk.MustSchemaOf(&cfg{MaxPrefix: 32})); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `deny` | list(string): at least 1 item; each a network prefix such as 10.0.0.0/8 | required | prefixes never given out |",
		"| `max_prefix` | integer: 0 to 32 | `32` |",
		"deny = # required, list(string): at least 1 item",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("docs do not say %q:\n%s", want, b.String())
		}
	}
}
