package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Addresses of the LAN beyond netlab's standard ones.
const (
	skipGW4, skipGW6 = "10.0.1.1", "fd00:1::1"
	nogwGW4          = "10.0.2.1" // nobody owns it
)

// pools is the agent's IPAM configuration. underlay-v4/v6 are the pools the
// packaged conflists name.
const pools = `
pool "underlay-v4" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.100-10.0.0.250"]
  gateway            = "10.0.0.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "underlay-v6" {
  subnet             = "fd00::/64"
  ranges             = ["fd00::100-fd00::1ff"]
  gateway            = "fd00::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "skip-v4" {
  subnet             = "10.0.1.0/24"
  ranges             = ["10.0.1.20-10.0.1.27"]
  gateway            = "10.0.1.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "skip-v6" {
  subnet             = "fd00:1::/64"
  ranges             = ["fd00:1::20-fd00:1::27"]
  gateway            = "fd00:1::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "nogw-v4" {
  subnet             = "10.0.2.0/24"
  ranges             = ["10.0.2.10-10.0.2.20"]
  gateway            = "10.0.2.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "tiny-v4" {
  subnet             = "10.0.3.0/24"
  ranges             = ["10.0.3.10-10.0.3.10"]
  conflict_detection = false
  gateway_detection  = false
}
pool "br-v4" {
  subnet             = "10.0.5.0/24"
  ranges             = ["10.0.5.10-10.0.5.19"]
  gateway            = "10.0.5.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "br-v6" {
  subnet             = "fd00:5::/64"
  ranges             = ["fd00:5::10-fd00:5::1f"]
  gateway            = "fd00:5::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "br-busy-v4" {
  subnet             = "10.0.5.0/24"
  ranges             = ["10.0.5.20-10.0.5.20"]
  gateway            = "10.0.5.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "ptp-v4" {
  subnet             = "10.0.6.0/24"
  ranges             = ["10.0.6.10-10.0.6.19"]
  gateway            = "10.0.6.1"
  conflict_detection = true
  gateway_detection  = true
}
pool "ptp-v6" {
  subnet             = "fd00:6::/64"
  ranges             = ["fd00:6::10-fd00:6::1f"]
  gateway            = "fd00:6::1"
  conflict_detection = true
  gateway_detection  = true
}
pool "gc-v4" {
  subnet             = "10.0.4.0/24"
  ranges             = ["10.0.4.10-10.0.4.50"]
  conflict_detection = false
  gateway_detection  = false
}
pool "vm-v4" {
  subnet             = "10.0.7.0/24"
  ranges             = ["10.0.7.10-10.0.7.12"]
  conflict_detection = false
  gateway_detection  = false
}
pool "shared-v4" {
  subnet             = "10.0.8.0/24"
  ranges             = ["10.0.8.10-10.0.8.50"]
  conflict_detection = false
  gateway_detection  = false
}
`

// lab is the LAN, the agent on the node and a runtime there.
type lab struct {
	t       *testing.T
	lan     *netlab.StdLAN
	sockDir string
	sock    string
	spool   string // the agent's ipam.cni_spool_dir
	db      string
	ipamDir string
	agent   *agenttest.Agent
	rt      *cnilab.Runtime
	api     *api.Client
	extra   string // more agent HCL
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabWith(t, "")
}

