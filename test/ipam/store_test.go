package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/ipamtrust"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/storefault"
)

// storeWithAllocations runs an agent on a new store file, makes n
// allocations through it, each with a workload record, and stops it; the
// file is returned.
func storeWithAllocations(t *testing.T, n int) string {
	t.Helper()
	a := startIPAM(t, agentOpts{pools: ipamtrust.BulkPool})
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ipamtrust.AllocateBulk(c, a.Client, "bulk", n, true); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	return a.DB
}

// A store emptied or with a corrupted page, refused at start naming the
// file and what to do, is test/ipamtrust's TruncatedStore and CorruptPage;
// backup under allocations and restore its BackupUnderAllocations: make
// faults runs the same functions.

// A page damaged under a running agent: the allocation that meets it fails
// with the store's error (not ready), readiness reports ipam-store, and
// the agent keeps running - no panic.
func TestCorruptPageWhileRunning(t *testing.T) {
	db := storeWithAllocations(t, 300)
	pgid, pageSize, err := storefault.BucketPage(db, storefault.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	a := startIPAM(t, agentOpts{pools: ipamtrust.BulkPool, db: db})
	if err := storefault.Overwrite(db, int64(pgid)*int64(pageSize), pageSize, 3); err != nil {
		t.Fatal(err)
	}
	_, err = a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: "after", Interface: "eth0", Pools: []string{"bulk"}})
	if err == nil || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("allocation on a damaged page: %v", err)
	}
	a.WaitFor("/v1/runtime/readiness", 503, 30*time.Second)
	out, _, _ := a.CLI("status", "--socket", a.Socket)
	if !strings.Contains(out, "ipam-store") && !strings.Contains(out, "DOWN") {
		t.Errorf("status does not report the store:\n%s", out)
	}
	_, err = a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: "later", Interface: "eth0", Pools: []string{"bulk"}})
	if ae := apiErr(t, err); ae.Code != api.CodeNotReady {
		t.Errorf("allocation on a failed store: %+v", ae)
	}
	if ex := a.Exited(); !ex.At.IsZero() || strings.Contains(a.Log(), "panic:") {
		t.Fatalf("the agent died (%+v):\n%s", ex, a.Log())
	}
}

// ipam check finds, offline, a store whose records were made to disagree
// by hand: an address listed by two attachments, and an address record
// naming another owner than the attachment that lists it.
func TestCheckFindsInconsistentStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, s *boltstore.Store, atts map[string]coreipam.Entry, addrs map[string]coreipam.Entry)
		want string
	}{
		{"address held twice", func(t *testing.T, s *boltstore.Store, atts, _ map[string]coreipam.Entry) {
			var one, two coreipam.Attachment
			decodeEntry(t, atts["bulk-0"], &one)
			decodeEntry(t, atts["bulk-1"], &two)
			two.Addresses = one.Addresses
			put(t, s, atts["bulk-1"].Key, two)
		}, "is held by"},
		{"record disagrees with its attachment", func(t *testing.T, s *boltstore.Store, atts, addrs map[string]coreipam.Entry) {
			var one coreipam.Attachment
			decodeEntry(t, atts["bulk-0"], &one)
			e := addrs[one.Addresses[0].Address.Addr().String()]
			var rec coreipam.AddressRecord
			decodeEntry(t, e, &rec)
			rec.Owner = coreipam.AttachmentKey{ContainerID: "someone-else", Interface: "eth0"}
			put(t, s, e.Key, rec)
		}, "but the address record says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := storeWithAllocations(t, 3)
			if out, errOut, code := agenttest.RunCLI(bins, "", "ipam", "check", "--file", db); code != 0 {
				t.Fatalf("check of a good store: exit %d\n%s%s", code, out, errOut)
			}
			s, err := boltstore.Open(db, boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			atts, addrs := records(t, s)
			tc.edit(t, s, atts, addrs)
			s.Close()
			out, errOut, code := agenttest.RunCLI(bins, "", "ipam", "check", "--file", db)
			if code != 1 || !strings.Contains(out, tc.want) || !strings.Contains(out, "problems") {
				t.Errorf("ipam check --file: exit %d, want 1 and %q\n%s%s", code, tc.want, out, errOut)
			}
			// The live check of an agent on it says the same.
			a := startIPAM(t, agentOpts{pools: ipamtrust.BulkPool, db: db})
			out, errOut, code = a.CLI("ipam", "check", "--socket", a.Socket)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("live ipam check: exit %d, want 1 and %q\n%s%s", code, tc.want, out, errOut)
			}
			// And restore refuses such a backup unless forced.
			a.Stop()
			other := filepath.Join(t.TempDir(), "ipam.db")
			if _, errOut, code := agenttest.RunCLI(bins, "", "ipam", "restore", db, "--db-path", other); code != 1 || !strings.Contains(errOut, "--force") {
				t.Errorf("restore of an inconsistent backup: exit %d\n%s", code, errOut)
			}
			if _, err := os.Stat(other); !os.IsNotExist(err) {
				t.Errorf("a refused restore left %s: %v", other, err)
			}
		})
	}
}

