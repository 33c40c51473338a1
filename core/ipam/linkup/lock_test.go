package linkup

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// A raise or lower of one interface waits only for the others of the same
// interface: a workload's probe does not queue behind every other
// workload's link changes (a node's storm of workload starts did, on one
// lock for all interfaces).
func TestOneInterfaceWaitsOnlyForItself(t *testing.T) {
	_, path := vethNS(t, "lock", "probe0", "other0")
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	u := &Netlink{}
	// Someone is changing probe0 (held as raise and lower hold it).
	unlock := u.lockName(nameID{dev: st.Dev, ino: st.Ino, name: "probe0"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// upAndDown raises iface and puts it down again in the background; the
	// channel gets EnsureUp's error.
	upAndDown := func(iface string) <-chan error {
		errc := make(chan error, 1)
		go func() {
			done, err := u.EnsureUp(ctx, path, iface)
			if err == nil {
				done(ipam.PutDown)
			}
			errc <- err
		}()
		return errc
	}
	select {
	case err := <-upAndDown("other0"):
		if err != nil {
			t.Fatalf("other0: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("raising other0 waited for probe0's lock")
	}

	same := upAndDown("probe0")
	// probe0 waits while its lock is held: raise and lower other0 once more
	// (a full netlink round) and see that probe0's EnsureUp has not
	// answered meanwhile.
	if err := <-upAndDown("other0"); err != nil {
		t.Fatal(err)
	}
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
