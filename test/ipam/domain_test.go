package ipam

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The reproduction's pools: ovB's range holds all of ovA's and ovA's
// gateway. Line numbers matter: the refusals name them.
const (
	poolOvA = `pool "ovA" {
  subnet             = "10.90.0.0/24"
  ranges             = ["10.90.0.10-10.90.0.40"]
  gateway            = "10.90.0.1"
  conflict_detection = false
}
`
	poolOvB = `pool "ovB" {
  subnet             = "10.90.0.0/24"
  ranges             = ["10.90.0.1-10.90.0.40"]
  conflict_detection = false
}
`
)

// overlapRefusal is what a refused ovA+ovB configuration must say: both
// pools at file:line:col, for the overlap and for ovA's gateway.
func overlapRefusal(file string) []string {
	at := func(line, col int) string { return fmt.Sprintf("%s:%d:%d", file, line, col) }
	return []string{
		at(10, 24) + `: Overlapping pools: Pool "ovB" (` + at(10, 24) + `) and pool "ovA" (` + at(3, 24) + `) both hand out 31 address(es) of domain "default", the first 10.90.0.10`,
		`Pool "ovB" (` + at(10, 24) + `) hands out 10.90.0.1, the gateway of pool "ovA" (` + at(4, 24) + `) in domain "default"`,
	}
}

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

// ScenarioOverlapAtStart: an agent whose pools overlap in one domain does
// not start, and says where both pools are.
func scenarioOverlapAtStart(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: poolOvA + "\n" + poolOvB, noWait: true})
	if code, ok := a.ExitCode(15 * time.Second); !ok || code != 1 {
		t.Fatalf("agent with overlapping pools: exit %d %v", code, ok)
	}
	file := filepath.Join(a.PoolDir, "pools.hcl")
	for _, want := range overlapRefusal(file) {
		if !strings.Contains(a.Log(), want) {
			t.Errorf("log of the refused start lacks\n%s\n%s", want, a.Log())
		}
	}
	if out, errOut, code := a.CLI("config", "validate", "--config-dir", t.TempDir(), "--ipam-config-dir", a.PoolDir); code != 1 || !has(errOut+out, overlapRefusal(file)...) {
		t.Errorf("config validate: exit %d\n%s%s", code, out, errOut)
	}
}

// scenarioReloadAddsOverlap: a reload (control API and SIGHUP) that adds a
// pool overlapping a running one is refused naming both, and nothing
// changes: the old pool still hands out each of its addresses once.
func scenarioReloadAddsOverlap(t *testing.T) {
	a := startIPAM(t, agentOpts{pools: poolOvA})
	c := ctx(t)
	first, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "before", Interface: "eth0", Pools: []string{"ovA"}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(a.PoolDir, "pools.hcl")
	if err := os.WriteFile(file, []byte(poolOvA+"\n"+poolOvB), 0o644); err != nil {
		t.Fatal(err)
	}
	err = (&api.Client{SocketPath: a.Socket}).Reload(c)
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

func TestOverlappingPoolsRefusedAtStart(t *testing.T) { scenarioOverlapAtStart(t) }

func TestReloadAddingOverlappingPoolRefused(t *testing.T) { scenarioReloadAddsOverlap(t) }

// oldStore writes, with bbolt itself, a store file as an agent that keyed
// addresses per pool (format 1) left it: one allocation per holder given.
func oldStore(t *testing.T, holders map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u64 := func(v uint64) []byte { b := make([]byte, 8); binary.BigEndian.PutUint64(b, v); return b }
	err = db.Update(func(tx *bolt.Tx) error {
		kv, err := tx.CreateBucket([]byte("kv"))
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		rev := uint64(1)
		for cid, poolAddr := range holders {
			pool, addr, _ := strings.Cut(poolAddr, " ")
			a := netip.MustParseAddr(addr)
			owner := api.AttachmentKey{ContainerID: cid, Interface: "eth0"}
			rec, _ := json.Marshal(coreipam.AddressRecord{Pool: pool, Address: a, State: "allocated", Owner: owner, Node: "old-node"})
			att, _ := json.Marshal(api.Attachment{AttachmentKey: owner, Workload: cid, Node: "old-node", State: "allocated",
				Addresses: []api.AllocatedIP{{Pool: pool, Address: netip.PrefixFrom(a, 24)}}})
			if err := kv.Put([]byte("pools/"+pool+"/addrs/"+addr), append(u64(rev), rec...)); err != nil {
				return err
			}
			if err := kv.Put([]byte("attachments/"+cid+"/eth0"), append(u64(rev), att...)); err != nil {
				return err
			}
			rev++
		}
		if err := meta.Put([]byte("revision"), u64(rev)); err != nil {
			return err
		}
		return meta.Put([]byte("format"), u64(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// An agent started on a store of the per-pool layout moves it and keeps
// every allocation; a store in which the old layout gave one address to two
// pools' holders stops the agent, naming both, with the file unchanged.
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

	dup := oldStore(t, map[string]string{"c1": "ovA 10.90.0.20", "c2": "ovB 10.90.0.20"})
	before := dump(t, dup)
	b := startIPAM(t, agentOpts{pools: poolOvA, db: dup, noWait: true})
	if code, ok := b.ExitCode(15 * time.Second); !ok || code != 1 {
		t.Fatalf("agent on a store holding an address twice: exit %d %v", code, ok)
	}
	want := `IPAM store ` + dup + `: cannot move the address records to one key per address in domain "default": 1 address(es) are held twice (two pools' ranges overlapped): 10.90.0.20: pool "ovA" (container c1 interface eth0, allocated, node old-node) and pool "ovB" (container c2 interface eth0, allocated, node old-node); nothing was changed.`
	if !strings.Contains(b.Log(), want) {
		t.Errorf("log lacks\n%s\n%s", want, b.Log())
	}
	if after := dump(t, dup); after != before {
		t.Errorf("the refused store file was changed:\n%s\nwas\n%s", after, before)
	}
}

// dump renders every key and value of a store file, its format included.
func dump(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error { fmt.Fprintf(&b, "%s/%s = %x\n", name, k, v); return nil })
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
