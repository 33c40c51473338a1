// Package podman tests the `spiderpool` CNI IPAM plugin under the real
// Podman (Debian's podman with its CNI backend, runc, cgroupfs, Debian's
// containernetworking-plugins bridge) as a Podman user runs it: a bridge
// network whose bridge is the gateway (isGateway), dual-stack pools with
// both detections on, a LAN host on the bridge owning some pool addresses,
// and the real agent. Podman runs inside the test's node namespace
// (podmanlab), so that its bridge and the forwarding its bridge plugin turns
// on stay there; each test still checks that the host's forwarding is what
// it was.
package podman

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/podmanlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

var (
	bins   agenttest.Binaries
	cniBin string // the spiderpool plugin, ahead of Debian's plugins
	store  string // Podman's storage, with the image imported once
)

func TestMain(m *testing.M) { os.Exit(agenttest.MainWith(m, &bins, setup)) }

// setup builds the spiderpool plugin beside the binaries and imports the
// image into a Podman storage of this run's own, removed by the teardown.
func setup(b agenttest.Binaries) (func(), error) {
	cniBin = filepath.Join(b.Dir, "cni")
	if err := os.MkdirAll(cniBin, 0o755); err != nil {
		return nil, err
	}
	if err := cnilab.BuildSpiderpool(cniBin, agenttest.Race()); err != nil {
		return nil, err
	}
	var err error
	if store, err = os.MkdirTemp("", "podmanlab-"); err != nil {
		return nil, err
	}
	p, err := podmanlab.New(store, filepath.Join(store, "import"), "/proc/self/ns/net", cniBin, podmanlab.DistroCNIDir)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err = p.Import(ctx)
		cancel()
	}
	if err != nil {
		os.RemoveAll(store)
		return nil, fmt.Errorf("podman: %w", err)
	}
	return func() { os.RemoveAll(store) }, nil
}

// The bridge network: the bridge plugin makes the bridge the gateway
// (isGateway) only after IPAM has answered.
const (
	bridgeName = "podbr0"
	lanMAC     = "02:00:00:00:01:23"
)

const pools = `
pool "pod-v4" {
  subnet             = "10.123.0.0/24"
  ranges             = ["10.123.0.10-10.123.0.60"]
  gateway            = "10.123.0.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "pod-v6" {
  subnet             = "fd00:123::/64"
  ranges             = ["fd00:123::10-fd00:123::60"]
  gateway            = "fd00:123::1"
  conflict_detection = true
  gateway_detection  = true
}
`

// lanHostAddrs are the pool addresses a host on the bridge already owns:
// detection must skip each of them. They are spread over the range (never
// more than two in a row), since an allocation tries at most five
// candidates per pool.
func lanHostAddrs() []string {
	var out []string
	for _, i := range []int{12, 13, 20, 27, 34, 41, 48, 55} {
		out = append(out, fmt.Sprintf("10.123.0.%d/24", i), fmt.Sprintf("fd00:123::%d/64", i))
	}
	return out
}

// lab is a node namespace with Podman, the agent and a LAN host on the
// bridge Podman's network uses.
type lab struct {
	t      *testing.T
	nodeNS string
	pm     *podmanlab.Podman
	agent  *agenttest.Agent
	cfg    agenttest.Options
	api    *api.Client
	sock   string
	spool  string
	owned  map[netip.Addr]bool
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	keepHostForwarding(t)
	// The bridge exists before the network's first container, as a bridge
	// an operator made would, but without the gateway's addresses: the
	// bridge plugin adds them after IPAM answers.
	node, _ := netlab.NewBridgedNode(t, bridgeName, "lanport", "plan", lanMAC, lanHostAddrs()...)
	owned := map[netip.Addr]bool{}
	for _, a := range lanHostAddrs() {
		owned[netip.MustParsePrefix(a).Addr()] = true
	}

	// A short directory: a unix socket path has at most 107 bytes.
	sockDir := agenttest.ShortTempDir(t, "pod")
	ipamDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ipamDir, "pools.hcl"), []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, nodeNS: node, sock: filepath.Join(sockDir, "agent.sock"), spool: filepath.Join(sockDir, "spool"), owned: owned}
	l.api = &api.Client{SocketPath: l.sock}
	l.cfg = agenttest.Options{
		Config: fmt.Sprintf("socket_path = %q\nipam {\n  db_path = %q\n  cni_spool_dir = %q\n}\n", l.sock, filepath.Join(t.TempDir(), "ipam.db"), l.spool),
		Netns:  node, Dir: t.TempDir(), Args: []string{"--ipam-config-dir", ipamDir},
	}
	var err error
	l.pm, err = podmanlab.New(store, t.TempDir(), "/var/run/netns/"+node, cniBin, podmanlab.DistroCNIDir)
	if err != nil {
		t.Fatal(err)
	}
	l.startAgent()
	return l
}

