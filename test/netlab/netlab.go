// Package netlab builds throwaway LANs of Linux network namespaces for
// integration tests: a bridge in one namespace, and hosts, each a namespace
// with one veth (eth0) plugged into the bridge. The kernels of the hosts are
// the other machines on the wire: they answer ARP and neighbour
// solicitations for their addresses, like a busy host or a gateway would.
//
// Everything needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN) and the
// iproute2 tools; a test that cannot have them fails, it does not skip.
// Namespace names are unique per process and removed by t.Cleanup, even when
// the test fails; Sweep removes those of earlier runs that died before their
// cleanup ran. No traffic leaves the namespaces.
//
// The harness started life in test/probe; it is shared here so that other
// test packages build the same LAN.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace this package makes:
// Prefix + pid + "-" + counter + "-" + role.
const Prefix = "splab"

var nsCounter atomic.Int64

// Standard hosts and addresses of a StdLAN.
const (
	NodeMAC  = "02:00:00:00:00:01"
	Node2MAC = "02:00:00:00:00:02" // for a second node added with AddHost
	BusyMAC  = "02:00:00:00:00:10"
	GwMAC    = "02:00:00:00:00:fe"

	GW4   = "10.0.0.1"
	GW6   = "fd00::1"
	Busy4 = "10.0.0.10"
	Busy6 = "fd00::10"
	Free4 = "10.0.0.50"
	Free6 = "fd00::50"
)

// Sweep deletes namespaces left by earlier runs that died before their
// cleanup ran (a panic, a kill): names with Prefix whose process is gone.
// Call it from TestMain.
func Sweep() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		var pid, n int
		var role string
		if _, err := fmt.Sscanf(strings.ReplaceAll(e.Name(), "-", " "), Prefix+"%d %d %s", &pid, &n, &role); err != nil {
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

// RequireRoot fails the test, with the reason, unless it runs as root with
// the tools this package needs.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test builds network namespaces, veth pairs and bridges and opens packet sockets: " +
			"it must run as root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN); run it with sudo")
	}
	for _, tool := range []string{"ip", "bridge"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test needs %q (package iproute2): %v", tool, err)
		}
	}
}

// Host is a namespace with eth0 plugged into a LAN's bridge.
type Host struct {
	NS   string           // namespace name
	Path string           // /var/run/netns/<NS>
	MAC  net.HardwareAddr // of eth0
	Port string           // its port on the bridge (in the bridge's namespace)
}

// LAN is a bridge (br0) in its own namespace.
type LAN struct {
	t      testing.TB
	Bridge string // namespace of the bridge
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// IP runs `ip -n ns args...`.
func IP(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"-n", ns}, args...)...)
}

// NewNS makes a namespace named after role and removes it when the test
// ends.
func NewNS(t testing.TB, role string) string {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), nsCounter.Add(1), role)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	return name
}

// InNS runs fn on a locked OS thread inside namespace ns.
func InNS(t testing.TB, ns string, fn func() error) {
	t.Helper()
	if err := netns.Do("/var/run/netns/"+ns, fn); err != nil {
		t.Fatalf("in netns %s: %v", ns, err)
	}
}

