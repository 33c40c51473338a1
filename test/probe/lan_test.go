package probe_test

// A LAN per test, built from network namespaces: one namespace holds a bridge
// (br0, multicast snooping off so that solicited-node multicast is flooded
// like on a plain switch), and every host is a namespace with one veth (eth0)
// plugged into it. The kernels of the other hosts are the responders.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var nsCounter atomic.Int64

// nsPrefix starts the name of every namespace these tests make:
// nsPrefix + pid + "-" + counter + "-" + role.
const nsPrefix = "spprobe"

func TestMain(m *testing.M) {
	removeStaleNamespaces()
	os.Exit(m.Run())
}

// removeStaleNamespaces deletes namespaces left by earlier runs of these
// tests that died before their cleanup ran (a panic, a kill): names with our
// prefix whose process is gone.
func removeStaleNamespaces() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		var pid, n int
		var role string
		if _, err := fmt.Sscanf(strings.ReplaceAll(e.Name(), "-", " "), nsPrefix+"%d %d %s", &pid, &n, &role); err != nil {
			continue
		}
		if pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // still running
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// Standard hosts and addresses of a LAN.
const (
	nodeMAC  = "02:00:00:00:00:01"
	node2MAC = "02:00:00:00:00:02"
	busyMAC  = "02:00:00:00:00:10"
	gwMAC    = "02:00:00:00:00:fe"

	gw4   = "10.0.0.1"
	gw6   = "fd00::1"
	busy4 = "10.0.0.10"
	busy6 = "fd00::10"
	free4 = "10.0.0.50"
	free6 = "fd00::50"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("test/probe builds network namespaces, veth pairs and bridges and opens packet sockets: " +
			"it must run as root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN); run `sudo go test ./test/probe/`")
	}
	for _, tool := range []string{"ip", "bridge"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("test/probe needs %q (package iproute2): %v", tool, err)
		}
	}
}

type host struct {
	ns   string // netns name
	path string // /var/run/netns/<ns>
	mac  net.HardwareAddr
	port string // its port on the bridge (in the bridge namespace)
}

type lan struct {
	t  testing.TB
	br string // namespace of the bridge
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipn runs `ip -n ns args...`.
func ipn(t testing.TB, ns string, args ...string) {
	t.Helper()
	mustRun(t, "ip", append([]string{"-n", ns}, args...)...)
}

func newNS(t testing.TB, role string) string {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), nsCounter.Add(1), role)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	return name
}

// inNS runs fn on a locked OS thread inside namespace ns.
func inNS(t testing.TB, ns string, fn func() error) {
	t.Helper()
	if err := doInNS("/var/run/netns/"+ns, fn); err != nil {
		t.Fatalf("in netns %s: %v", ns, err)
	}
}

func doInNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sysctl sets net.* keys inside a namespace (/proc/sys/net is per namespace
// of the writing thread).
func sysctl(t testing.TB, ns string, kv ...string) {
	t.Helper()
	inNS(t, ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := filepath.Join("/proc/sys", strings.ReplaceAll(kv[i], ".", "/"))
			if err := os.WriteFile(p, []byte(kv[i+1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", kv[i], kv[i+1], err)
			}
		}
		return nil
	})
}

func newLAN(t testing.TB) *lan {
	t.Helper()
	br := newNS(t, "br")
	sysctl(t, br, "net.ipv6.conf.all.disable_ipv6", "1", "net.ipv6.conf.default.disable_ipv6", "1")
	ipn(t, br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0")
	ipn(t, br, "link", "set", "br0", "up")
	return &lan{t: t, br: br}
}

// addHost adds a namespace with eth0 (MAC mac) plugged into the bridge and the
// given addresses (CIDR). IPv6 DAD is off so addresses are usable at once.
func (l *lan) addHost(role, mac string, addrs ...string) *host {
	t := l.t
	t.Helper()
	ns := newNS(t, role)
	sysctl(t, ns,
		"net.ipv6.conf.all.accept_dad", "0", "net.ipv6.conf.default.accept_dad", "0",
		"net.ipv6.conf.default.dad_transmits", "0",
		// No router solicitations: keep the wire quiet.
		"net.ipv6.conf.default.router_solicitations", "0")
	port := "p-" + role
	ipn(t, l.br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ipn(t, l.br, "link", "set", port, "master", "br0", "up")
	ipn(t, ns, "link", "set", "eth0", "address", mac)
	ipn(t, ns, "link", "set", "lo", "up")
	ipn(t, ns, "link", "set", "eth0", "up")
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", "eth0"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		ipn(t, ns, args...)
	}
	hw, _ := net.ParseMAC(mac)
	h := &host{ns: ns, path: "/var/run/netns/" + ns, mac: hw, port: port}
	l.waitReady(h)
	return h
}

// waitReady polls until the host's eth0 is up with carrier, its IPv6
// addresses (link-local included) are no longer tentative, and its bridge
// port forwards.
func (l *lan) waitReady(h *host) {
	t := l.t
	t.Helper()
	waitFor(t, "host "+h.ns+" ready", func() (bool, error) {
		ready := false
		err := doInNS(h.path, func() error {
			link, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			a := link.Attrs()
			if a.OperState != netlink.OperUp || a.RawFlags&unix.IFF_LOWER_UP == 0 {
				return nil
			}
			addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
			if err != nil {
				return err
			}
			ll := false
			for _, ad := range addrs {
				if ad.Flags&unix.IFA_F_TENTATIVE != 0 {
					return nil
				}
				if ad.IP.IsLinkLocalUnicast() {
					ll = true
				}
			}
			ready = ll
			return nil
		})
		if err != nil || !ready {
			return false, err
		}
		out, err := exec.Command("bridge", "-n", l.br, "link", "show", "dev", h.port).CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("bridge link show: %v %s", err, out)
		}
		return bytes.Contains(out, []byte("state forwarding")), nil
	})
}

// waitFor polls cond every millisecond until it holds (5 s at most).
func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// stdLAN is a LAN with a node (no IPv4 address, link-local IPv6 only), a
// gateway and a host owning the busy addresses.
type stdLAN struct {
	*lan
	node, gw, busy *host
}

func newStdLAN(t testing.TB) *stdLAN {
	t.Helper()
	l := newLAN(t)
	return &stdLAN{
		lan:  l,
		node: l.addHost("node", nodeMAC),
		gw:   l.addHost("gw", gwMAC, gw4+"/24", gw6+"/64"),
		busy: l.addHost("busy", busyMAC, busy4+"/24", busy6+"/64"),
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