// startAgent starts the agent (again, on the same store and socket) and
// waits until it is ready. Cleanups run last first: every container is
// removed, and gets its DEL, before this agent stops.
func (l *lab) startAgent() {
	l.t.Helper()
	l.agent = agenttest.Start(l.t, bins, l.cfg)
	l.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.pm.RemoveAll(ctx); err != nil {
			l.t.Errorf("clean up containers: %v", err)
		}
	})
	l.agent.WaitReady(agenttest.ReadyTimeout)
}

// network writes the bridge network name, with the spiderpool IPAM block
// and extra (JSON members, may be empty) in it. cniVersion 1.0.0 is what
// Debian 12's bridge plugin (1.1.1) accepts.
func (l *lab) network(name, extra string) {
	l.t.Helper()
	if extra != "" {
		extra = ", " + extra
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": false,
    "ipam": {"type": "spiderpool", "ipv4_pool": "pod-v4", "ipv6_pool": "pod-v6",
             "socket": %q, "spool_dir": %q%s}
  }]
}`, name, bridgeName, l.sock, l.spool, extra)
	if err := l.pm.Network(name, conf); err != nil {
		l.t.Fatal(err)
	}
}

// runDetached starts a container that sleeps on network and returns its id.
func (l *lab) runDetached(ctx context.Context, network string) (string, error) {
	out, err := l.pm.Run(ctx, "run", "-d", "--network", network, podmanlab.Image, "sleep", "3600")
	return strings.TrimSpace(out), err
}

// addresses returns the container's global addresses as the container
// itself sees them on eth0.
func (l *lab) addresses(ctx context.Context, id string) []netip.Addr {
	l.t.Helper()
	out, err := l.pm.Run(ctx, "exec", id, "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	if err != nil {
		l.t.Fatal(err)
	}
	var addrs []netip.Addr
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					addrs = append(addrs, p.Addr())
				}
			}
		}
	}
	return addrs
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// keepHostForwarding fails the test if the host's forwarding changed by
// its end (Podman's bridge plugin turns it on in the namespace it runs in,
// which here is the node's), and puts the old values back.
func keepHostForwarding(t *testing.T) {
	keys := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}
	before := map[string]string{}
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		before[k] = string(b)
	}
	t.Cleanup(func() {
		for _, k := range keys {
			b, err := os.ReadFile(k)
			if err != nil {
				t.Error(err)
				continue
			}
			if string(b) != before[k] {
				t.Errorf("%s changed from %q to %q: putting it back", k, strings.TrimSpace(before[k]), strings.TrimSpace(string(b)))
				if err := os.WriteFile(k, []byte(before[k]), 0o644); err != nil {
					t.Error(err)
				}
			}
		}
	})
}

// The first container of a fresh bridge network starts: the bridge will be
// the gateway, so gateway detection has nothing to find, and the plugin
// says so instead of failing the container.
func TestFreshBridgeNetworkFirstContainerStarts(t *testing.T) {
	l := newLab(t)
	l.network("fresh", "")
	ctx := ctxFor(t, 2*time.Minute)
	out, err := l.pm.Run(ctx, "run", "--rm", "--network", "fresh", podmanlab.Image, "ip", "-o", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatalf("the first container on a fresh bridge network: %v", err)
	}
	if !strings.Contains(out, "inet 10.123.0.") || !strings.Contains(out, "inet6 fd00:123::") {
		t.Fatalf("container addresses: want one of each pool, got\n%s", out)
	}
	if log := l.agent.Log(); !strings.Contains(log, "detection skipped at the caller's request") || !strings.Contains(log, "detection=gateway") {
		t.Errorf("the agent's log does not say that gateway detection was skipped for the bridge gateway:\n%s", l.agent.Log())
	}
}

// Ten containers started at once get distinct dual-stack addresses, none
// of them one the LAN host owns.
func TestConcurrentContainersGetDistinctFreeAddresses(t *testing.T) {
	l := newLab(t)
	l.network("burst", "")
	ctx := ctxFor(t, 3*time.Minute)
	const n = 10
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = l.runDetached(ctx, "burst")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("container %d: %v", i, err)
		}
	}
	seen := map[netip.Addr]string{}
	for _, id := range ids {
		addrs := l.addresses(ctx, id)
		var v4, v6 int
		for _, a := range addrs {
			if a.Is4() {
				v4++
			} else {
				v6++
			}
			if other, dup := seen[a]; dup {
				t.Errorf("%s given to %.12s and %.12s", a, other, id)
			}
			seen[a] = id
			if l.owned[a] {
				t.Errorf("%s given to %.12s, but the LAN host owns it", a, id)
			}
		}
		if v4 != 1 || v6 != 1 {
			t.Errorf("container %.12s has %v: want one IPv4 and one IPv6 address", id, addrs)
		}
	}
}

// A container removed while the agent is down is released within 5 s of
// the agent's start: its DEL, which the runtime never retries, waited for
// the agent, was spooled on the node, and the agent applied the spool
// before serving.
func TestRemovedWhileAgentDownIsReleasedAtStart(t *testing.T) {
	l := newLab(t)
	// A short wait, so that the DEL gives up and spools.
	l.network("spooled", `"agent_wait": "500ms"`)
	ctx := ctxFor(t, 3*time.Minute)
	id, err := l.runDetached(ctx, "spooled")
	if err != nil {
		t.Fatal(err)
	}
	key := api.AttachmentKey{ContainerID: id, Interface: "eth0"}
	att, ok, err := l.api.Get(ctx, key)
	if err != nil || !ok {
		t.Fatalf("the container's allocation: ok=%v err=%v", ok, err)
	}
	l.agent.Stop()
	if _, err := l.pm.Run(ctx, "rm", "--force", "--time", "0", id); err != nil {
		t.Fatalf("podman rm while the agent is down: %v", err)
	}
	l.startAgent()
	started := l.agent.Started
	poll.Until(t, 5*time.Second, "the removed container's allocation released", func() (bool, error) {
		_, ok, err := l.api.Get(ctx, key)
		return !ok, err
	})
	t.Logf("%v released %s after the agent's start (%v)", att.Addresses, time.Since(started), id[:12])
	if took := time.Since(started); took > 5*time.Second+agenttest.ReadyTimeout {
		t.Fatalf("released %v after the start", took)
	}
}

// A container started while the agent restarts starts: its ADD waits for
// the agent's socket to come back.
func TestStartedDuringAgentRestartStarts(t *testing.T) {
	l := newLab(t)
	// Room for an agent whose plugins are built with -race on a loaded
	// machine; a release build is back in about 150 ms.
	l.network("restart", `"agent_wait": "30s"`)
	ctx := ctxFor(t, 3*time.Minute)
	l.agent.Stop()
	done := make(chan error, 1)
	var id string
	t0 := time.Now()
	go func() {
		var err error
		id, err = l.runDetached(ctx, "restart")
		done <- err
	}()
	l.startAgent()
	t.Logf("agent ready %v after the container's start", time.Since(t0))
	err := <-done
	t.Logf("container started after %v", time.Since(t0))
	if err != nil {
		t.Fatalf("a container started during the agent's restart: %v", err)
	}
	if addrs := l.addresses(ctx, id); len(addrs) != 2 {
		t.Fatalf("container addresses %v: want one of each family", addrs)
	}
}