// DialIn opens n TCP connections to 127.0.0.1:port inside the namespace at
// path, so that they can be used all at once without n namespace switches.
// On an error it returns the connections opened so far with it.
func DialIn(path string, port, n int) ([]net.Conn, error) {
	var conns []net.Conn
	err := netns.Do(path, func() error {
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	return conns, err
}

// Sysctl sets net.* keys inside a namespace (/proc/sys/net is per namespace
// of the writing thread): Sysctl(t, ns, "net.ipv4.conf.all.arp_ignore", "8").
func Sysctl(t testing.TB, ns string, kv ...string) {
	t.Helper()
	InNS(t, ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := filepath.Join("/proc/sys", strings.ReplaceAll(kv[i], ".", "/"))
			if err := os.WriteFile(p, []byte(kv[i+1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", kv[i], kv[i+1], err)
			}
		}
		return nil
	})
}

// NewLAN makes a bridge with multicast snooping off, so that solicited-node
// multicast is flooded as on a plain switch.
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	br := NewNS(t, "br")
	Sysctl(t, br, "net.ipv6.conf.all.disable_ipv6", "1", "net.ipv6.conf.default.disable_ipv6", "1")
	IP(t, br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0")
	IP(t, br, "link", "set", "br0", "up")
	return &LAN{t: t, Bridge: br}
}

// AddHost adds a namespace with eth0 (MAC mac) plugged into the bridge and
// the given addresses (CIDR), and waits until it is ready. IPv6 DAD is off
// so that addresses are usable at once. role names the namespace and the
// bridge port ("p-" + role, at most 15 characters).
func (l *LAN) AddHost(role, mac string, addrs ...string) *Host {
	t := l.t
	t.Helper()
	ns := NewNS(t, role)
	Sysctl(t, ns,
		"net.ipv6.conf.all.accept_dad", "0", "net.ipv6.conf.default.accept_dad", "0",
		"net.ipv6.conf.default.dad_transmits", "0",
		// No router solicitations: keep the wire quiet.
		"net.ipv6.conf.default.router_solicitations", "0")
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatalf("AddHost %s: %v", role, err)
	}
	h := &Host{NS: ns, Path: "/var/run/netns/" + ns, MAC: hw, Port: "p-" + role}
	IP(t, ns, "link", "set", "lo", "up")
	l.plug(h)
	AddAddrs(t, ns, addrs...)
	l.WaitReady(h)
	return h
}

// AddAddrs adds addrs (prefixes) to eth0 in namespace ns, the IPv6 ones
// without DAD: they answer at once.
func AddAddrs(t testing.TB, ns string, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", "eth0"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		IP(t, ns, args...)
	}
}

