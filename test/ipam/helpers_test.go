package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// ipamAgent is an agent with IPAM on.
type ipamAgent struct {
	*agenttest.Agent
	PoolDir string
	DB      string
	Client  *api.Client
}

type agentOpts struct {
	pools  string // HCL of the pool file
	extra  string // more agent HCL
	ipam   string // more attributes of the ipam block
	env    []string
	db     string // reuse a store file
	netns  string // reuse the agent's namespace
	noWait bool
}

func startIPAM(t *testing.T, o agentOpts) *ipamAgent {
	t.Helper()
	poolDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(o.pools), 0o644); err != nil {
		t.Fatal(err)
	}
	return startWithDir(t, o, poolDir)
}

func startWithDir(t *testing.T, o agentOpts, poolDir string) *ipamAgent {
	t.Helper()
	db := o.db
	if db == "" {
		db = filepath.Join(t.TempDir(), "ipam.db")
	}
	cfg := fmt.Sprintf("ipam {\n  db_path = %q\n%s}\n", db, o.ipam) + o.extra
	a := agenttest.Start(t, bins, agenttest.Options{Config: cfg, Env: o.env, Netns: o.netns, Args: []string{"--ipam-config-dir", poolDir}})
	ia := &ipamAgent{Agent: a, PoolDir: poolDir, DB: db, Client: &api.Client{SocketPath: a.Socket}}
	if !o.noWait {
		a.WaitReady(15 * time.Second)
	}
	return ia
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// workload adds a namespace plugged into the LAN with eth0 (no address),
// as a CNI main plugin leaves it; down when down is set.
func workload(t *testing.T, lan *netlab.LAN, role, mac string, down bool) *netlab.Host {
	t.Helper()
	h := lan.AddHost(role, mac)
	if down {
		netlab.IP(t, h.NS, "link", "set", "eth0", "down")
	}
	return h
}

// consistent opens the store file of a stopped agent and checks its
// records against each other; it returns the allocations.
func consistent(t *testing.T, db string) []api.Attachment {
	t.Helper()
	s, err := boltstore.Open(db, boltstore.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := coreipam.Consistent(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	es, err := s.List(context.Background(), "attachments/")
	if err != nil {
		t.Fatal(err)
	}
	var out []api.Attachment
	for _, e := range es {
		var a api.Attachment
		if err := json.Unmarshal(e.Value, &a); err != nil {
			t.Fatal(err)
		}
		if a.State != coreipam.StateAllocated {
			t.Errorf("dangling %s reservation: %+v", a.State, a)
		}
		out = append(out, a)
	}
	return out
}

func poolUsage(t *testing.T, a *ipamAgent, name string) api.PoolUsage {
	t.Helper()
	ps, err := a.Client.Pools(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no pool %s in %+v", name, ps)
	return api.PoolUsage{}
}

func apiErr(t *testing.T, err error) *api.APIError {
	t.Helper()
	ae, ok := err.(*api.APIError)
	if !ok {
		t.Fatalf("error %v (%T), want an API error", err, err)
	}
	return ae
}

// tempNetns makes a namespace the test may delete itself (netlab's fail
// the test if they are gone at cleanup).
func tempNetns(t *testing.T, role string) string {
	t.Helper()
	// netlab's name pattern, so that netlab.Sweep removes it after a crash;
	// numbers from 1e6 up do not collide with netlab's own counter.
	name := fmt.Sprintf("%s%d-%d-%s", netlab.Prefix, os.Getpid(), 1_000_000+nsCount.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name
}

var nsCount atomic.Int64

func has(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// checkQuarantineShown asserts that `ipam show ADDRESS` (text and --json)
// shows addr quarantined, with its cause, the MAC that answered and the
// quarantine's end, through cli (the `ipam` CLI of the agent under test).
func checkQuarantineShown(t *testing.T, cli func(args ...string) (string, int), addr netip.Addr, mac string) {
	t.Helper()
	show, code := cli("show", addr.String())
	if code != 0 || !has(show, "quarantined", mac, "in use by") {
		t.Errorf("show %s does not show the quarantine with its MAC %s: exit %d\n%s", addr, mac, code, show)
	}
	out, code := cli("show", addr.String(), "--json")
	var info api.AddressInfo
	if err := json.Unmarshal([]byte(out), &info); code != 0 || err != nil {
		t.Fatalf("show %s --json: exit %d %v\n%s", addr, code, err, out)
	}
	if len(info.Records) != 1 {
		t.Fatalf("show %s --json: records %+v, want the quarantine", addr, info.Records)
	}
	r := info.Records[0]
	if r.State != "quarantined" || r.MAC != mac || !r.Until.After(time.Now()) || !strings.Contains(r.Reason, "in use by") || len(info.History) == 0 {
		t.Errorf("show %s --json: %+v, want quarantined by %s until a time to come, and the history", addr, info, mac)
	}
}
