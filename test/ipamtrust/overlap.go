package ipamtrust

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// The overlapping pools: OvB's range holds all of OvA's and OvA's
// gateway. Line numbers matter: the refusals name them.
const (
	PoolOvA = `pool "ovA" {
  subnet             = "10.90.0.0/24"
  ranges             = ["10.90.0.10-10.90.0.40"]
  gateway            = "10.90.0.1"
  conflict_detection = false
}
`
	PoolOvB = `pool "ovB" {
  subnet             = "10.90.0.0/24"
  ranges             = ["10.90.0.1-10.90.0.40"]
  conflict_detection = false
}
`
)

// OverlapRefusal is what a refused OvA+OvB pool file must say: both pools
// at file:line:col, for the overlap and for ovA's gateway.
func OverlapRefusal(file string) []string {
	at := func(line, col int) string { return fmt.Sprintf("%s:%d:%d", file, line, col) }
	return []string{
		at(10, 24) + `: Overlapping pools: Pool "ovB" (` + at(10, 24) + `) and pool "ovA" (` + at(3, 24) + `) both hand out 31 address(es) of domain "default", the first 10.90.0.10`,
		`Pool "ovB" (` + at(10, 24) + `) hands out 10.90.0.1, the gateway of pool "ovA" (` + at(4, 24) + `) in domain "default"`,
	}
}

// missing returns the wants that s lacks.
func missing(s string, wants ...string) []string {
	var out []string
	for _, w := range wants {
		if !strings.Contains(s, w) {
			out = append(out, w)
		}
	}
	return out
}

// OverlapAtStart: an agent whose pool file holds two pools overlapping in
// one domain does not start and names both pools' positions; `config
// validate` says the same.
func OverlapAtStart(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "two overlapping pools in one pool file",
		Tried: `pools ovA (10.90.0.10-40, gateway .1) and ovB (10.90.0.1-40) in one domain; the agent started on them, and ` + "`config validate`"}
	start := time.Now()
	a := e.start(t, opts{pools: PoolOvA + "\n" + PoolOvB, noWait: true})
	code, ok := a.ExitCode(30 * time.Second)
	took := time.Since(start)
	file := filepath.Join(a.PoolDir, "pools.hcl")
	want := OverlapRefusal(file)
	switch {
	case !ok:
		r.Did = "started"
		r.Failf("the agent runs on overlapping pools")
	case code != 1:
		r.Did = fmt.Sprintf("exited %d", code)
		r.Failf("exit %d, want 1", code)
	default:
		r.Did = "refused to start, naming both pools at file:line:col (the overlap and ovA's gateway in ovB's range)"
	}
	if m := missing(a.Log(), want...); len(m) > 0 {
		r.Failf("the refusal lacks %q", m)
	}
	out, errOut, vcode := a.CLI("config", "validate", "--config-dir", t.TempDir(), "--ipam-config-dir", a.PoolDir)
	if m := missing(out+errOut, want...); vcode != 1 || len(m) > 0 {
		r.Failf("config validate: exit %d, lacks %q", vcode, m)
	}
	r.Numbers = fmt.Sprintf("exit %d after %s; config validate exit %d", code, ms(took), vcode)
	return r
}

// AddOverlapByReload takes one allocation of ovA from an agent running
// PoolOvA alone (client; its pool file in poolDir), then adds PoolOvB to
// that file and asks the agent to reload. It returns the allocation, the
// pool file and the reload's error, nil when the agent took the reload.
func AddOverlapByReload(t testing.TB, c context.Context, client *api.Client, poolDir string) (first api.Attachment, file string, reloadErr error) {
	t.Helper()
	first, err := client.Allocate(c, api.AllocateRequest{ContainerID: "before", Interface: "eth0", Pools: []string{"ovA"}})
	if err != nil {
		t.Fatalf("allocate from ovA before the reload: %v", err)
	}
	file = filepath.Join(poolDir, "pools.hcl")
	if err := os.WriteFile(file, []byte(PoolOvA+"\n"+PoolOvB), 0o644); err != nil {
		t.Fatalf("add ovB to the pool file: %v", err)
	}
	return first, file, client.Reload(c)
}

