package cniplugin

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// TestGCStale: what GC may release. Each case changes one thing from an
// allocation GC must release; every other case must be left alone.
func TestGCStale(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	ours := map[string]bool{"v4": true, "v6": true}
	key := ipamapi.AttachmentKey{ContainerID: "c1", Interface: "net1"}
	addr := func(pool string) ipamapi.AllocatedIP {
		return ipamapi.AllocatedIP{Pool: pool, Address: netip.MustParsePrefix("10.0.0.5/24")}
	}
	stale := func() ipamapi.Attachment {
		return ipamapi.Attachment{AttachmentKey: key, State: "allocated", Node: "node-a",
			Created: now.Add(-time.Minute), Addresses: []ipamapi.AllocatedIP{addr("v4"), addr("v6")}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*ipamapi.Attachment, map[ipamapi.AttachmentKey]bool)
		stale bool
	}{
		{"not in the list", func(*ipamapi.Attachment, map[ipamapi.AttachmentKey]bool) {}, true},
		{"no node recorded", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.Node = "" }, true},
		{"exactly the minimum age", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.Created = now.Add(-gcMinAge) }, true},
		{"in the list", func(_ *ipamapi.Attachment, v map[ipamapi.AttachmentKey]bool) { v[key] = true }, false},
		{"reserved: an ADD in flight", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.State = "reserved" }, false},
		{"younger than the list may be", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.Created = now.Add(-time.Second) }, false},
		{"another node's", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.Node = "node-b" }, false},
		{"an address of another network's pool", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) {
			a.Addresses = append(a.Addresses, addr("other"))
		}, false},
		{"no address", func(a *ipamapi.Attachment, _ map[ipamapi.AttachmentKey]bool) { a.Addresses = nil }, false},
	} {
		a, valid := stale(), map[ipamapi.AttachmentKey]bool{{ContainerID: "c2", Interface: "net1"}: true}
		tc.edit(&a, valid)
		if got := gcStale(a, valid, ours, "node-a", now); got != tc.stale {
			t.Errorf("%s: gcStale = %v, want %v", tc.name, got, tc.stale)
		}
	}
}
