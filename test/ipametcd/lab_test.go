// Package ipametcd runs agents that share IPAM pools in a real etcd: real
// etcd members (test/etcdlab), real agent binaries (test/agenttest), each
// agent in its own node namespace on a netlab LAN.
//
// The members listen on the host's loopback; the node namespaces reach
// them through a gateway namespace on the LAN (10.77.0.250) where the test
// process listens and forwards each connection to a member. A partition of
// one node is a blackhole route for it in the gateway: its packets arrive,
// the answers vanish, as with a cut cable.
package ipametcd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

var bins agenttest.Binaries

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, &bins)) }

const (
	gwAddr = "10.77.0.250"
	prefix = "/spiderpool-test/"
)

type lab struct {
	t       *testing.T
	cluster *etcdlab.Cluster
	lan     *netlab.LAN
	gw      *netlab.Host
	// endpoints are the members as the nodes reach them.
	endpoints []string
	cli       *clientv3.Client // on loopback: the test's own view
	nodes     int
}

// newLab starts an etcd of members members and the LAN with its gateway.
func newLab(t *testing.T, members int) *lab {
	t.Helper()
	l := &lab{t: t, cluster: etcdlab.Start(t, members), lan: netlab.NewLAN(t)}
	l.gw = l.lan.AddHost("etcdgw", "02:77:00:00:00:fa", gwAddr+"/24")
	l.endpoints = l.cluster.Gateway(t, l.gw.Path, gwAddr)
	cli, err := clientv3.New(clientv3.Config{Endpoints: l.cluster.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	l.cli = cli
	return l
}

type node struct {
	*agenttest.Agent
	Name    string
	Addr    string
	PoolDir string
	Client  *api.Client
}

type nodeOpts struct {
	name   string // node_name
	pools  string // HCL of the pool file
	noWait bool
}

// startNode starts an agent in a new node namespace on the LAN.
func (l *lab) startNode(o nodeOpts) *node {
	t := l.t
	t.Helper()
	l.nodes++
	addr := fmt.Sprintf("10.77.0.%d", 10+l.nodes)
	h := l.lan.AddHost(fmt.Sprintf("node%d", l.nodes), fmt.Sprintf("02:77:00:00:00:%02x", l.nodes), addr+"/24")
	poolDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(o.pools), 0o644); err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, e := range l.endpoints {
		eps = append(eps, fmt.Sprintf("%q", e))
	}
	cfg := fmt.Sprintf(`node_name = %q
ipam {
  db_path         = %q
  gc_interval     = "1s"
  gc_grace_period = "2s"
}
etcd {
  endpoints       = [%s]
  prefix          = %q
  dial_timeout    = "2s"
  request_timeout = "1s"
}
`, o.name, filepath.Join(t.TempDir(), "ipam.db"), strings.Join(eps, ", "), prefix)
	a := agenttest.Start(t, bins, agenttest.Options{Config: cfg, Netns: h.NS, Args: []string{"--ipam-config-dir", poolDir}})
	n := &node{Agent: a, Name: o.name, Addr: addr, PoolDir: poolDir, Client: &api.Client{SocketPath: a.Socket}}
	if !o.noWait {
		a.WaitReady(30 * time.Second)
	}
	return n
}

// startNodes starts a node per name, one after the other, all with the
// same pool file: the nodes of a rack sharing one pool.
func (l *lab) startNodes(pools string, names ...string) []*node {
	l.t.Helper()
	nodes := make([]*node, len(names))
	for i, name := range names {
		nodes[i] = l.startNode(nodeOpts{name: name, pools: pools})
	}
	return nodes
}

func sharedPool(ranges string) string {
	return fmt.Sprintf(`pool "shared" {
  subnet             = "10.80.0.0/22"
  ranges             = [%q]
  conflict_detection = false
  gateway_detection  = false
  store              = "etcd"
}
`, ranges)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// burst allocates count attachments on n with workers at once, each
// request retried (same key: idempotent) until it succeeds or ctx ends,
// and returns the attachments and the failed attempts.
func burst(ctx context.Context, n *node, count, workers int, started func(int)) (map[string]api.Attachment, int, error) {
	var mu sync.Mutex
	out := map[string]api.Attachment{}
	failed := 0
	next := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("%s-c%04d", n.Name, i)
				for {
					att, err := n.Client.Allocate(ctx, api.AllocateRequest{ContainerID: id, Interface: "eth0", Pools: []string{"shared"}})
					if err == nil {
						mu.Lock()
						out[id] = att
						mu.Unlock()
						break
					}
					mu.Lock()
					failed++
					mu.Unlock()
					if ctx.Err() != nil {
						errc <- fmt.Errorf("%s: %s: %v", n.Name, id, err)
						return
					}
					time.Sleep(50 * time.Millisecond) // a client's back-off, not synchronisation
				}
			}
		}()
	}
	for i := 0; i < count; i++ {
		if started != nil {
			started(i)
		}
		select {
		case next <- i:
		case err := <-errc:
			close(next)
			wg.Wait()
			return out, failed, err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		return out, failed, err
	default:
	}
	return out, failed, nil
}