// ReloadAddsOverlap: a reload that adds a pool overlapping a running one is
// refused naming both, and nothing changes: the running pool keeps its
// allocation and hands out each of its other addresses once.
func ReloadAddsOverlap(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "a reload adding an overlapping pool",
		Tried: "agent on ovA with 1 allocation; ovB (overlapping) added to the pool file; POST /v1/reload; then ovA filled"}
	a := e.start(t, opts{pools: PoolOvA})
	c := ctx(t, 60*time.Second)
	first, file, err := AddOverlapByReload(t, c, a.API, a.PoolDir)
	if err == nil {
		r.Did = "took the reload"
		r.Failf("a reload adding an overlapping pool was accepted")
	} else {
		r.Did = "refused the reload naming both pools; kept the running pools"
		if m := missing(err.Error(), OverlapRefusal(file)...); len(m) > 0 {
			r.Failf("the reload's error lacks %q: %v", m, err)
		}
	}
	ps, err := a.API.Pools(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "ovA" || ps[0].Allocated != 1 {
		r.Failf("pools after the refused reload: %+v", ps)
	}
	// Fill ovA: each of its other 30 addresses once, never the first.
	got := map[netip.Addr]bool{first.Addresses[0].Address.Addr(): true}
	twice := 0
	for i := 0; i < 40; i++ {
		att, err := a.API.Allocate(c, api.AllocateRequest{ContainerID: fmt.Sprint("fill-", i), Interface: "eth0", Pools: []string{"ovA"}})
		if err != nil {
			break
		}
		ad := att.Addresses[0].Address.Addr()
		if got[ad] {
			twice++
		}
		got[ad] = true
	}
	if len(got) != 31 || twice != 0 {
		r.Failf("ovA handed out %d distinct addresses (want 31), %d twice", len(got), twice)
	}
	r.Numbers = fmt.Sprintf("pools after: %d; ovA filled with %d distinct addresses, %d twice", len(ps), len(got), twice)
	return r
}

// OldStore writes, with bbolt itself, a store file as an agent that keyed
// addresses per pool (format 1) left it: one allocation per holder, each
// given as "POOL ADDRESS".
func OldStore(path string, holders map[string]string) error {
	var commits [][]coreipam.Op
	for cid, poolAddr := range holders {
		pool, addr, _ := strings.Cut(poolAddr, " ")
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return err
		}
		commits = append(commits, storetest.PerPoolHolder(pool, a, cid, "old-node"))
	}
	return storetest.WriteFormat1(path, commits...)
}

// OldStoreOverlap: a store of the per-pool layout in which two pools'
// overlapping ranges gave one address to two holders stops the agent at
// start, naming both holders, with the file unchanged.
func OldStoreOverlap(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "two pools overlapping through an old store",
		Tried: "a per-pool store (format 1) where ovA's c1 and ovB's c2 both hold 10.90.0.20; the agent started on it"}
	db := filepath.Join(t.TempDir(), "ipam.db")
	if err := OldStore(db, map[string]string{"c1": "ovA 10.90.0.20", "c2": "ovB 10.90.0.20"}); err != nil {
		t.Fatal(err)
	}
	before, err := dump(db)
	if err != nil {
		t.Fatal(err)
	}
	a := e.start(t, opts{pools: PoolOvA, db: db, noWait: true})
	code, ok := a.ExitCode(30 * time.Second)
	if !ok || code == 0 {
		r.Did = "started"
		r.Failf("the agent runs on a store holding 10.90.0.20 twice (exit %d %v)", code, ok)
	} else {
		r.Did = "refused to start, naming the address and both holders; the file unchanged"
	}
	want := `IPAM store ` + db + `: cannot move the address records to one key per address in domain "default": 1 address(es) are held twice (two pools' ranges overlapped): 10.90.0.20: pool "ovA" (container c1 interface eth0, allocated, node old-node) and pool "ovB" (container c2 interface eth0, allocated, node old-node); nothing was changed.`
	if m := missing(a.Log(), want); len(m) > 0 {
		r.Failf("the refusal lacks %q", m)
	}
	after, err := dump(db)
	if err != nil {
		t.Fatal(err)
	}
	changed := after != before
	if changed {
		r.Failf("the refused store file was changed")
	}
	r.Numbers = fmt.Sprintf("exit %d; file changed: %v", code, changed)
	return r
}

// dump renders every key and value of a store file, its format included:
// what a refused start must leave as it was (bbolt may rewrite its own
// meta pages on open, so the file's bytes are not the measure).
func dump(path string) (string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return "", err
	}
	defer db.Close()
	var b strings.Builder
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error { fmt.Fprintf(&b, "%s/%s = %x\n", name, k, v); return nil })
		})
	})
	return b.String(), err
}
