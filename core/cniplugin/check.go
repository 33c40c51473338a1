// CHECK: the attachment the agent holds against the previous result the
// runtime passes.

package cniplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Check verifies that the agent holds an allocation for this container and
// interface, from the configured pools, with the addresses the main
// plugin's previous result lists.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	nc, c, err := parse(args)
	if err != nil {
		return err
	}
	key := api.AttachmentKey{ContainerID: args.ContainerID, Interface: args.IfName}
	ctx, cancel := context.WithTimeout(context.Background(), nc.IPAM.AgentWait+CallTimeout)
	defer cancel()
	var (
		att api.Attachment
		ok  bool
	)
	err = withAgent(ctx, nc.IPAM.AgentWait, func(ctx context.Context) error {
		var err error
		att, ok, err = c.Get(ctx, key)
		return err
	})
	if err != nil {
		return cniError("look up "+describeKey(key.ContainerID, key.Interface), err)
	}
	if !ok {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("spiderpool IPAM: the agent holds no allocation for %s (released, or never made)", describeKey(key.ContainerID, key.Interface)), "")
	}
	notOurs := func(format string, a ...any) error {
		return types.NewError(CodeNotAllocated, "spiderpool IPAM: "+describeKey(key.ContainerID, key.Interface)+": "+fmt.Sprintf(format, a...), "")
	}
	if att.AttachmentKey != key {
		return notOurs("the agent answered with the allocation of %s", describeKey(att.ContainerID, att.Interface))
	}
	if att.State != "allocated" {
		return notOurs("the allocation is %q, not allocated", att.State)
	}
	held := map[netip.Addr]bool{}
	var pools []string
	for _, a := range att.Addresses {
		held[a.Address.Addr()] = true
		pools = append(pools, a.Pool)
	}
	want := slices.Clone(nc.IPAM.Pools)
	sort.Strings(want)
	sort.Strings(pools)
	if !slices.Equal(want, pools) {
		return notOurs("holds addresses of pools %v; the network configuration names %v", pools, want)
	}
	if nc.PrevResult == nil {
		return nil
	}
	prev, err := prevAddresses(nc)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "spiderpool IPAM: prevResult: "+err.Error(), "")
	}
	for _, a := range prev {
		if !held[a] {
			return notOurs("the previous result lists %s, which the agent does not hold for it", a)
		}
		delete(held, a)
	}
	for a := range held {
		return notOurs("the agent holds %s for it, which the previous result does not list", a)
	}
	return nil
}

// prevAddresses reads the addresses of the previous result, in any version
// (a 0.4.0 network's prevResult is a 0.4.0 result: types/100 alone would
// refuse it).
func prevAddresses(nc *NetConf) ([]netip.Addr, error) {
	res, err := create.CreateFromBytes(injectVersion(nc.PrevResult, nc.CNIVersion))
	if err != nil {
		return nil, err
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ip := range cur.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return nil, fmt.Errorf("address %v is not an IP address", ip.Address.IP)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// injectVersion gives a prevResult without cniVersion (the spec lets the
// runtime leave it out) the configuration's version.
func injectVersion(prev json.RawMessage, ver string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(prev, &m) != nil {
		return prev
	}
	if _, ok := m["cniVersion"]; !ok {
		v, _ := json.Marshal(ver)
		m["cniVersion"] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return prev
	}
	return b
}
