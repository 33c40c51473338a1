package ipametcd

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func alloc(t *testing.T, n *node, id string) (api.Attachment, error, time.Duration) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	att, err := n.Client.Allocate(ctx, api.AllocateRequest{ContainerID: id, Interface: "eth0", Pools: []string{"shared"}})
	return att, err, time.Since(start)
}

// TestEtcdStoppedAndStarted: with etcd down an allocation waits
// etcd.outage_wait, then fails with a clear error and leaves nothing behind, readiness is 503 naming the
// ipam-store component while the plugins stay ready, and when etcd is back
// IPAM works again without restarting the agent.
func TestEtcdStoppedAndStarted(t *testing.T) {
	l := newLab(t, 1)
	n := l.startNode(nodeOpts{name: "solo", pools: sharedPool("10.80.0.10-10.80.0.100")})
	pid := n.PID()
	if _, err, _ := alloc(t, n, "before"); err != nil {
		t.Fatal(err)
	}
	l.cluster.Members[0].Stop()
	_, err, took := alloc(t, n, "during")
	if err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("allocation with etcd down: %v, want an error naming etcd", err)
	}
	// It waits etcd.outage_wait for etcd to come back, then fails; a
	// loaded machine gets room, not a minute.
	if took < config.DefaultEtcdOutageWait || took > config.DefaultEtcdOutageWait+5*time.Second {
		t.Errorf("allocation with etcd down took %v, want etcd.outage_wait (%v) and then a clear error", took, config.DefaultEtcdOutageWait)
	}
	if !strings.Contains(err.Error(), "etcd.outage_wait") {
		t.Errorf("the error %q does not say it waited etcd.outage_wait", err)
	}
	t.Logf("etcd down: failed in %v: %v", took.Round(time.Millisecond), err)
	why := waitReadiness(t, n, http.StatusServiceUnavailable, "down", 20*time.Second)
	t.Logf("readiness while etcd is down: ipam-store down: %s", why)
	if _, body := readiness(n); strings.Contains(body, `"failed"`) || strings.Contains(body, `"restarting"`) {
		t.Errorf("the plugins should stay ready while etcd is down: %s", body)
	}
	l.cluster.Members[0].Restart()
	waitReadiness(t, n, http.StatusOK, "up", 30*time.Second)
	att, err, _ := alloc(t, n, "after")
	if err != nil {
		t.Fatalf("allocation after etcd came back: %v", err)
	}
	if n.PID() != pid {
		t.Fatal("the agent was restarted")
	}
	atts := l.consistent(ctxT(t, 10*time.Second))
	if _, half := atts[api.AttachmentKey{ContainerID: "during", Interface: "eth0"}]; half {
		t.Error("the allocation made while etcd was down left an attachment")
	}
	if len(atts) != 2 {
		t.Errorf("%d attachments in the store, want 2 (before, after)", len(atts))
	}
	_ = att
}

// TestPartitionOfOneNode: a node cut off from etcd fails within
// etcd.outage_wait and says its store is down; another node keeps allocating; healed, the cut node
// works again by itself.
func TestPartitionOfOneNode(t *testing.T) {
	l := newLab(t, 1)
	pool := sharedPool("10.80.0.10-10.80.0.100")
	cut := l.startNode(nodeOpts{name: "cut", pools: pool})
	other := l.startNode(nodeOpts{name: "other", pools: pool})
	netlab.IP(t, l.gw.NS, "route", "add", "blackhole", cut.Addr+"/32")
	healed := false
	heal := func() {
		if !healed {
			healed = true
			netlab.IP(t, l.gw.NS, "route", "del", "blackhole", cut.Addr+"/32")
		}
	}
	t.Cleanup(heal)
	_, err, took := alloc(t, cut, "cut-1")
	if err == nil {
		t.Fatal("allocation on the partitioned node succeeded")
	}
	// It waits etcd.outage_wait (its last attempt may add request_timeout,
	// 1s), then fails.
	if took > config.DefaultEtcdOutageWait+5*time.Second {
		t.Errorf("allocation on the partitioned node took %v, want it to fail after etcd.outage_wait (%v)", took, config.DefaultEtcdOutageWait)
	}
	t.Logf("partitioned: failed in %v: %v", took.Round(time.Millisecond), err)
	if _, err, _ := alloc(t, other, "other-1"); err != nil {
		t.Fatalf("the other node: %v", err)
	}
	waitReadiness(t, cut, http.StatusServiceUnavailable, "down", 30*time.Second)
	heal()
	waitReadiness(t, cut, http.StatusOK, "up", 40*time.Second)
	if _, err, _ := alloc(t, cut, "cut-2"); err != nil {
		t.Fatalf("after the partition healed: %v", err)
	}
	atts := l.consistent(ctxT(t, 10*time.Second))
	if _, half := atts[api.AttachmentKey{ContainerID: "cut-1", Interface: "eth0"}]; half {
		t.Error("the allocation attempted during the partition left an attachment")
	}
}

