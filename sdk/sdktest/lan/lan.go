//go:build linux

// Package lan builds a small Ethernet LAN out of network namespaces for a
// plugin's tests: a workload namespace whose interface sits on a bridge with
// hosts that own addresses, so that a detector's verdict table runs against
// real ARP and NDP instead of mocks. It needs root and the ip command
// (iproute2); everything it makes is removed when the test ends, and its
// names are unique per process so that parallel runs do not collide.
//
//	l := lan.New(t, "10.0.0.10/24")      // the workload's eth0
//	l.AddHost(t, "10.0.0.2/24")          // someone who owns 10.0.0.2
//	res, err := p.Check(ctx, sdk.CheckRequest{Netns: l.Netns, Interface: l.Interface, ...})
package lan

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// LAN is a bridge in a namespace of its own, the workload's namespace
// attached to it, and any number of hosts.
type LAN struct {
	// Netns is the path of the workload's namespace, for CheckRequest.Netns.
	Netns string
	// Interface is the workload's interface in Netns, for
	// CheckRequest.Interface.
	Interface string

	prefix string
	sw     string // the switch namespace
	hosts  int
}

var seq atomic.Int64

// New makes a LAN whose workload interface has addrs (CIDR; none is fine).
func New(t testing.TB, addrs ...string) *LAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lan: namespaces need root")
	}
	l := &LAN{Interface: "eth0", prefix: fmt.Sprintf("sl%d-%d", os.Getpid(), seq.Add(1))}
	l.sw = l.namespace(t, "sw")
	run(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	node := l.namespace(t, "node")
	l.attach(t, node, "p0", addrs)
	l.Netns = "/var/run/netns/" + node
	return l
}

// AddHost adds a host owning addrs (CIDR) on the LAN and returns its
// namespace's name; its kernel answers ARP and NDP for them.
func (l *LAN) AddHost(t testing.TB, addrs ...string) string {
	t.Helper()
	l.hosts++
	ns := l.namespace(t, fmt.Sprintf("h%d", l.hosts))
	l.attach(t, ns, fmt.Sprintf("p%d", l.hosts), addrs)
	return ns
}

// SetMTU sets the MTU of the workload's interface.
func (l *LAN) SetMTU(t testing.TB, mtu int) {
	t.Helper()
	run(t, "ip", "-n", strings.TrimPrefix(l.Netns, "/var/run/netns/"), "link", "set", l.Interface, "mtu", fmt.Sprint(mtu))
}

func (l *LAN) namespace(t testing.TB, role string) string {
	t.Helper()
	name := l.prefix + "-" + role
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("lan: ip netns del %s: %v %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// attach links ns's eth0 to the bridge through port and gives it addrs.
func (l *LAN) attach(t testing.TB, ns, port string, addrs []string) {
	t.Helper()
	run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.sw)
	run(t, "ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
	for _, a := range addrs {
		args := []string{"-n", ns, "addr", "add", a, "dev", "eth0"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad") // usable at once
		}
		run(t, "ip", args...)
	}
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("lan: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