// newLabWith is newLab with more agent HCL (extra), such as a metrics
// block.
func newLabWith(t *testing.T, extra string) *lab {
	t.Helper()
	lan := netlab.NewStdLAN(t)
	netlab.IP(t, lan.GW.NS, "addr", "add", skipGW4+"/24", "dev", "eth0")
	netlab.IP(t, lan.GW.NS, "addr", "add", skipGW6+"/64", "dev", "eth0", "nodad")
	// A short directory: a unix socket path has at most 107 bytes.
	sockDir := agenttest.ShortTempDir(t, "cni")
	l := &lab{t: t, lan: lan, sockDir: sockDir, sock: filepath.Join(sockDir, "agent.sock"), spool: filepath.Join(sockDir, "spool"),
		db: filepath.Join(t.TempDir(), "ipam.db"), ipamDir: t.TempDir(), extra: extra}
	if err := os.WriteFile(filepath.Join(l.ipamDir, "pools.hcl"), []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	l.api = &api.Client{SocketPath: l.sock}
	l.rt = cnilab.NewRuntime(cniBin, t.TempDir(), lan.Node.Path)
	l.startAgent()
	return l
}

// startAgent runs the agent on the node with the lab's socket, store and
// pools, and waits until it is ready.
func (l *lab) startAgent() {
	l.t.Helper()
	cfg := fmt.Sprintf("socket_path = %q\nipam {\n  db_path = %q\n  cni_spool_dir = %q\n}\n", l.sock, l.db, l.spool) + l.extra
	if agenttest.Race() && !strings.Contains(cfg, "plugin_memory_max_mb") {
		// A race-built plugin's ThreadSanitizer keeps trace memory per
		// thread, and 100 workloads probed at once (TestHundredWorkloads)
		// can take ip-conflict past the 1024 MiB a release build is held
		// to ("ThreadSanitizer: out of memory", exit 66). The limit is for
		// the shipped binary; the race build gets room.
		cfg += "supervisor {\n  plugin_memory_max_mb = 8192\n}\n"
	}
	l.agent = agenttest.Start(l.t, bins, agenttest.Options{Config: cfg, Netns: l.lan.Node.NS,
		Args: []string{"--ipam-config-dir", l.ipamDir}})
	l.agent.Socket = l.sock // the config's socket_path, not Start's default
	l.agent.WaitReady(60 * time.Second)
}

// network is a macvlan network over the node's eth0 whose IPAM block is
// ipam (JSON).
func network(t *testing.T, name, ipam string) *libcni.NetworkConfigList {
	t.Helper()
	return confList(t, "1.1.0", name, fmt.Sprintf(`{"type": "macvlan", "master": "eth0", "mode": "bridge", "ipam": %s}`, ipam))
}

// confList is network name at CNI version ver with the one plugin whose
// JSON object is plugin.
func confList(t testing.TB, ver, name, plugin string) *libcni.NetworkConfigList {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": %q, "name": %q, "plugins": [%s]}`, ver, name, plugin)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	return list
}

// readPackaged reads the conflist name of packaging/cni as shipped: its
// text and the list libcni makes of it.
func readPackaged(t *testing.T, name string) ([]byte, *libcni.NetworkConfigList) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "packaging", "cni", name))
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return data, list
}

// withSocket points a list's IPAM block at the lab's socket.
func (l *lab) withSocket(pools string) string {
	return fmt.Sprintf(`{"type": "spiderpool", %s, "socket": %q}`, pools, l.sock)
}

// packaged loads a conflist of packaging/cni as a user would copy it, with
// only the socket and the spool added (the lab's agent does not use the
// default paths).
func (l *lab) packaged(name string) *libcni.NetworkConfigList {
	l.t.Helper()
	return l.packagedAt(name, "")
}

// packagedAt is packaged with the conflist's cniVersion set to version
// (unless empty), as the README tells users of newer plugins to do.
func (l *lab) packagedAt(name, version string) *libcni.NetworkConfigList {
	l.t.Helper()
	data, list := readPackaged(l.t, name)
	p, err := libcni.InjectConf(list.Plugins[0], map[string]any{})
	if err != nil {
		l.t.Fatal(err)
	}
	if !strings.Contains(string(p.Bytes), `"type":"spiderpool"`) {
		l.t.Fatalf("%s: no spiderpool IPAM block: %s", name, p.Bytes)
	}
	fixed := strings.Replace(string(data), `"type": "spiderpool",`, fmt.Sprintf(`"type": "spiderpool", "socket": %q, "spool_dir": %q,`, l.sock, l.spool), 1)
	if version != "" {
		fixed = strings.Replace(fixed, fmt.Sprintf(`"cniVersion": %q`, list.CNIVersion), fmt.Sprintf(`"cniVersion": %q`, version), 1)
	}
	list, err = libcni.ConfListFromBytes([]byte(fixed))
	if err != nil {
		l.t.Fatalf("%s with the socket: %v", name, err)
	}
	return list
}

// workload makes a namespace for a workload and its attachment on net1.
func workload(t *testing.T, id string) cnilab.Attachment {
	return workloadNamed(t, id, id)
}

