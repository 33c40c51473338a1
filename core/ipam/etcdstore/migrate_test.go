package etcdstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// Two agents of one shared store moving the per-pool address records at
// the same start: compare-guarded batches, so together they move each
// record once, leave the pool definition hashes alone, and carry a
// quarantine over with a lease.
func TestMigrateKeysOnEtcd(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	a, b := newStore(t, c.Endpoints(), p), newStore(t, c.Endpoints(), p)
	var ops []ipam.Op
	for i := 0; i < 120; i++ {
		ops = append(ops, storetest.PerPoolHolder("shared", netip.MustParseAddr(fmt.Sprintf("10.20.0.%d", 10+i)), fmt.Sprintf("c%d", i), "n1")...)
		if len(ops) >= 100 {
			mustCommit(t, a, nil, ops)
			ops = nil
		}
	}
	q, _ := json.Marshal(ipam.AddressRecord{Pool: "shared", Address: netip.MustParseAddr("10.20.0.250"), State: ipam.StateQuarantined, Until: time.Now().Add(time.Hour)})
	ops = append(ops, ipam.Op{Key: "pools/shared/addrs/10.20.0.250", Value: q, TTL: time.Hour}, ipam.Op{Key: "pools/shared/hash", Value: []byte(`{"hash":"sha256:x"}`)})
	mustCommit(t, a, nil, ops)

	var wg sync.WaitGroup
	moved := make([]int, 2)
	errs := make([]error, 2)
	for i, s := range []ipam.Store{a, b} {
		wg.Go(func() {
			moved[i], errs[i] = ipam.MigrateKeys(context.Background(), s)
		})
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || moved[0]+moved[1] != 121 {
		t.Fatalf("moved %v, errors %v", moved, errs)
	}
	if err := ipam.Consistent(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	es, err := a.List(context.Background(), "pools/")
	if err != nil || len(es) != 1 || es[0].Key != "pools/shared/hash" {
		t.Fatalf("left under pools/: %v %v", es, err)
	}
	resp, err := a.Client().Get(context.Background(), p+"domains/default/addrs/10.20.0.250")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the moved quarantine has no lease: %v %v", resp, err)
	}
}
