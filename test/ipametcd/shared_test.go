package ipametcd

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// TestThreeNodesShareOnePool is the acceptance of pools shared in etcd: three agents
// on three node namespaces, one pool in a 3-member etcd, 300 allocations
// each at once with the etcd leader killed in the middle: 900 distinct
// addresses, none lost (every request ends allocated), the store
// consistent, and `ipam pools` the same on every node.
func TestThreeNodesShareOnePool(t *testing.T) {
	t.Parallel() // beside TestAgentKilledMidBurst, which mostly waits
	const perNode, workers = 300, 8
	l := newLab(t, 3)
	pool := sharedPool("10.80.0.10-10.80.3.250")
	nodes := l.startNodes(pool, "rack1-a", "rack1-b", "rack1-c")
	ctx := ctxT(t, 100*time.Second)
	var killOnce sync.Once
	var killed string
	results := make([]map[string]api.Attachment, len(nodes))
	failed := make([]int, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	start := time.Now()
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], failed[i], errs[i] = burst(ctx, n, perNode, workers, func(k int) {
				if i == 0 && k == perNode/3 {
					killOnce.Do(func() { killed = l.cluster.KillLeader().Name })
				}
			})
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %s: %v", nodes[i].Name, err)
		}
	}
	seen := map[string]string{}
	total := 0
	for i, res := range results {
		if len(res) != perNode {
			t.Errorf("node %s: %d allocations, want %d", nodes[i].Name, len(res), perNode)
		}
		for id, att := range res {
			total++
			if len(att.Addresses) != 1 || att.Node != nodes[i].Name {
				t.Fatalf("%s: %+v", id, att)
			}
			a := att.Addresses[0].Address.Addr().String()
			if prev, dup := seen[a]; dup {
				t.Errorf("address %s given to %s and %s", a, prev, id)
			}
			seen[a] = id
		}
	}
	if len(seen) != 3*perNode {
		t.Errorf("%d distinct addresses, want %d", len(seen), 3*perNode)
	}
	t.Logf("%d allocations on 3 nodes in %v (%.0f/s) with etcd leader %s killed after %d on the first node; failed attempts retried by the clients: %v",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), killed, perNode/3, failed)
	atts := l.consistent(ctx)
	if len(atts) != 3*perNode {
		t.Errorf("the store holds %d attachments, want %d", len(atts), 3*perNode)
	}
	for _, a := range atts {
		if a.State != "allocated" {
			t.Errorf("%v is %s in the store", a.AttachmentKey, a.State)
		}
	}
	var first api.PoolUsage
	for i, n := range nodes {
		u := cliPools(t, n)
		if u.Allocated != 3*perNode || u.Reserved != 0 || u.Store != "etcd" {
			t.Errorf("%s: ipam pools: %+v", n.Name, u)
		}
		if i == 0 {
			first = u
		} else if fmt.Sprint(u) != fmt.Sprint(first) {
			t.Errorf("ipam pools differs between %s and %s:\n%+v\n%+v", nodes[0].Name, n.Name, first, u)
		}
	}
}

// TestLastAddressRacedByThreeNodes: the pool's last free address asked
// for by three nodes at once: exactly one wins, the others get pool_full.
func TestLastAddressRacedByThreeNodes(t *testing.T) {
	l := newLab(t, 1)
	pool := sharedPool("10.80.0.10-10.80.0.12")
	nodes := l.startNodes(pool, "n1", "n2", "n3")
	ctx := ctxT(t, 60*time.Second)
	for round := 0; round < 3; round++ {
		// Fill all but one address.
		for i := 0; i < 2; i++ {
			if _, err := nodes[0].Client.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprintf("fill-%d-%d", round, i), Interface: "eth0", Pools: []string{"shared"}}); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 3)
		gate := make(chan struct{})
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				_, errs[i] = n.Client.Allocate(ctx, api.AllocateRequest{ContainerID: fmt.Sprintf("race-%d-%s", round, n.Name), Interface: "eth0", Pools: []string{"shared"}})
			}()
		}
		close(gate)
		wg.Wait()
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case strings.Contains(err.Error(), api.CodePoolFull) || strings.Contains(err.Error(), "full"):
			default:
				t.Errorf("round %d: %s: %v, want pool full", round, nodes[i].Name, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1 (errors %v)", round, wins, errs)
		}
		l.consistent(ctx)
		// Empty the pool for the next round.
		for _, n := range nodes {
			list, err := n.Client.List(ctx, "", "")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range list {
				if _, err := n.Client.Release(ctx, api.ReleaseRequest{ContainerID: a.ContainerID, Interface: a.Interface}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// readiness returns the readiness code and body of n.
func readiness(n *node) (int, string) {
	code, body, err := n.Get(n.Health, "/v1/runtime/readiness")
	if err != nil {
		return 0, err.Error()
	}
	return code, string(body)
}

// storeState is the state of the ipam-store component in a readiness
// body, and its error.
func storeState(body string) (string, string) {
	var r struct {
		Components []struct{ Name, State, Error string }
	}
	if json.Unmarshal([]byte(body), &r) != nil {
		return "", ""
	}
	for _, c := range r.Components {
		if c.Name == "ipam-store" {
			return c.State, c.Error
		}
	}
	return "", ""
}

// waitReadiness waits until n's readiness answers want with the ipam-store
// component in state store, and returns the component's error.
func waitReadiness(t *testing.T, n *node, want int, store string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var code int
	var body string
	for time.Now().Before(deadline) {
		code, body = readiness(n)
		if st, why := storeState(body); code == want && st == store {
			return why
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: readiness %d %s after %v, want %d with ipam-store %s", n.Name, code, body, timeout, want, store)
	return ""
}
