package ipamapi

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: the CNI plugin links this package; it must not
// pull HCL, gRPC, go-plugin or anything else outside the standard library,
// nor net/http, whose TLS, x509 and HTTP/2 were most of the plugin's size
// (wire.go speaks HTTP/1.0 instead).
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Standard}}std:{{end}}{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if std, ok := strings.CutPrefix(p, "std:"); ok {
			if std == "net/http" || strings.HasPrefix(std, "net/http/") || std == "crypto/tls" || std == "crypto/x509" {
				t.Errorf("ipamapi depends on %s", std)
			}
			continue
		}
		// core/peercred is the trust rule shared with the control client,
		// core/input the rule for input shared with the control API;
		// both are standard library only themselves.
		if p != "github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi" && p != "github.com/spiderpool-agent/spiderpool-agent/core/peercred" && p != "github.com/spiderpool-agent/spiderpool-agent/core/input" {
			t.Errorf("ipamapi depends on %s", p)
		}
	}
}
