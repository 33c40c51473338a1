package ipam

import (
	"context"
	"net/netip"
)

// Hooks for the external tests (package ipam_test, which can use the real
// bbolt store without an import cycle).

const (
	PrefixAttachments = prefixAttachments
	PrefixPools       = prefixPools
	PrefixDomains     = prefixDomains
)

// ReserveForTest reserves one address of each pool of r and stops there,
// as an agent killed in the middle of the check leaves it.
func ReserveForTest(ctx context.Context, m *IPAM, r AllocateRequest) error {
	key := AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}
	a := &allocation{m: m, req: r, key: key, addrRev: map[netip.Addr]int64{}, tried: map[string]map[netip.Addr]bool{}}
	a.att = Attachment{AttachmentKey: key, Workload: r.Workload, Node: m.node, State: StateReserved, Created: m.now().UTC()}
	for _, name := range r.Pools {
		p, _ := m.pool(name)
		if err := a.reserve(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// WorkloadKeyForTest is the key of a workload's endpoint record.
func WorkloadKeyForTest(w string) string { return workloadKey(w) }

// InFlightForTest marks key as being allocated by this process now, as an
// allocation stuck in a store call leaves it; the returned func ends it.
func InFlightForTest(m *IPAM, key AttachmentKey) func() {
	m.inflight.take(key)
	return func() { m.inflight.end(key) }
}
