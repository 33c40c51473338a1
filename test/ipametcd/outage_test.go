package ipametcd

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
)

// TestAllocationsRideThroughEtcdRestart: three agents on a three-member
// etcd, 36 allocations at once, every member killed as they start and
// restarted a second later. Each allocation is sent once (a CNI runtime
// does not retry) and all of them succeed within etcd.outage_wait plus
// the restart; the store is consistent and no address is held twice.
func TestAllocationsRideThroughEtcdRestart(t *testing.T) {
	l := newLab(t, 3)
	pools := sharedPool("10.80.0.10-10.80.0.200")
	nodes := l.startNodes(pools, "n1", "n2", "n3")
	const perNode = 12
	type result struct {
		id   string
		att  api.Attachment
		err  error
		took time.Duration
	}
	results := make(chan result, perNode*len(nodes))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, n := range nodes {
		for i := range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("%s-c%02d", n.Name, i)
				<-gate
				att, err, took := alloc(t, n, id)
				results <- result{id, att, err, took}
			}()
		}
	}
	for _, m := range l.cluster.Members {
		m.Kill()
	}
	killed := time.Now()
	close(gate)
	// The restart a second later: a timer, not a sleep in place of
	// synchronisation - the outage is what is being tested.
	time.Sleep(time.Second)
	for _, m := range l.cluster.Members {
		m.Restart()
	}
	restarted := time.Since(killed)
	wg.Wait()
	close(results)
	var (
		ok    int
		tooks []time.Duration
		addrs = map[string]string{}
	)
	for r := range results {
		tooks = append(tooks, r.took)
		if r.err != nil {
			t.Errorf("%s: %v (after %v)", r.id, r.err, r.took.Round(time.Millisecond))
			continue
		}
		ok++
		a := r.att.Addresses[0].Address.Addr().String()
		if other, dup := addrs[a]; dup {
			t.Errorf("%s given to %s and %s", a, other, r.id)
		}
		addrs[a] = r.id
	}
	sort.Slice(tooks, func(i, j int) bool { return tooks[i] < tooks[j] })
	t.Logf("etcd (3 members) killed, restarted %v later: %d of %d allocations succeeded; took min %v, median %v, max %v (etcd.outage_wait %v)",
		restarted.Round(time.Millisecond), ok, perNode*len(nodes), tooks[0].Round(time.Millisecond),
		tooks[len(tooks)/2].Round(time.Millisecond), tooks[len(tooks)-1].Round(time.Millisecond), config.DefaultEtcdOutageWait)
	atts := l.consistent(ctxT(t, 20*time.Second))
	if len(atts) != perNode*len(nodes) {
		t.Errorf("%d attachments in the store, want %d", len(atts), perNode*len(nodes))
	}
}
