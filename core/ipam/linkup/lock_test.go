package linkup

import (
	"context"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// A raise or lower of one interface waits only for the others of the same
// interface: a workload's probe does not queue behind every other
// workload's link changes (a node's storm of workload starts did, on one
// lock for all interfaces).
func TestOneInterfaceWaitsOnlyForItself(t *testing.T) {
	ns := netlab.NewNS(t, "lock")
	for _, l := range []string{"probe0", "other0"} {
		netlab.IP(t, ns, "link", "add", l, "type", "veth", "peer", "name", l+"p")
		netlab.IP(t, ns, "link", "set", l+"p", "up")
	}
	path := "/var/run/netns/" + ns
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	u := &Netlink{}
	// Someone is changing probe0 (held as raise and lower hold it).
	unlock := u.lockName(nameID{dev: st.Dev, ino: st.Ino, name: "probe0"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := make(chan error, 1)
	go func() {
		done, err := u.EnsureUp(ctx, path, "other0")
		if err == nil {
			done(ipam.PutDown)
		}
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("other0: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("raising other0 waited for probe0's lock")
	}

	same := make(chan error, 1)
	go func() {
		done, err := u.EnsureUp(ctx, path, "probe0")
		if err == nil {
			done(ipam.PutDown)
		}
		same <- err
	}()
	// probe0 waits while its lock is held: raise it on other0 once more
	// (a full netlink round) and see that probe0's EnsureUp has not
	// answered meanwhile.
	done, err := u.EnsureUp(ctx, path, "other0")
	if err != nil {
		t.Fatal(err)
	}
	done(ipam.PutDown)
	select {
	case err := <-same:
		t.Fatalf("probe0 was raised and lowered while its lock was held (err %v)", err)
	default:
	}
	unlock()
	if err := <-same; err != nil {
		t.Fatalf("probe0 after its lock was dropped: %v", err)
	}
	u.mu.Lock()
	left := len(u.names)
	u.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d name locks left after every user dropped them", left)
	}
}
