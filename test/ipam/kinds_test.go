package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// kindPools: one pool that vets (conflict detection on), away from the
// LAN's busy and gateway addresses; 20 addresses, so 2 may be quarantined.
const kindPools = `
pool "kinds" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.40-10.0.0.59"]
  conflict_detection = true
}
`

// A third-party detector built from the SDK alone (test/plugins/leasetable)
// takes part in allocation as the built-ins do, through the real agent:
// its in_use block quarantines the address and IPAM hands out the next;
// its policy block skips the address without quarantine; its unreachable
// block fails the allocation at once; a block with no kind (a plugin older
// than API 1.2) fails it, as every third-party block did before kinds.
// Each step blocks the workload's sticky address, the first candidate of
// its next allocation.
func TestThirdPartyDetectorKinds(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	table := filepath.Join(t.TempDir(), "leases")
	setTable := func(line string) {
		t.Helper()
		if err := os.WriteFile(table, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setTable("# empty")
	a := startIPAM(t, agentOpts{pools: kindPools, extra: fmt.Sprintf("plugin \"lease-table\" {\n  config {\n    file = %q\n  }\n}\n", table)})
	wl := workload(t, lan.LAN, "wl1", "02:00:00:00:07:01", false)
	alloc := func(cid string) (api.Attachment, error) {
		return a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: wl.Path, Workload: "default/db-0", Pools: []string{"kinds"}})
	}
	release := func(cid string) {
		t.Helper()
		if _, err := a.Client.Release(ctx(t), api.ReleaseRequest{ContainerID: cid, Interface: "eth0"}); err != nil {
			t.Fatalf("release %s: %v", cid, err)
		}
	}
	addr := func(att api.Attachment) netip.Addr { return att.Addresses[0].Address.Addr() }

	att, err := alloc("c1")
	if err != nil {
		t.Fatalf("allocate with an empty table: %v", err)
	}
	first := addr(att)
	release("c1")

	// in_use: quarantined, and the next candidate handed out.
	setTable(first.String() + " in_use")
	att, err = alloc("c2")
	if err != nil {
		t.Fatalf("allocate over an address in use by the table: %v", err)
	}
	second := addr(att)
	if second == first {
		t.Fatalf("got %s, which the lease table says is in use", first)
	}
	if len(att.Skipped) != 1 || att.Skipped[0].Address != first || !att.Skipped[0].Quarantined || !strings.Contains(att.Skipped[0].Reason, "lease-table: "+first.String()+" is listed in") {
		t.Fatalf("skipped %+v: want %s quarantined with the lease table's reason", att.Skipped, first)
	}
	if u := poolUsage(t, a, "kinds"); u.Allocated != 1 || u.Quarantined != 1 || u.Reserved != 0 {
		t.Fatalf("usage after in_use: %+v, want 1 allocated and 1 quarantined", u)
	}
	release("c2")

	// policy: skipped without quarantine, the next candidate handed out.
	setTable(second.String() + " policy")
	att, err = alloc("c3")
	if err != nil {
		t.Fatalf("allocate over an address refused by policy: %v", err)
	}
	third := addr(att)
	if third == second || third == first {
		t.Fatalf("got %s after %s (quarantined) and %s (policy)", third, first, second)
	}
	if len(att.Skipped) != 1 || att.Skipped[0].Address != second || att.Skipped[0].Quarantined || !strings.Contains(att.Skipped[0].Reason, "lease-table: ") {
		t.Fatalf("skipped %+v: want %s skipped, not quarantined", att.Skipped, second)
	}
	if u := poolUsage(t, a, "kinds"); u.Allocated != 1 || u.Quarantined != 1 || u.Reserved != 0 {
		t.Fatalf("usage after policy: %+v, want 1 allocated and still only %s quarantined", u, first)
	}
	release("c3")

	// unreachable, and a block with no kind: the allocation fails at the
	// first candidate, nothing tried after it, nothing held.
	for _, tt := range []struct {
		kind, code string
	}{
		{"unreachable", api.CodeGateway},
		{"none", api.CodeBlocked},
	} {
		setTable(third.String() + " " + tt.kind)
		start := time.Now()
		_, err := alloc("c-" + tt.kind)
		ae := apiErr(t, err)
		if ae.Code != tt.code || !strings.Contains(ae.ErrorBody.Error, "lease-table: "+third.String()+" is listed in") || len(ae.ErrorBody.Skipped) != 0 {
			t.Fatalf("kind %s: %d %+v, want %s naming the lease table and no candidate skipped", tt.kind, ae.Status, ae.ErrorBody, tt.code)
		}
		t.Logf("kind %s failed the allocation in %v", tt.kind, time.Since(start))
		if u := poolUsage(t, a, "kinds"); u.Allocated != 0 || u.Reserved != 0 || u.Quarantined != 1 {
			t.Fatalf("usage after %s: %+v, want nothing held but the one quarantine", tt.kind, u)
		}
	}
}