// mustAdd runs ADD of each of ws through list, failing t (the test or
// subtest at hand, not necessarily the lab's) on the first that fails.
func (l *lab) mustAdd(t *testing.T, ctx context.Context, list *libcni.NetworkConfigList, ws ...cnilab.Attachment) {
	t.Helper()
	for _, w := range ws {
		l.mustAddAddrs(t, ctx, list, w)
	}
}

// mustAddAddrs runs ADD of w through list, failing t when it fails, and
// returns the addresses it gave, IPv4 first.
func (l *lab) mustAddAddrs(t *testing.T, ctx context.Context, list *libcni.NetworkConfigList, w cnilab.Attachment) (v4, v6 netip.Prefix) {
	t.Helper()
	res, err := l.rt.Add(ctx, list, w)
	if err != nil {
		t.Fatalf("ADD %s: %v", w.ContainerID, err)
	}
	return addrs(t, res)
}

// workloadNamed makes a workload whose name (K8S_POD_NAME) differs from its
// container id: a pod's new sandbox.
func workloadNamed(t *testing.T, id, name string) cnilab.Attachment {
	t.Helper()
	ns := netlab.NewNS(t, "w")
	netlab.IP(t, ns, "link", "set", "lo", "up")
	return cnilab.Attachment{ContainerID: id, Netns: "/var/run/netns/" + ns, IfName: "net1",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "cni"}, {"K8S_POD_NAME", name}}}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// addrs returns a result's addresses, IPv4 first.
func addrs(t *testing.T, res types.Result) (v4, v6 netip.Prefix) {
	t.Helper()
	r, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range r.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		ones, _ := ip.Address.Mask.Size()
		p := netip.PrefixFrom(a.Unmap(), ones)
		if p.Addr().Is4() {
			v4 = p
		} else {
			v6 = p
		}
	}
	return v4, v6
}

// cniErr asserts that err is a CNI error with code and a message holding
// each of want.
func cniErr(t *testing.T, err error, code uint, want ...string) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a CNI error with code %d", err, err, code)
	}
	if e.Code != code {
		t.Errorf("CNI error code %d (%s), want %d", e.Code, e.Error(), code)
	}
	for _, w := range want {
		if !strings.Contains(e.Error(), w) {
			t.Errorf("CNI error %q does not say %q", e.Error(), w)
		}
	}
	return e
}

func (l *lab) held(key api.AttachmentKey) (api.Attachment, bool) {
	l.t.Helper()
	att, ok, err := l.api.Get(ctxFor(l.t, 10*time.Second), key)
	if err != nil {
		l.t.Fatalf("get %v: %v", key, err)
	}
	return att, ok
}

func (l *lab) usage(pool string) api.PoolUsage {
	l.t.Helper()
	us, err := l.api.Pools(ctxFor(l.t, 10*time.Second))
	if err != nil {
		l.t.Fatal(err)
	}
	for _, u := range us {
		if u.Name == pool {
			return u
		}
	}
	l.t.Fatalf("the agent has no pool %s: %+v", pool, us)
	return api.PoolUsage{}
}

func key(a cnilab.Attachment) api.AttachmentKey {
	return api.AttachmentKey{ContainerID: a.ContainerID, Interface: a.IfName}
}

// links lists the interfaces of a workload's namespace.
func links(t *testing.T, a cnilab.Attachment) string {
	return netlab.IP(t, filepath.Base(a.Netns), "-o", "link", "show")
}

// delAfterFailedAdd is what a runtime does after a failed ADD (containerd's
// go-cni tears the network down): DEL, which must succeed and leave the
// workload without the interface. The upstream main plugins need it: on an
// IPAM error their ADD returns without deleting the link it made (the error
// is declared again inside the IPAM branch of cmdAdd, so the deferred clean-up
// never sees it; containernetworking/plugins v1.9.1 and v1.10.0).
func (l *lab) delAfterFailedAdd(ctx context.Context, list *libcni.NetworkConfigList, w cnilab.Attachment) {
	l.t.Helper()
	if err := l.rt.Del(ctx, list, w); err != nil {
		l.t.Errorf("DEL after the failed ADD: %v", err)
	}
	if out := links(l.t, w); strings.Contains(out, "net1") {
		l.t.Errorf("net1 is still in the workload after DEL:\n%s", out)
	}
}