// TestDuplicateNodeName: two live agents with one node name: both say so
// (log, status, readiness 503 on ipam-store) and neither allocates.
func TestDuplicateNodeName(t *testing.T) {
	l := newLab(t, 1)
	pool := sharedPool("10.80.0.10-10.80.0.100")
	first := l.startNode(nodeOpts{name: "twin", pools: pool})
	second := l.startNode(nodeOpts{name: "twin", pools: pool, noWait: true})
	for _, n := range []*node{first, second} {
		why := waitReadiness(t, n, http.StatusServiceUnavailable, "down", 30*time.Second)
		if !strings.Contains(why, "twin") {
			t.Errorf("%s: readiness does not name the duplicate: %s", n.Addr, why)
		}
		t.Logf("%s: ipam-store down: %s", n.Addr, why)
		_, err, _ := alloc(t, n, "dup-"+n.Addr)
		if err == nil || !strings.Contains(err.Error(), "twin") {
			t.Errorf("%s: allocation with a duplicate node name: %v", n.Addr, err)
		}
		out, _, _ := n.CLI("status", "--socket", n.Socket)
		if !strings.Contains(out, "twin") {
			t.Errorf("%s: status does not name the duplicate: %s", n.Addr, out)
		}
	}
	for _, n := range []*node{first, second} {
		netlab.WaitFor(t, n.Addr+" logs the duplicate node name", func() (bool, error) {
			return strings.Contains(n.Log(), "also used by another live agent"), nil
		})
	}
}

// TestPoolDefinitionMismatch: a node whose definition of a shared pool
// differs refuses the pool and says which node recorded the other one and
// what differs; the first node keeps it.
func TestPoolDefinitionMismatch(t *testing.T) {
	l := newLab(t, 1)
	good := l.startNode(nodeOpts{name: "keeper", pools: sharedPool("10.80.0.10-10.80.0.100")})
	bad := l.startNode(nodeOpts{name: "stray", pools: sharedPool("10.80.0.10-10.80.0.200"), noWait: true})
	why := waitReadiness(t, bad, http.StatusServiceUnavailable, "down", 30*time.Second)
	_, err, _ := alloc(t, bad, "stray-1")
	if err == nil || !strings.Contains(err.Error(), "keeper") || !strings.Contains(err.Error(), "10.80.0.200") {
		t.Fatalf("allocation from a pool defined differently: %v, want an error naming node keeper and the differing range; readiness %s", err, why)
	}
	t.Logf("refused: %v", err)
	if _, err, _ := alloc(t, good, "keeper-1"); err != nil {
		t.Fatalf("the node that recorded the pool: %v", err)
	}
	good.WaitReady(10 * time.Second)
}

// TestAgentKilledMidBurst: an agent killed -9 with allocations in flight
// loses nothing of the other node's, and its own allocations and
// reservations are reclaimed by the other node's GC only after its
// heartbeat lease expired (10s) plus the grace period, never before.
func TestAgentKilledMidBurst(t *testing.T) {
	// Mostly a wait for the lease: it runs beside the 900-allocation test.
	t.Parallel()
	const perNode, workers = 60, 8
	l := newLab(t, 1)
	pool := sharedPool("10.80.0.10-10.80.1.250")
	live := l.startNode(nodeOpts{name: "survivor", pools: pool})
	doomed := l.startNode(nodeOpts{name: "doomed", pools: pool})
	ctx := ctxT(t, 150*time.Second)
	var killedAt time.Time
	done := make(chan error, 1)
	go func() {
		_, _, err := burst(ctx, live, perNode, workers, nil)
		done <- err
	}()
	// The doomed node's burst ends with its death: its errors are expected.
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	burst(bctx, doomed, perNode, workers, func(k int) {
		if k == perNode/2 && killedAt.IsZero() {
			doomed.Cmd.Process.Kill()
			killedAt = time.Now()
			cancel()
		}
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	held := func() int {
		n := 0
		for k, a := range l.consistent(ctx) {
			if a.Node == "doomed" {
				n++
			} else if a.State != "allocated" || a.Node != "survivor" {
				t.Errorf("%v: %+v", k, a)
			}
		}
		return n
	}
	left := held()
	if left == 0 {
		t.Fatal("the doomed node held nothing when killed: the test proves nothing")
	}
	t.Logf("killed with %d attachments held in the store", left)
	var gone time.Time
	for deadline := time.Now().Add(100 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if held() == 0 {
			gone = time.Now()
			break
		}
	}
	if gone.IsZero() {
		t.Fatal("the dead node's allocations were not reclaimed within 100s")
	}
	// The lease TTL (10s) plus the grace period (2s) is the earliest.
	if d := gone.Sub(killedAt); d < 12*time.Second {
		t.Errorf("reclaimed %v after the kill, before the lease could expire", d)
	} else {
		t.Logf("reclaimed %v after the kill", d.Round(time.Second))
	}
	if u := cliPools(t, live); u.Allocated != perNode || u.Reserved != 0 {
		t.Errorf("survivor: ipam pools: %+v", u)
	}
}
