package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

const busyPools = `
pool "seed" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.40-10.0.0.40"]
}
pool "b4" {
  subnet = "10.0.0.0/24"
  ranges = ["10.0.0.50-10.0.0.55"]
}
`

// A LAN host that holds two pool addresses announces them once (a
// gratuitous ARP each) while one workload is watched: ipam pools counts
// them busy, ipam show says who claimed them, and the allocations that
// follow never probe them - each gets one of the other addresses, nothing
// is quarantined (a probe would have found the host and quarantined the
// address), the skipped lists carry the wire's evidence - and the pool is
// then full, naming the busy addresses.
func TestBusyAddressesSkipped(t *testing.T) {
	lan := netlab.NewLAN(t)
	a := startIPAM(t, agentOpts{pools: busyPools})
	c := ctx(t)
	seed := workload(t, lan, "seed", "02:00:00:00:03:01", false)
	if _, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c-seed", Interface: "eth0", Netns: seed.Path, Workload: "default/seed", Pools: []string{"seed"}}); err != nil {
		t.Fatal(err)
	}
	ownerMAC := "02:00:00:00:03:99"
	owned := []netip.Addr{netip.MustParseAddr("10.0.0.51"), netip.MustParseAddr("10.0.0.54")}
	owner := lan.AddHost("owner", ownerMAC, "10.0.0.51/24", "10.0.0.54/24")
	op := netlab.OpenRaw(t, owner.Path, "eth0")
	for _, o := range owned {
		op.Send(t)(arpnd.BuildGratuitousARP(owner.MAC, o))
	}
	poll.Until(t, 10*time.Second, "ipam pools to count the announced addresses busy", func() (bool, error) {
		return poolUsage(t, a, "b4").Busy == len(owned), nil
	})
	out, errOut, code := a.CLI("ipam", "pools", "--socket", a.Socket)
	if code != 0 || !strings.Contains(out, "FREE  BUSY") || busyColumn(out, "b4") != "2" {
		t.Errorf("ipam pools (exit %d) lacks b4's 2 busy addresses:\n%s%s", code, out, errOut)
	}
	out, errOut, code = a.CLI("ipam", "show", "10.0.0.51", "--socket", a.Socket)
	if code != 0 || !strings.Contains(out, "busy on the wire") || !strings.Contains(out, ownerMAC) {
		t.Errorf("ipam show 10.0.0.51 (exit %d) does not say it is busy:\n%s%s", code, out, errOut)
	}

	got := map[netip.Addr]bool{}
	for i := range 4 {
		wl := workload(t, lan, fmt.Sprint("b", i), fmt.Sprintf("02:00:00:00:03:%02x", 0x10+i), false)
		att, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: fmt.Sprint("c-b", i), Interface: "eth0", Netns: wl.Path,
			Workload: fmt.Sprint("default/b", i), Pools: []string{"b4"}})
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		addr := att.Addresses[0].Address.Addr()
		got[addr] = true
		for _, o := range owned {
			if addr == o {
				t.Errorf("allocation %d got %s, which the owner holds and announced", i, addr)
			}
		}
		for _, sk := range att.Skipped {
			if sk.Quarantined || !strings.HasPrefix(sk.Reason, "seen on the wire from "+ownerMAC+" at ") {
				t.Errorf("allocation %d skipped %+v: want only busy addresses, skipped without a probe", i, sk)
			}
		}
	}
	if u := poolUsage(t, a, "b4"); u.Quarantined != 0 || u.Allocated != 4 || u.Busy != 2 {
		t.Errorf("b4 after 4 allocations: %+v, want 4 allocated, nothing quarantined (no probe hit the owner), 2 busy", u)
	}
	wl := workload(t, lan, "b-full", "02:00:00:00:03:20", false)
	_, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "c-full", Interface: "eth0", Netns: wl.Path, Workload: "default/full", Pools: []string{"b4"}})
	if e := apiErr(t, err); e.Code != api.CodePoolFull || !strings.Contains(e.Error(), "2 of them free in the store but claimed on the wire") {
		t.Errorf("the 5th allocation: %v, want pool_full naming the 2 busy addresses", err)
	}
}

// busyColumn is the BUSY column of pool's line in ipam pools' table.
func busyColumn(table, pool string) string {
	lines := strings.Split(table, "\n")
	head := strings.Fields(lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == len(head) && f[0] == pool {
			for i, h := range head {
				if h == "BUSY" {
					return f[i]
				}
			}
		}
	}
	return ""
}