// NewBridgedNode makes a node namespace holding bridge, up and with no
// address - a Podman bridge network's node before its first container -
// and a namespace for host (its role) on it through port, whose eth0
// (with mac unless empty) owns addrs: the LAN's gateway or its stations.
// It returns the two namespaces' names.
func NewBridgedNode(t testing.TB, bridge, port, host, mac string, addrs ...string) (nodeNS, hostNS string) {
	t.Helper()
	nodeNS = NewNS(t, "pnode")
	IP(t, nodeNS, "link", "set", "lo", "up")
	IP(t, nodeNS, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0", "stp_state", "0")
	IP(t, nodeNS, "link", "set", bridge, "up")
	hostNS = NewNS(t, host)
	Sysctl(t, hostNS, "net.ipv6.conf.all.accept_dad", "0", "net.ipv6.conf.default.accept_dad", "0")
	IP(t, nodeNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", hostNS)
	IP(t, nodeNS, "link", "set", port, "master", bridge, "up")
	if mac != "" {
		IP(t, hostNS, "link", "set", "eth0", "address", mac)
	}
	IP(t, hostNS, "link", "set", "lo", "up")
	IP(t, hostNS, "link", "set", "eth0", "up")
	AddAddrs(t, hostNS, addrs...)
	return nodeNS, hostNS
}

// Unplug deletes h's bridge port, which takes its eth0 with it.
func (l *LAN) Unplug(h *Host) {
	l.t.Helper()
	IP(l.t, l.Bridge, "link", "del", h.Port)
}

// Plug gives h, unplugged, a new eth0 on its bridge port (h's MAC, no
// address), as CNI DEL then ADD in one namespace does, and waits until it
// is ready.
func (l *LAN) Plug(h *Host) {
	l.t.Helper()
	l.plug(h)
	l.WaitReady(h)
}

// plug makes h's veth pair: its port on the bridge, eth0 up in its
// namespace with its MAC.
func (l *LAN) plug(h *Host) {
	t := l.t
	t.Helper()
	IP(t, l.Bridge, "link", "add", h.Port, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	IP(t, l.Bridge, "link", "set", h.Port, "master", "br0", "up")
	IP(t, h.NS, "link", "set", "eth0", "address", h.MAC.String())
	IP(t, h.NS, "link", "set", "eth0", "up")
}

// WaitReady polls until the host's eth0 is up with carrier, its IPv6
// addresses (link-local included) are no longer tentative, and its bridge
// port forwards.
func (l *LAN) WaitReady(h *Host) {
	t := l.t
	t.Helper()
	WaitFor(t, "host "+h.NS+" ready", func() (bool, error) {
		ready := false
		err := netns.Do(h.Path, func() error {
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
		out, err := exec.Command("bridge", "-n", l.Bridge, "link", "show", "dev", h.Port).CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("bridge link show: %v %s", err, out)
		}
		return bytes.Contains(out, []byte("state forwarding")), nil
	})
}

// Meanwhile runs fn again and again in a goroutine of its own, for a test
// to race what it does against fn, until the returned stop is called; stop
// returns once fn's last run has ended.
func Meanwhile(fn func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
				fn()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// WaitFor polls cond until it holds (5 s at most; see test/poll). It is
// for state the kernel reaches on its own, not for synchronising goroutines.
func WaitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, cond)
}

// StdLAN is a LAN with a node (no IPv4 address, link-local IPv6 only), a
// gateway owning GW4 and GW6, and a host owning Busy4 and Busy6.
type StdLAN struct {
	*LAN
	Node, GW, Busy *Host
}

// NewStdLAN builds a StdLAN.
func NewStdLAN(t testing.TB) *StdLAN {
	t.Helper()
	l := NewLAN(t)
	return &StdLAN{
		LAN:  l,
		Node: l.AddHost("node", NodeMAC),
		GW:   l.AddHost("gw", GwMAC, GW4+"/24", GW6+"/64"),
		Busy: l.AddHost("busy", BusyMAC, Busy4+"/24", Busy6+"/64"),
	}
}

// ArpingDAD runs iputils arping -D (package iputils-arping) on iface in
// namespace ns and reports whether anyone answered for addr. iputils arping
// -D is RFC 5227's probe (sender 0.0.0.0): exit 0 when nobody answered
// (free), 1 when someone did (duplicate); anything else fails the test.
func ArpingDAD(t testing.TB, ns, iface, addr string) bool {
	t.Helper()
	return !crossCheck(t, ns, "iputils-arping", 1, "arping", "-D", "-q", "-c", "3", "-w", "1", "-I", iface, addr)
}

// Ndisc6Answered runs ndisc6 (package ndisc6) on iface in namespace ns and
// reports whether addr answers a Neighbor Solicitation: exit 0 when it
// does, 2 when nobody answered; anything else fails the test.
func Ndisc6Answered(t testing.TB, ns, iface, addr string) bool {
	t.Helper()
	return crossCheck(t, ns, "ndisc6", 2, "ndisc6", "-q", "-1", "-r", "2", "-w", "100", addr, iface)
}

// crossCheck runs an outside tool (from Debian package pkg) in namespace
// ns and reports whether it exited 0; exit code no is its other answer,
// and anything else (the tool missing, a bad argument) fails the test.
func crossCheck(t testing.TB, ns, pkg string, no int, tool string, args ...string) bool {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("cross-check needs %s (apt-get install %s): %v", tool, pkg, err)
	}
	err := exec.Command("ip", append([]string{"netns", "exec", ns, tool}, args...)...).Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == no:
		return false
	}
	t.Fatalf("%s %s in %s (needs %s): %v", tool, strings.Join(args, " "), ns, pkg, err)
	return false
}

// Addr parses an address or panics.
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// HTTPClient returns a client whose connections are opened inside the
// namespace at path, so that a test in the host namespace can reach a
// server listening on 127.0.0.1 there. Keep-alives are off: every request
// dials anew, through the namespace.
func HTTPClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := netns.Do(path, func() error {
					var err error
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
		},
	}
}
