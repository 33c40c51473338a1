package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

// The test plugin keeps the contract a vendor's would, blocks with a kind
// included.
func TestConformance(t *testing.T) {
	table := filepath.Join(t.TempDir(), "leases")
	if err := os.WriteFile(table, []byte("# address kind\n192.0.2.5 in_use\n192.0.2.6 policy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sdktest.Run(t, newDetector(), sdktest.Options{
		GoodConfig: `file = "` + table + `"`,
		BadConfig:  `file = "leases"`,
		Blocked: []sdk.CheckRequest{
			{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.5/24")},
			{Interface: "lo", Address: netip.MustParsePrefix("192.0.2.6/24")},
		},
	})
}
