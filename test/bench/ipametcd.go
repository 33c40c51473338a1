package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// ipamEtcdAllocs is how many allocations a row makes, over all its agents.
const ipamEtcdAllocs = 900

// benchIPAMEtcdAgents measures allocations through the control API of
// real agents, each in its own node namespace: one agent on the embedded
// bbolt store, one agent on a 3-member etcd, and three agents sharing one
// pool in that etcd (the shared-pool setup), in the same run. Detection is off:
// the store is what is measured.
func benchIPAMEtcdAgents(s *scope, b *bins, out io.Writer) []target {
	l := newEtcdAgentLab(s, b)
	start := func(row, node, store string) *agent { return l.start(row, node, store, "") }
	t := newTable("IPAM on etcd: allocations through the control API of real agents (detection off)",
		"store", "agents", "concurrency per agent", "allocations", "allocations/s", "p50 ms", "p99 ms", "retries", "retries/allocation", "errors", "duplicates")
	var targets []target
	for _, row := range []struct {
		name, store string
		agents      int
	}{{"bbolt", "local", 1}, {"etcd1", "etcd", 1}, {"etcd3", "etcd", 3}} {
		progress("ipam-etcd: %s, %d agent(s)", row.store, row.agents)
		var agents []*agent
		for i := 0; i < row.agents; i++ {
			agents = append(agents, start(row.name, fmt.Sprintf("%s-n%d", row.name, i), row.store))
		}
		r := etcdAgentsLoad(agents, ipamEtcdAllocs/row.agents, 16)
		label := "bbolt (embedded)"
		if row.store == "etcd" {
			label = fmt.Sprintf("etcd %s (3 members)", etcdVersion())
		}
		t.add(label, row.agents, 16, r.n, fmt.Sprintf("%.0f", float64(r.n)/r.elapsed.Seconds()), r.lat.p50(), r.lat.p99(),
			r.retries, fmt.Sprintf("%.2f", float64(r.retries)/float64(max(r.n, 1))), r.errs, r.dups)
		if r.firstErr != "" {
			t.note("- %s, %d agents: first error: %s", label, row.agents, r.firstErr)
		}
		if row.agents == 3 {
			targets = append(targets, target{
				what: "IPAM etcd, 3 agents on one pool: 900 allocations distinct, no error",
				want: "900 distinct, 0 errors",
				got:  fmt.Sprintf("%d allocations, %d duplicates, %d errors, %.0f/s", r.n, r.dups, r.errs, float64(r.n)/r.elapsed.Seconds()),
				met:  r.n == ipamEtcdAllocs && r.dups == 0 && r.errs == 0,
			})
		}
		for _, a := range agents {
			a.stop()
		}
	}
	t.note("Each agent runs in its own node namespace on a LAN and reaches the 3-member etcd (all on this 2-core machine) through a gateway namespace; latency is one POST /v1/ipam/allocate as the client sees it; retries are spiderpool_ipam_update_retries_total (lost compare-and-swap races) summed over the agents.")
	t.write(out)
	return targets
}

type etcdAgentsRun struct {
	n, errs, dups int
	retries       int64
	elapsed       time.Duration
	lat           sample
	firstErr      string
}

// etcdAgentsLoad makes per allocations on each agent with conc workers
// each, all agents at once.
func etcdAgentsLoad(agents []*agent, per, conc int) etcdAgentsRun {
	var (
		mu   sync.Mutex
		r    etcdAgentsRun
		held = map[netip.Addr]bool{}
		wg   sync.WaitGroup
	)
	before := int64(0)
	for _, a := range agents {
		before += retriesOf(a)
	}
	t0 := time.Now()
	for ai, a := range agents {
		c := &ipamapi.Client{SocketPath: a.Socket}
		next := make(chan int, per)
		for i := 0; i < per; i++ {
			next <- i
		}
		close(next)
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					s0 := time.Now()
					att, err := c.Allocate(ctx, ipamapi.AllocateRequest{ContainerID: fmt.Sprintf("b%d-%d", ai, i), Interface: "eth0", Pools: []string{"bench"}})
					took := time.Since(s0)
					cancel()
					mu.Lock()
					if err != nil {
						r.errs++
						if r.firstErr == "" {
							r.firstErr = err.Error()
						}
					} else {
						r.n++
						r.lat = append(r.lat, took)
						addr := att.Addresses[0].Address.Addr()
						if held[addr] {
							r.dups++
						}
						held[addr] = true
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	r.elapsed = time.Since(t0)
	for _, a := range agents {
		r.retries += retriesOf(a)
	}
	r.retries -= before
	return r
}

// retriesOf reads spiderpool_ipam_update_retries_total from the agent's
// metrics (0 when none was counted yet).
func retriesOf(a *agent) int64 {
	resp, err := a.httpClient(5 * time.Second).Get("http://127.0.0.1:5711/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var n int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "spiderpool_ipam_update_retries_total") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			n += int64(v)
		}
	}
	return n
}

// etcdAgentLab is a 3-member etcd reachable from a LAN of node namespaces
// through a gateway namespace, and the agents started on it.
type etcdAgentLab struct {
	s       *scope
	b       *bins
	lan     *netlab.LAN
	cluster *etcdlab.Cluster
	eps     []string // quoted client URLs as the nodes reach them
	nodes   int
}

func newEtcdAgentLab(s *scope, b *bins) *etcdAgentLab {
	l := &etcdAgentLab{s: s, b: b, lan: netlab.NewLAN(s)}
	gw := l.lan.AddHost("etcdgw", "02:77:00:00:00:fa", "10.77.0.250/24")
	l.cluster = etcdlab.Start(s, 3)
	for _, e := range l.cluster.Gateway(s, gw.Path, "10.77.0.250") {
		l.eps = append(l.eps, strconv.Quote(e))
	}
	return l
}

// start runs an agent named node in a new node namespace, with one pool
// "bench" in store, keys under /bench-<row>/; ipam adds to the ipam block.
func (l *etcdAgentLab) start(row, node, store, ipam string) *agent {
	s := l.s
	l.nodes++
	h := l.lan.AddHost(fmt.Sprintf("bn%d", l.nodes), fmt.Sprintf("02:77:00:00:01:%02x", l.nodes), fmt.Sprintf("10.77.0.%d/24", 10+l.nodes))
	poolDir := s.TempDir()
	pool := fmt.Sprintf("pool \"bench\" {\n  subnet = \"10.80.0.0/22\"\n  ranges = [\"10.80.0.10-10.80.3.250\"]\n  conflict_detection = false\n  gateway_detection = false\n  store = %q\n}\n", store)
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(pool), 0o644); err != nil {
		s.Fatal(err)
	}
	cfg := fmt.Sprintf("node_name = %q\nmetrics {\n  enabled = true\n}\nipam {\n  db_path = %q\n%s}\netcd {\n  endpoints = [%s]\n  prefix = \"/bench-%s/\"\n  request_timeout = \"1s\"\n}\nplugin \"sysctl-tuner\" { enabled = false }\n",
		node, filepath.Join(s.TempDir(), "ipam.db"), ipam, strings.Join(l.eps, ", "), row)
	a := startAgent(s, l.b, agentOpts{name: node, nsPath: h.Path, args: []string{"--ipam-config-dir", poolDir}, config: cfg})
	a.waitReady(30 * time.Second)
	return a
}
