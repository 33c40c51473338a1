package ipam

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// BusyAddresses is what the agent learned on the wire about pool addresses
// it does not hold (core/ipam/watch keeps it): another station claimed
// them recently. The candidate search of a pool that detects conflicts
// skips them without reserving or probing them, which would cost a probe
// window and end in a quarantine anyway. It only ever skips: an address
// not in it is still checked on the wire, so detection at allocation stays
// the proof that an address is free.
type BusyAddresses interface {
	// BusyIn returns the entry of addr in the layer-2 domain while it is
	// live.
	BusyIn(domain string, addr netip.Addr) (ipamapi.BusyAddress, bool)
	// Busy lists the live entries.
	Busy() []ipamapi.BusyAddress
}

// maxBusyListed bounds the busy candidates one allocation lists among its
// skipped addresses (attachment, history, error): a LAN full of
// announcing hosts must not grow every record; the rest are skipped all
// the same and counted in a pool-full error.
const maxBusyListed = 8

// skipBusy says whether the candidate addr of p, free in the store, is to
// be skipped because another station claimed it on the wire recently. Only
// pools whose conflict detection runs for this request skip: where nobody
// probes, the operator chose not to judge addresses by the wire (a proxy
// ARP router claims every address, for one). The first skips are listed
// among the allocation's skipped addresses.
func (a *allocation) skipBusy(p *Pool, addr netip.Addr) bool {
	if a.m.busy == nil || !a.detects(p, ipamapi.DetectionConflict) {
		return false
	}
	b, ok := a.m.busy.BusyIn(p.Domain, addr)
	if !ok {
		return false
	}
	k := claimKey{p.Domain, addr}
	if a.busy == nil {
		a.busy = map[claimKey]string{}
	}
	if _, seen := a.busy[k]; !seen {
		a.busy[k] = p.Name
		if len(a.busy) <= maxBusyListed {
			a.skipped = append(a.skipped, SkippedIP{Pool: p.Name, Address: addr, Reason: busyReason(b)})
		}
		a.m.log.Debug("address seen busy on the wire: skipped without a probe", "pool", p.Name, "address", addr, "mac", b.MAC, "seen", b.Seen)
	}
	return true
}

// busyReason is a busy skip's reason in the skipped list.
func busyReason(b ipamapi.BusyAddress) string {
	return fmt.Sprintf("seen on the wire from %s at %s (%s)", b.MAC, b.Seen.UTC().Format(time.RFC3339), b.Evidence)
}

// busyNote completes a pool-full message with the busy candidates the
// search skipped in p.
func (a *allocation) busyNote(p *Pool) string {
	n := 0
	for _, pool := range a.busy {
		if pool == p.Name {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of them free in the store but claimed on the wire by other stations recently: ipam conflicts lists them)", n)
}

// busyFree counts the busy addresses of p that have no live record in the
// store (recorded holds the addresses that do): what `ipam pools` shows
// as BUSY.
func (m *IPAM) busyFree(p *Pool, recorded map[netip.Addr]bool) int {
	if m.busy == nil {
		return 0
	}
	n := 0
	for _, b := range m.busy.Busy() {
		if b.Domain == p.Domain && p.Contains(b.Address) && !recorded[b.Address] {
			n++
		}
	}
	return n
}
