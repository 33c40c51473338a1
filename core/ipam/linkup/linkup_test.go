package linkup_test

import (
	"context"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"strings"
	"sync"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam/linkup"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

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
	ns := netlab.NewNS(t, "upper")
	// veth pairs whose peers are up: the raised end gets carrier at once.
	for _, l := range []string{"probe0", "other0"} {
		netlab.IP(t, ns, "link", "add", l, "type", "veth", "peer", "name", l+"p")
		netlab.IP(t, ns, "link", "set", l+"p", "up")
	}
	path := "/var/run/netns/" + ns
	u := &Netlink{}
	ctx := context.Background()

	// In sequence, as the attack had it: A raises, B finds it up, A ends.
	restoreA, err := u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
	restoreB, err := u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			restores[i], errs[i] = u.EnsureUp(ctx, path, "probe0")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureUp %d: %v", i, err)
		}
	}
	var rwg sync.WaitGroup
	for i := range n - 1 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			restores[i](ipam.PutDown)
		}()
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
	restore, err := u.EnsureUp(ctx, path, "other0")
	if err != nil {
		t.Fatal(err)
	}
	restore(ipam.PutDown)
	if !linkUp(t, ns, "other0") {
		t.Fatal("an interface that was up before the probe was put down")
	}
}

// A caller that raises the interface itself next (a CNI main plugin) ends
// its probe leaving the interface up, and the count of users is cleared
// with it: the next probe finds an interface that is up and not raised
// here, so its end does not put it down either.
func TestEnsureUpLeftUpForACallerThatRaisesIt(t *testing.T) {
	ns := netlab.NewNS(t, "upper")
	netlab.IP(t, ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe0p")
	netlab.IP(t, ns, "link", "set", "probe0p", "up")
	// No DAD: the link-local of the raise is never tentative (see
	// TestEnsureUpPutsDownALinkLocalInDAD).
	netlab.Sysctl(t, ns, "net.ipv6.conf.probe0.accept_dad", "0")
	path := "/var/run/netns/" + ns
	u := &Netlink{}
	ctx := context.Background()

	done, err := u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 is not up for the probe")
	}
	done(ipam.LeaveUpOutOfDAD)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 was put down although its caller leaves it up")
	}
	done, err = u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
	done(ipam.PutDown)
	if !linkUp(t, ns, "probe0") {
		t.Fatal("a probe on an interface it did not raise put it down")
	}

	// With a sibling still probing, the one leaving it up changes nothing;
	// the last one decides.
	netlab.IP(t, ns, "link", "set", "probe0", "down")
	doneA, err := u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
	doneB, err := u.EnsureUp(ctx, path, "probe0")
	if err != nil {
		t.Fatal(err)
	}
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
	ns := netlab.NewNS(t, "dad")
	netlab.IP(t, ns, "link", "add", "probe1", "type", "veth", "peer", "name", "probe1p")
	netlab.IP(t, ns, "link", "set", "probe1p", "up")
	// DAD as a fresh namespace has it, one probe a second: the link-local
	// stays tentative for a second or more after the raise.
	netlab.Sysctl(t, ns, "net.ipv6.conf.probe1.accept_dad", "1", "net.ipv6.conf.probe1.dad_transmits", "1",
		"net.ipv6.neigh.probe1.retrans_time_ms", "10000")
	path := "/var/run/netns/" + ns
	u := &Netlink{}
	done, err := u.EnsureUp(context.Background(), path, "probe1")
	if err != nil {
		t.Fatal(err)
	}
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
		done, err := u.EnsureUp(context.Background(), path, "probe1")
		if err != nil {
			t.Fatal(err)
		}
		done(tc.after)
		if !linkUp(t, ns, "probe1") {
			t.Errorf("probe1 was put down %s", tc.what)
		}
	}
}
