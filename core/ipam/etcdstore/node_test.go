package etcdstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// waitFor polls cond until it holds or the bound (generous, for a loaded
// machine) runs out.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func heartbeat(t *testing.T, s *etcdstore.Store, node string, ttl time.Duration) *etcdstore.Heartbeat {
	t.Helper()
	hb, err := s.Heartbeat(context.Background(), node, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hb.Stop)
	return hb
}

// TestDuplicateNodeReportedByBoth: a second agent with the same node name
// is reported by the newcomer at once and by the holder within a round;
// when the newcomer stops, the holder is fine again; when the holder stops,
// a waiting newcomer takes the name over.
func TestDuplicateNodeReportedByBoth(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	a := newStore(t, c.Endpoints(), p)
	b := newStore(t, c.Endpoints(), p)
	const ttl = 3 * time.Second

	hbA := heartbeat(t, a, "node-1", ttl)
	if err := hbA.Err(); err != nil {
		t.Fatalf("first agent: %v", err)
	}
	if alive, _, err := a.NodeAlive(context.Background(), "node-1"); err != nil || !alive {
		t.Fatalf("NodeAlive after the first heartbeat: %v %v", alive, err)
	}
	hbB := heartbeat(t, b, "node-1", ttl)
	var dup *etcdstore.DuplicateNodeError
	if err := hbB.Err(); !errors.As(err, &dup) || dup.Other.Instance != hbA.Info().Instance {
		t.Fatalf("newcomer: Err = %v, want a DuplicateNodeError naming instance %s", err, hbA.Info().Instance)
	}
	if !strings.Contains(hbB.Err().Error(), "node_name") {
		t.Errorf("the error does not say what to change: %v", hbB.Err())
	}
	took := waitFor(t, ttl+5*time.Second, "the holder reports the newcomer", func() bool {
		return errors.As(hbA.Err(), &dup) && dup.Other.Instance == hbB.Info().Instance
	})
	t.Logf("holder reported the duplicate after %v: %v", took, hbA.Err())

	hbB.Stop()
	waitFor(t, ttl+5*time.Second, "the holder is fine once the newcomer stops", func() bool { return hbA.Err() == nil })

	// A waiting newcomer takes over when the holder goes.
	hbC := heartbeat(t, b, "node-1", ttl)
	if !errors.Is(hbC.Err(), etcdstore.ErrDuplicateNode) {
		t.Fatalf("third agent: %v", hbC.Err())
	}
	hbA.Stop()
	waitFor(t, ttl+5*time.Second, "the newcomer takes the name over", func() bool { return hbC.Err() == nil })
	live, _ := a.Client().Get(context.Background(), p+"nodes/node-1/live")
	var info etcdstore.NodeInfo
	if len(live.Kvs) != 1 || json.Unmarshal(live.Kvs[0].Value, &info) != nil || info.Instance != hbC.Info().Instance {
		t.Fatalf("live key after takeover: %v", live.Kvs)
	}
}