type addrRec struct {
	Pool  string            `json:"pool"`
	State string            `json:"state"`
	Owner api.AttachmentKey `json:"owner"`
	Node  string            `json:"node"`
}

// consistent checks the store as etcd holds it: every attachment's
// addresses are keys owned by it in its state, and every owned address key
// is listed by its attachment. It returns the attachments by key.
func (l *lab) consistent(ctx context.Context) map[api.AttachmentKey]api.Attachment {
	t := l.t
	t.Helper()
	resp, err := l.cli.Get(ctx, prefix+"attachments/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	atts := map[api.AttachmentKey]api.Attachment{}
	listed := map[string]api.AttachmentKey{}
	for _, kv := range resp.Kvs {
		var a api.Attachment
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		atts[a.AttachmentKey] = a
		for _, ip := range a.Addresses {
			k := ip.Address.Addr().String()
			if prev, dup := listed[k]; dup {
				t.Errorf("address %s is listed by %v and %v", k, prev, a.AttachmentKey)
			}
			listed[k] = a.AttachmentKey
		}
	}
	// The same revision: one snapshot of the store, not two moments.
	resp, err = l.cli.Get(ctx, prefix+"domains/default/addrs/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		t.Fatal(err)
	}
	keyed := map[string]bool{}
	for _, kv := range resp.Kvs {
		addr := string(kv.Key[strings.LastIndexByte(string(kv.Key), '/')+1:])
		var r addrRec
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		if r.State == "quarantined" || r.Pool != "shared" {
			continue
		}
		keyed[addr] = true
		a, ok := atts[r.Owner]
		if !ok {
			t.Errorf("address key %s (%s) is owned by %v, which has no attachment", addr, r.State, r.Owner)
			continue
		}
		if listed[addr] != r.Owner || r.State != a.State || r.Node != a.Node {
			t.Errorf("address key %s: %+v; its attachment: state %s node %s listed-by %v", addr, r, a.State, a.Node, listed[addr])
		}
	}
	for k, owner := range listed {
		if !keyed[k] {
			t.Errorf("attachment %v lists %s, which has no address key", owner, k)
		}
	}
	return atts
}

// cliPools runs `spiderpool-agent ipam pools --json` on n.
func cliPools(t *testing.T, n *node) api.PoolUsage {
	t.Helper()
	out, errOut, code := n.CLI("ipam", "pools", "--json", "--socket", n.Socket)
	if code != 0 {
		t.Fatalf("%s: ipam pools: exit %d: %s", n.Name, code, errOut)
	}
	var pools []api.PoolUsage
	if err := json.Unmarshal([]byte(out), &pools); err != nil || len(pools) != 1 {
		t.Fatalf("%s: ipam pools: %v: %s", n.Name, err, out)
	}
	return pools[0]
}
