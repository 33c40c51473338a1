package ipam

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/ipamtrust"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The overlapping pools and what their refusal says are test/ipamtrust's,
// whose OverlapAtStart is the start-up half of this attack.
const (
	poolOvA = ipamtrust.PoolOvA
	poolOvB = ipamtrust.PoolOvB
)

var overlapRefusal = ipamtrust.OverlapRefusal

// fillPool allocates from pool until it is full and returns the addresses
// given, failing on one given twice.
func fillPool(t *testing.T, a *ipamAgent, pool string) map[string]bool {
	t.Helper()
	c := ctx(t)
	got := map[string]bool{}
	for i := 0; ; i++ {
		att, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: fmt.Sprintf("%s-%d", pool, i), Interface: "eth0", Pools: []string{pool}})
		if err != nil {
			if ae := apiErr(t, err); ae.Code != api.CodePoolFull {
				t.Fatalf("%s #%d: %v", pool, i, err)
			}
			return got
		}
		addr := att.Addresses[0].Address.Addr().String()
		if got[addr] {
			t.Fatalf("pool %s gave %s twice", pool, addr)
		}
		got[addr] = true
	}
}

// scenarioReloadAddsOverlap: a reload (control API and SIGHUP) that adds a
// pool overlapping a running one is refused naming both, and nothing
// changes: the old pool still hands out each of its addresses once.
func scenarioReloadAddsOverlap(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: poolOvA})
	c := ctx(t)
	first, file, err := ipamtrust.AddOverlapByReload(t, c, a.Client, a.PoolDir)
	if err == nil {
		t.Fatal("a reload adding an overlapping pool was accepted")
	}
	for _, want := range overlapRefusal(file) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error lacks\n%s\n%v", want, err)
		}
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netlab.WaitFor(t, "SIGHUP reload refused", func() (bool, error) {
		return strings.Contains(a.Log(), "SIGHUP: reloading") && strings.Contains(a.Log(), `reload failed`) && strings.Contains(a.Log(), `Overlapping pools`), nil
	})
	ps, err := a.Client.Pools(c)
	if err != nil || len(ps) != 1 || ps[0].Name != "ovA" || ps[0].Allocated != 1 {
		t.Fatalf("pools after the refused reloads: %+v %v", ps, err)
	}
	got := fillPool(t, a, "ovA")
	if len(got) != 30 || got[first.Addresses[0].Address.Addr().String()] {
		t.Fatalf("ovA gave %d more addresses (want the 30 left), or its first one again: %v", len(got), got)
	}
	// In another domain the same range is another address space: the
	// reload is taken, and ovB fills all 40.
	other := strings.Replace(poolOvB, "{\n", "{\n  domain = \"vlan90\"\n", 1)
	if err := os.WriteFile(file, []byte(poolOvA+"\n"+other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (&api.Client{SocketPath: a.Socket}).Reload(c); err != nil {
		t.Fatal(err)
	}
	if got := fillPool(t, a, "ovB"); len(got) != 40 {
		t.Fatalf("ovB in domain vlan90 gave %d addresses, want 40", len(got))
	}
	if u := poolUsage(t, a, "ovB"); u.Domain != "vlan90" || u.Allocated != 40 || u.Free != 0 {
		t.Fatalf("%+v", u)
	}
	a.Stop()
	consistent(t, a.DB)
}

func TestReloadAddingOverlappingPoolRefused(t *testing.T) { scenarioReloadAddsOverlap(t) }

// oldStore writes a store file of the per-pool layout (format 1) with one
// allocation per holder given ("POOL ADDRESS").
func oldStore(t *testing.T, holders map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam.db")
	if err := ipamtrust.OldStore(path, holders); err != nil {
		t.Fatal(err)
	}
	return path
}

// An agent started on a store of the per-pool layout moves it and keeps
// every allocation. (A store in which the old layout gave one address to
// two pools' holders is test/ipamtrust's OldStoreOverlap.)
func TestOldStoreMovedAtStart(t *testing.T) {
	db := oldStore(t, map[string]string{"old1": "ovA 10.90.0.10", "old2": "ovA 10.90.0.11"})
	a := startIPAM(t, agentOpts{pools: poolOvA, db: db})
	if !strings.Contains(a.Log(), "moved address records to the per-domain layout: records=2") {
		t.Errorf("log lacks the move:\n%s", a.Log())
	}
	if u := poolUsage(t, a, "ovA"); u.Allocated != 2 || u.Free != 29 {
		t.Fatalf("%+v", u)
	}
	got := fillPool(t, a, "ovA")
	if len(got) != 29 || got["10.90.0.10"] || got["10.90.0.11"] {
		t.Fatalf("after the move ovA gave %d addresses: %v", len(got), got)
	}
	if _, err := a.Client.Release(ctx(t), api.ReleaseRequest{ContainerID: "old1", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if u := poolUsage(t, a, "ovA"); u.Allocated != 30 || u.Free != 1 {
		t.Fatalf("releasing a moved allocation: %+v", u)
	}
	a.Stop()
	consistent(t, db)
}
