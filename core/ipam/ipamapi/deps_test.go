package ipamapi

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: the CNI plugin links this package; it must not
// pull HCL, gRPC, go-plugin or anything else outside the standard library.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		// core/peercred is the trust rule shared with the control client;
		// it is standard library only itself.
		if p != "github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi" && p != "github.com/spiderpool-agent/spiderpool-agent/core/peercred" {
			t.Errorf("ipamapi depends on %s", p)
		}
	}
}
