package cni

import (
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The interface a CNI main plugin hands over down is raised for the probe
// and, once the check passed, left up: the main plugin raises it itself
// when it configures the result, and putting it down in between cost a
// link down under the node's RTNL lock per workload (serialised: a second
// for a storm of 100). The same allocation through the API still leaves the
// interface down, as it found it, and so does a CNI ADD for the bridge
// plugin on an interface whose IPv6 DAD is on: the link-local address the
// raise made is still tentative, and bridge turns DAD off before raising
// the interface and then waits a second or two for it. macvlan raises it
// with DAD as it is: its interface is left up mid-DAD.
func TestCNIAddLeavesTheProbedInterfaceUp(t *testing.T) {
	l := newLab(t)
	w := workload(t, "up1")
	wlNS := strings.TrimPrefix(w.Netns, "/var/run/netns/")
	// Two interfaces as macvlan makes them: on the node's eth0, moved
	// into the workload's namespace, down.
	for _, name := range []string{"net1", "net2", "net3", "net4"} {
		netlab.IP(t, l.lan.Node.NS, "link", "add", name, "link", "eth0", "type", "macvlan", "mode", "bridge")
		netlab.IP(t, l.lan.Node.NS, "link", "set", name, "netns", wlNS)
		dad := "0"
		if name == "net3" || name == "net4" {
			// DAD on, one probe every 10 s: tentative long after the ADD.
			dad = "1"
			netlab.Sysctl(t, wlNS, "net.ipv6.neigh."+name+".retrans_time_ms", "10000")
		}
		netlab.Sysctl(t, wlNS, "net.ipv6.conf."+name+".accept_dad", dad)
	}
	isUp := func(name string) bool {
		out := netlab.IP(t, wlNS, "-o", "link", "show", name)
		return strings.Contains(out[strings.IndexByte(out, '<'):strings.IndexByte(out, '>')+1], ",UP")
	}
	if isUp("net1") || isUp("net2") || isUp("net3") || isUp("net4") {
		t.Fatal("the interfaces are up before any probe")
	}
	ctx := ctxFor(t, 60*time.Second)

	// The IPAM plugin exec'd as macvlan execs it, both detections on.
	list := network(t, "upnet", l.withSocket(`"pools": ["underlay-v4", "underlay-v6"]`))
	if _, err := l.rt.IPAM(ctx, list, "ADD", w); err != nil {
		t.Fatalf("CNI ADD with both detections: %v", err)
	}
	att, ok := l.held(key(w))
	if !ok || att.State != "allocated" || len(att.NotChecked) != 0 {
		t.Fatalf("the agent holds %+v (found %v); want an allocation with every detection run", att, ok)
	}
	if !isUp("net1") {
		t.Error("net1 was put down after the CNI ADD's probe; its main plugin raises it next")
	}

	// DAD on, for the bridge plugin (the IPAM plugin exec'd with its
	// configuration, as bridge execs it): put down again, the link-local
	// of the raise still tentative.
	bridged := confList(t, "1.1.0", "upbridge", `{"type": "bridge", "bridge": "upbr0", "ipam": `+l.withSocket(`"pools": ["underlay-v4", "underlay-v6"]`)+`}`)
	w3 := w
	w3.ContainerID, w3.IfName = w.ContainerID+"-3", "net3"
	if _, err := l.rt.IPAM(ctx, bridged, "ADD", w3); err != nil {
		t.Fatalf("CNI ADD on net3 for bridge: %v", err)
	}
	if isUp("net3") {
		t.Error("net3 left up for the bridge plugin with its link-local address in DAD")
	}
	if err := l.rt.IPAMDel(ctx, bridged, w3); err != nil {
		t.Fatalf("CNI DEL of net3: %v", err)
	}
	// DAD on, for macvlan: left up, DAD and all.
	w4 := w
	w4.ContainerID, w4.IfName = w.ContainerID+"-4", "net4"
	if _, err := l.rt.IPAM(ctx, list, "ADD", w4); err != nil {
		t.Fatalf("CNI ADD on net4: %v", err)
	}
	if !isUp("net4") {
		t.Error("net4 was put down after macvlan's CNI ADD although macvlan keeps DAD as it is")
	}
	if err := l.rt.IPAMDel(ctx, list, w4); err != nil {
		t.Fatalf("CNI DEL of net4: %v", err)
	}

	// The API's allocation on the other interface: put down again.
	if _, err := l.api.Allocate(ctx, api.AllocateRequest{ContainerID: "up-api", Interface: "net2", Netns: w.Netns, Pools: []string{"underlay-v4", "underlay-v6"}}); err != nil {
		t.Fatalf("API allocation with both detections: %v", err)
	}
	if isUp("net2") {
		t.Error("net2 left up after the API allocation's probe")
	}
	if err := l.rt.IPAMDel(ctx, list, w); err != nil {
		t.Fatalf("CNI DEL: %v", err)
	}
	if _, err := l.api.Release(ctx, api.ReleaseRequest{ContainerID: "up-api", Interface: "net2"}); err != nil {
		t.Fatalf("release: %v", err)
	}
}
