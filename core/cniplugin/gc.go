// GC: the attachments of this network that the runtime no longer names.

package cniplugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// GC releases the allocations that ADDs of this network (its "name") made
// and whose (container, interface) is not in cni.dev/valid-attachments.
// The list names this network's attachments only, so nothing else is
// touched: not the API's allocations (VMs, scripts), not another network's
// even from the same pool, not one recorded without an origin. Without a
// list, or with an empty one, it releases nothing and says so on stderr: a
// runtime that did not say what is valid has not said that everything is
// invalid (the agent's own GC reclaims allocations whose namespace is
// gone).
func (p *Plugin) GC(args *skel.CmdArgs) error {
	nc, c, err := parse(args)
	if err != nil {
		return err
	}
	if err := networkName(nc); err != nil {
		return err
	}
	if !nc.HasValid || len(nc.ValidAttachments) == 0 {
		what := "no cni.dev/valid-attachments list"
		if nc.HasValid {
			what = "an empty cni.dev/valid-attachments list"
		}
		fmt.Fprintf(p.Stderr, "spiderpool IPAM: GC of network %q with %s: released nothing (an absent or empty list never means \"release everything\"; "+
			"the agent reclaims allocations whose network namespace is gone by itself)\n", nc.Name, what)
		return nil
	}
	valid := map[api.AttachmentKey]bool{}
	for _, a := range nc.ValidAttachments {
		valid[api.AttachmentKey{ContainerID: a.ContainerID, Interface: a.IfName}] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*CallTimeout)
	defer cancel()
	ours := map[string]bool{}
	for _, pool := range nc.IPAM.Pools {
		ours[pool] = true
	}
	// This node's allocations only: with a store shared by several nodes
	// the list holds theirs too, and this runtime's list says nothing about
	// them. The agent names its node by the host name, as the plugin does.
	node, err := os.Hostname()
	if err != nil {
		return types.NewError(types.ErrInternal, "spiderpool IPAM: GC: this node's name: "+err.Error(), "")
	}
	stale := map[api.AttachmentKey]bool{}
	now := p.Now()
	for _, pool := range nc.IPAM.Pools {
		atts, err := c.List(ctx, pool, "")
		if err != nil {
			return cniError("list the allocations of pool "+pool, err)
		}
		for _, a := range atts {
			if gcStale(a, nc.Name, valid, ours, node, now) {
				stale[a.AttachmentKey] = true
			}
		}
	}
	keys := make([]api.AttachmentKey, 0, len(stale))
	for k := range stale {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].ContainerID+"/"+keys[i].Interface < keys[j].ContainerID+"/"+keys[j].Interface
	})
	// The spec: remove as much as possible, and report the errors. Each
	// release is conditional on the origin the agent holds at that moment:
	// the key may have been released and allocated afresh since the list.
	var errs []error
	for _, k := range keys {
		res, err := c.Release(ctx, api.ReleaseRequest{ContainerID: k.ContainerID, Interface: k.Interface, IfNetwork: nc.Name})
		if err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", describeKey(k.ContainerID, k.Interface), err))
			continue
		}
		for _, kept := range res.Kept {
			fmt.Fprintf(p.Stderr, "spiderpool IPAM: GC of network %q kept %s: it is now an allocation of origin %s\n",
				nc.Name, describeKey(kept.ContainerID, kept.Interface), kept.Origin)
		}
	}
	if len(errs) > 0 {
		return cniError(fmt.Sprintf("GC of network %q (%d stale allocations)", nc.Name, len(keys)), errors.Join(errs...))
	}
	return nil
}

// gcStale decides whether GC of network releases a: made by an ADD of
// that network (the runtime's list names that network's attachments and
// nothing else), not in the list, allocated (a reservation is an ADD in
// flight, not yet in any list), old enough that the list cannot predate
// it, made on this node, and holding only addresses of this network's
// pools.
func gcStale(a api.Attachment, network string, valid map[api.AttachmentKey]bool, ours map[string]bool, node string, now time.Time) bool {
	return a.MadeByNetwork(network) && !valid[a.AttachmentKey] && a.State == "allocated" && now.Sub(a.Created) >= GCMinAge &&
		(a.Node == "" || a.Node == node) && allPools(a, ours)
}

// allPools: every address of a comes from one of this network's pools, so
// that GC of one network leaves another network's workloads alone.
func allPools(a api.Attachment, ours map[string]bool) bool {
	for _, ip := range a.Addresses {
		if !ours[ip.Pool] {
			return false
		}
	}
	return len(a.Addresses) > 0
}