// TestDeadTwinTakenOver: a record left by a process of this host and boot
// that no longer runs (an agent killed and restarted at once) is taken
// over, not reported as a duplicate.
func TestDeadTwinTakenOver(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	s := newStore(t, c.Endpoints(), p)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	rec, _ := json.Marshal(etcdstore.NodeInfo{Node: "n", Instance: "old", PID: dead.Process.Pid, BootID: strings.TrimSpace(string(boot)), TTLSeconds: 30})
	g, err := s.Client().Grant(context.Background(), 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(context.Background(), p+"nodes/n/live", string(rec), clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	hb := heartbeat(t, s, "n", 3*time.Second)
	if err := hb.Err(); err != nil {
		t.Fatalf("a dead twin's record was not taken over: %v", err)
	}
	// The same dead pid recorded by another boot (another host, or before
	// a reboot) proves nothing about that agent: a duplicate.
	rec, _ = json.Marshal(etcdstore.NodeInfo{Node: "m", Instance: "other", PID: dead.Process.Pid, BootID: "another-boot", TTLSeconds: 30})
	s.Client().Put(context.Background(), p+"nodes/m/live", string(rec), clientv3.WithLease(g.ID))
	if hb := heartbeat(t, s, "m", 3*time.Second); !errors.Is(hb.Err(), etcdstore.ErrDuplicateNode) {
		t.Fatalf("a record of another boot was taken over: %v", hb.Err())
	}
}

// TestNodeAliveAfterStop: a clean stop ends the heartbeat at once and
// NodeAlive's expiredAt is the stop time; a node never seen has none.
func TestNodeAliveAfterStop(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	ctx := context.Background()
	if alive, at, err := s.NodeAlive(ctx, "ghost"); err != nil || alive || !at.IsZero() {
		t.Fatalf("never seen node: %v %v %v", alive, at, err)
	}
	hb := heartbeat(t, s, "n1", 3*time.Second)
	before := time.Now()
	hb.Stop()
	alive, at, err := s.NodeAlive(ctx, "n1")
	if err != nil || alive {
		t.Fatalf("after Stop: alive=%v err=%v", alive, err)
	}
	if at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("expiredAt %v, want the stop time (about %v)", at, before)
	}
}

// TestKilledClientLeasesExpire: a client process killed with -9 leaves a
// heartbeat and quarantine keys with a TTL; both disappear once their
// leases run out (never before the TTL), and NodeAlive then reports the
// node dead with an expiredAt no earlier than the kill.
func TestKilledClientLeasesExpire(t *testing.T) {
	c := etcdlab.Start(t, 1)
	p := uniquePrefix()
	s := newStore(t, c.Endpoints(), p)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClient$")
	cmd.Env = append(os.Environ(), "ETCDSTORE_HELPER="+strings.Join(c.Endpoints(), ",")+";"+p)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if alive, _, _ := s.NodeAlive(ctx, "helper"); !alive {
		t.Fatal("the helper's heartbeat is not live")
	}
	if es, _ := s.List(ctx, "q/"); len(es) != 5 {
		t.Fatalf("%d quarantine keys, want 5", len(es))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()
	tookHB := waitFor(t, 20*time.Second, "the dead client's heartbeat expires", func() bool {
		alive, _, err := s.NodeAlive(ctx, "helper")
		return err == nil && !alive
	})
	tookQ := waitFor(t, 20*time.Second, "the dead client's TTL keys expire", func() bool {
		es, err := s.List(ctx, "q/")
		return err == nil && len(es) == 0
	})
	_, at, _ := s.NodeAlive(ctx, "helper")
	if at.Before(killed) {
		t.Fatalf("expiredAt %v is before the kill at %v: a GC would reclaim too early", at, killed)
	}
	t.Logf("after kill -9: heartbeat (TTL 3s) gone in %v, TTL-4s keys gone in %v; expiredAt is %v after the kill",
		tookHB.Round(10*time.Millisecond), tookQ.Round(10*time.Millisecond), at.Sub(killed).Round(time.Second))
}

// TestHelperClient is the client process of TestKilledClientLeasesExpire.
func TestHelperClient(t *testing.T) {
	env := os.Getenv("ETCDSTORE_HELPER")
	if env == "" {
		return // run only as the helper
	}
	eps, prefix, _ := strings.Cut(env, ";")
	s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: strings.Split(eps, ","), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(context.Background(), "helper", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Commit(context.Background(), nil, []ipam.Op{{Key: fmt.Sprintf("q/%d", i), Value: []byte("q"), TTL: 4 * time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
}

// TestPoolHash: the first node records its definition, the same one
// passes, a different one is refused naming the node and the lines that
// differ, and SetPoolHash replaces it.
func TestPoolHash(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	ctx := context.Background()
	def := etcdstore.CanonicalDefinition(map[string]string{"subnet": "10.20.0.0/24", "ranges": "10.20.0.10-10.20.0.200", "gateway": "10.20.0.1"})
	same := etcdstore.CanonicalDefinition(map[string]string{"gateway": "10.20.0.1", "subnet": "10.20.0.0/24", "ranges": "10.20.0.10-10.20.0.200"})
	if err := s.PoolHash(ctx, "vlan100", "node-a", def); err != nil {
		t.Fatal(err)
	}
	if err := s.PoolHash(ctx, "vlan100", "node-b", same); err != nil {
		t.Fatalf("the same definition in another order: %v", err)
	}
	other := etcdstore.CanonicalDefinition(map[string]string{"subnet": "10.20.0.0/24", "ranges": "10.20.0.10-10.20.0.200", "gateway": "10.20.0.254"})
	err := s.PoolHash(ctx, "vlan100", "node-c", other)
	var mm *etcdstore.PoolMismatchError
	if !errors.As(err, &mm) || !errors.Is(err, etcdstore.ErrPoolDefinitionDiffers) {
		t.Fatalf("a different gateway: %v", err)
	}
	for _, want := range []string{`"vlan100"`, `node "node-a"`, `"gateway = 10.20.0.1"`, `"gateway = 10.20.0.254"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}
	if len(mm.OnlyStored) != 1 || len(mm.OnlyOurs) != 1 {
		t.Errorf("diff %v / %v, want one line each", mm.OnlyStored, mm.OnlyOurs)
	}
	if err := s.SetPoolHash(ctx, "vlan100", "node-c", other); err != nil {
		t.Fatal(err)
	}
	if err := s.PoolHash(ctx, "vlan100", "node-c", other); err != nil {
		t.Fatalf("after SetPoolHash: %v", err)
	}
	if err := s.PoolHash(ctx, "vlan100", "node-a", def); !errors.As(err, &mm) || mm.Node != "node-c" {
		t.Fatalf("the old definition after SetPoolHash: %v", err)
	}
}

// TestHeartbeatSurvivesOutage: etcd down for longer than the heartbeat's
// TTL; the heartbeat reports etcd unreachable meanwhile and holds its node
// name again once etcd is back, by itself.
func TestHeartbeatSurvivesOutage(t *testing.T) {
	c := etcdlab.Start(t, 1)
	s := newStore(t, c.Endpoints(), uniquePrefix())
	const ttl = 2 * time.Second
	hb := heartbeat(t, s, "n1", ttl)
	if err := hb.Err(); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Stop()
	waitFor(t, 15*time.Second, "the heartbeat reports etcd unreachable", func() bool {
		return errors.Is(hb.Err(), etcdstore.ErrUnavailable)
	})
	time.Sleep(2 * ttl) // longer than the lease: its keepalive gives up
	c.Members[0].Restart()
	took := waitFor(t, 30*time.Second, "the heartbeat holds its name again", func() bool {
		alive, _, err := s.NodeAlive(context.Background(), "n1")
		return hb.Err() == nil && err == nil && alive
	})
	t.Logf("heartbeat back %v after the restart of etcd", took.Round(time.Millisecond))
}
