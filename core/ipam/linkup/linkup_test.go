package linkup_test

import (
	"context"
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
	restoreA := mustEnsureUp(t, u, path, "probe0")
	restoreB := mustEnsureUp(t, u, path, "probe0")
	restoreA()
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 was put down by the first allocation's restore while the second still probes on it")
	}
	restoreA() // a second call changes nothing
	if !linkUp(t, ns, "probe0") {
		t.Fatal("a repeated restore put probe0 down under the second allocation")
	}
	restoreB()
	if linkUp(t, ns, "probe0") {
		t.Fatal("probe0 stays up after the last allocation's restore")
	}

	// Concurrently: every user sees the interface up until it restores;
	// the last restore puts it down; the other interface is not touched.
	const n = 16
	var wg sync.WaitGroup
	restores := make([]func(), n)
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
			restores[i]()
		}()
	}
	rwg.Wait()
	if !linkUp(t, ns, "probe0") {
		t.Fatal("probe0 is down while one of its users still probes")
	}
	restores[n-1]()
	if linkUp(t, ns, "probe0") || linkUp(t, ns, "other0") {
		t.Fatal("after every restore probe0 (or the untouched other0) is up")
	}

	// An interface up before anyone raised it is not put down.
	netlab.IP(t, ns, "link", "set", "other0", "up")
	restore := mustEnsureUp(t, u, path, "other0")
	restore()
	if !linkUp(t, ns, "other0") {
		t.Fatal("an interface that was up before the probe was put down")
	}
}

// mustEnsureUp raises name in the namespace at path through u, which must
// succeed, and returns the restore.
func mustEnsureUp(t *testing.T, u *Netlink, path, name string) func() {
	t.Helper()
	restore, err := u.EnsureUp(context.Background(), path, name)
	if err != nil {
		t.Fatal(err)
	}
	return restore
}