// records finds the attachments (by container id) and address records (by
// address) among a store's entries by their values, not their keys.
func records(t *testing.T, s *boltstore.Store) (atts, addrs map[string]coreipam.Entry) {
	t.Helper()
	all, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	atts, addrs = map[string]coreipam.Entry{}, map[string]coreipam.Entry{}
	for _, e := range all {
		var probe struct {
			ContainerID string     `json:"container_id"`
			Address     netip.Addr `json:"address"`
			Pool        string     `json:"pool"`
			State       string     `json:"state"`
		}
		if json.Unmarshal(e.Value, &probe) != nil {
			continue
		}
		switch {
		// History entries name an address and a pool too, but have no state.
		case probe.Address.IsValid() && probe.Pool != "" && probe.State != "":
			addrs[probe.Address.String()] = e
		case probe.ContainerID != "" && probe.State == coreipam.StateAllocated:
			atts[probe.ContainerID] = e
		}
	}
	if len(atts) == 0 || len(addrs) == 0 {
		t.Fatalf("no records found among %d entries", len(all))
	}
	return atts, addrs
}

func decodeEntry(t *testing.T, e coreipam.Entry, v any) {
	t.Helper()
	if err := json.Unmarshal(e.Value, v); err != nil {
		t.Fatalf("%s: %v", e.Key, err)
	}
}

func put(t *testing.T, s *boltstore.Store, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), nil, []coreipam.Op{{Key: key, Value: b}}); err != nil {
		t.Fatal(err)
	}
}

// WipeStore is the operator's way to a fresh store: the agent stopped,
// the file moved aside.
func wipeStore(t *testing.T, a *ipamAgent) {
	t.Helper()
	a.Stop()
	if err := os.Rename(a.DB, a.DB+".lost"); err != nil {
		t.Fatal(err)
	}
}

// What protects live workloads once the store is lost: conflict
// detection. Workloads hold addresses and own them on the LAN; the store
// is wiped; a new agent asked for the same keys (same node, container id
// and interface: the same first candidates) skips every live address,
// quarantines it, and hands out others.
func TestLiveWorkloadsSurviveStoreLoss(t *testing.T) {
	lan := netlab.NewStdLAN(t)
	const pools = `
pool "lan4" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.40-10.0.0.79"]
  conflict_detection = true
}
`
	a := startIPAM(t, agentOpts{pools: pools})
	const n = 3
	live := map[netip.Addr]string{}
	for i := range n {
		cid := fmt.Sprintf("live-%d", i)
		w := workload(t, lan.LAN, cid, fmt.Sprintf("02:00:00:00:22:%02x", i+1), false)
		att, err := a.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: w.Path, Workload: cid, Pools: []string{"lan4"}})
		if err != nil {
			t.Fatal(err)
		}
		// The workload uses it, as its CNI main plugin would configure it.
		addr := att.Addresses[0].Address
		netlab.IP(t, w.NS, "addr", "add", addr.String(), "dev", "eth0")
		live[addr.Addr()] = cid
	}
	db := a.DB
	wipeStore(t, a)
	b := startIPAM(t, agentOpts{pools: pools, db: db})
	skipped := 0
	for i := range n {
		cid := fmt.Sprintf("live-%d", i)
		w := workload(t, lan.LAN, fmt.Sprintf("new-%d", i), fmt.Sprintf("02:00:00:00:23:%02x", i+1), false)
		att, err := b.Client.Allocate(ctx(t), api.AllocateRequest{ContainerID: cid, Interface: "eth0", Netns: w.Path, Workload: cid, Pools: []string{"lan4"}})
		if err != nil {
			t.Fatalf("allocate %s after the store was lost: %v", cid, err)
		}
		got := att.Addresses[0].Address.Addr()
		if owner, ok := live[got]; ok {
			t.Errorf("%s got %s, which live workload %s uses", cid, got, owner)
		}
		for _, s := range att.Skipped {
			if _, ok := live[s.Address]; ok {
				skipped++
			}
		}
	}
	// The same keys start at the same candidates: each met a live address.
	if skipped < n {
		t.Errorf("%d live addresses were skipped, want %d", skipped, n)
	}
	if u := poolUsage(t, b, "lan4"); u.Quarantined != n || u.Allocated != n {
		t.Errorf("after the store loss, want %d allocated and %d quarantined: %+v", n, n, u)
	}
}
