package linkup

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// vethNS makes a namespace named after role holding the links, each one
// end of a veth pair whose other end (the link's name and "p") is up: a
// link raised here gets carrier at once. It returns the namespace's name
// and path.
func vethNS(t *testing.T, role string, links ...string) (ns, path string) {
	t.Helper()
	ns = netlab.NewNS(t, role)
	for _, l := range links {
		netlab.IP(t, ns, "link", "add", l, "type", "veth", "peer", "name", l+"p")
		netlab.IP(t, ns, "link", "set", l+"p", "up")
	}
	return ns, "/var/run/netns/" + ns
}

// ensureUp is u.EnsureUp that fails the test on an error.
func ensureUp(t *testing.T, u *Netlink, path, iface string) func(ipam.AfterProbe) {
	t.Helper()
	done, err := u.EnsureUp(context.Background(), path, iface)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// linkUp reads whether iface in ns is administratively up.
func linkUp(t *testing.T, ns, iface string) bool {
	t.Helper()
	out := netlab.IP(t, ns, "-o", "link", "show", iface)
	flags := out[strings.IndexByte(out, '<')+1 : strings.IndexByte(out, '>')]
	for _, f := range strings.Split(flags, ",") {
		if f == "UP" {
			return true
		}
	}
	return false
}

// Allocations probing on one interface of one namespace at once (the API
// takes several keys naming it): the first raises the down interface, and
// it stays up until the last is done - a sibling's restore must not put
// it down under a probe still running.
func TestEnsureUpSharedInterfaceStaysUpForEveryUser(t *testing.T) {
	ns, path := vethNS(t, "upper", "probe0", "other0")
	u := &Netlink{}

	// In sequence, as the attack had it: A raises, B finds it up, A ends.
	restoreA := ensureUp(t, u, path, "probe0")
	restoreB := ensureUp(t, u, path, "probe0")
	restoreA(ipam.PutDown)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 was put down by the first allocation's restore while the second still probes on it")
	}
	restoreA(ipam.PutDown) // a second call changes nothing
	if !linkUp(t, ns, "probe0") {
		t.Fatal("a repeated restore put probe0 down under the second allocation")
	}
	restoreB(ipam.PutDown)
	if linkUp(t, ns, "probe0") {
		t.Fatal("probe0 stays up after the last allocation's restore")
	}

	// Concurrently: every user sees the interface up until it restores;
	// the last restore puts it down; the other interface is not touched.
	const n = 16
	var wg sync.WaitGroup
	restores := make([]func(ipam.AfterProbe), n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { restores[i], errs[i] = u.EnsureUp(context.Background(), path, "probe0") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureUp %d: %v", i, err)
		}
	}
	var rwg sync.WaitGroup
	for i := range n - 1 {
		rwg.Go(func() { restores[i](ipam.PutDown) })
	}
	rwg.Wait()
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 is down while one of its users still probes")
	}
	restores[n-1](ipam.PutDown)
	if linkUp(t, ns, "probe0") || linkUp(t, ns, "other0") {
		t.Fatal("after every restore probe0 (or the untouched other0) is up")
	}

	// An interface up before anyone raised it is not put down.
	netlab.IP(t, ns, "link", "set", "other0", "up")
	ensureUp(t, u, path, "other0")(ipam.PutDown)
	if !linkUp(t, ns, "other0") {
		t.Fatal("an interface that was up before the probe was put down")
	}
}

// A caller that raises the interface itself next (a CNI main plugin) ends
// its probe leaving the interface up, and the count of users is cleared
// with it: the next probe finds an interface that is up and not raised
// here, so its end does not put it down either.
func TestEnsureUpLeftUpForACallerThatRaisesIt(t *testing.T) {
	ns, path := vethNS(t, "upper", "probe0")
	// No DAD: the link-local of the raise is tentative only until the
	// kernel's next address work item, which is no DAD (see runsDAD and
	// TestEnsureUpPutsDownALinkLocalInDAD).
	netlab.Sysctl(t, ns, "net.ipv6.conf.probe0.accept_dad", "0")
	u := &Netlink{}

	done := ensureUp(t, u, path, "probe0")
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 is not up for the probe")
	}
	done(ipam.LeaveUpOutOfDAD)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 was put down although its caller leaves it up")
	}
	ensureUp(t, u, path, "probe0")(ipam.PutDown)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("a probe on an interface it did not raise put it down")
	}

	// With a sibling still probing, the one leaving it up changes nothing;
	// the last one decides.
	netlab.IP(t, ns, "link", "set", "probe0", "down")
	doneA := ensureUp(t, u, path, "probe0")
	doneB := ensureUp(t, u, path, "probe0")
	doneA(ipam.LeaveUpOutOfDAD)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 went down under the second probe")
	}
	doneB(ipam.PutDown)
	if linkUp(t, ns, "probe0") {
		t.Fatal("probe0 stays up after the last probe, which puts it down")
	}
}

// A caller that would leave the interface up gets it put down while the
// link-local address the raise made is in DAD (LeaveUpOutOfDAD): a main
// plugin that turns DAD off before raising the interface (the bridge
// plugin) would otherwise wait for that DAD to end, a second or two.
// Without DAD on the interface it is left up, and with LeaveUp (a main
// plugin that keeps DAD as it is) whatever its addresses.
func TestEnsureUpPutsDownALinkLocalInDAD(t *testing.T) {
	ns, path := vethNS(t, "dad", "probe1")
	// DAD as a fresh namespace has it, one probe a second: the link-local
	// stays tentative for a second or more after the raise.
	netlab.Sysctl(t, ns, "net.ipv6.conf.probe1.accept_dad", "1", "net.ipv6.conf.probe1.dad_transmits", "1",
		"net.ipv6.neigh.probe1.retrans_time_ms", "10000")
	u := &Netlink{}
	done := ensureUp(t, u, path, "probe1")
	if out := netlab.IP(t, ns, "-6", "addr", "show", "dev", "probe1"); !strings.Contains(out, "tentative") {
		t.Fatalf("no tentative address after the raise: %s", out)
	}
	done(ipam.LeaveUpOutOfDAD)
	if linkUp(t, ns, "probe1") {
		t.Fatal("probe1 left up with its link-local in DAD")
	}
	for _, tc := range []struct {
		what      string
		acceptDAD string
		after     ipam.AfterProbe
	}{
		{"for a main plugin that keeps DAD as it is", "1", ipam.LeaveUp},
		{"without any DAD to wait for", "0", ipam.LeaveUpOutOfDAD},
	} {
		netlab.IP(t, ns, "link", "set", "probe1", "down")
		netlab.Sysctl(t, ns, "net.ipv6.conf.probe1.accept_dad", tc.acceptDAD)
		ensureUp(t, u, path, "probe1")(tc.after)
		if !linkUp(t, ns, "probe1") {
			t.Errorf("probe1 was put down %s", tc.what)
		}
	}
}
