// Package cniplugin is the CNI IPAM plugin `spiderpool`: a container
// runtime's main plugin (macvlan, ipvlan, bridge, host-device) execs it once
// per workload interface, and it asks the spiderpool-agent on this node, over
// the control socket, for the workload's addresses. The agent reserves them,
// checks on the wire that nobody uses them and that the gateway answers, and
// only then hands them out; so a conflict or a dead gateway fails the ADD
// and the workload never starts on them.
//
// It is built on containernetworking/cni's skel and types/100 and speaks
// CNI 0.3.0 to 1.1.0: ADD, DEL, CHECK, STATUS, GC and VERSION. It links only
// the standard library, the CNI types and core/api: no HCL, gRPC or
// go-plugin (TestLinksNoHeavyDependencies enforces it), and not net/http with
// its TLS and x509 (core/api speaks HTTP/1.0 itself; test/layout's
// TestDependencyRule enforces it), so that it is small and starts about as
// fast as an empty Go program.
package cniplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
)

// Version is the plugin's release, set at link time by the Makefile.
var Version = "dev"

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// Error codes. 1-99 are the spec's; 100 and above are this plugin's, one per
// verdict of the agent, so that a runtime's log can be grepped for them.
const (
	// CodeUnavailable is the spec's STATUS error 50: the plugin cannot
	// service ADD requests.
	CodeUnavailable uint = 50

	CodePoolFull       uint = 101
	CodeConflict       uint = 102 // every candidate tried was in use on the wire
	CodeGateway        uint = 103 // the pool's gateway did not answer
	CodeBlocked        uint = 104 // a detector blocked the address
	CodeCheckFailed    uint = 105 // a detector could not decide
	CodeUnknownPool    uint = 106
	CodeIPAMDisabled   uint = 107
	CodeMismatch       uint = 108 // the key holds addresses from other pools
	CodeUntrustedAgent uint = 109 // the process on the socket is not root's
	CodeNotAllocated   uint = 110 // CHECK: the allocation is not what the workload has
)

// Bounds of the calls to the agent. An allocation with detection on takes a
// few 100 ms reply windows; under a burst of workloads it queues behind
// others, and with an etcd store it may wait out etcd.outage_wait (at most
// 20 s). ADD, DEL and CHECK add ipam.agent_wait (at most MaxAgentWait) in
// front of these for an agent that is away. Runtimes have their own,
// longer, deadlines.
const (
	// AllocateTimeout outlasts the agent's own deadline of an allocation
	// (ipam.allocation_timeout, at most api.MaxAllocationTimeout).
	AllocateTimeout = api.AllocateWait
	CallTimeout     = 10 * time.Second
	// StdinTimeout bounds the read of the network configuration.
	StdinTimeout = 10 * time.Second
	// GCMinAge: GC leaves allocations younger than this alone. The
	// runtime's list of valid attachments was made before GC ran, so a
	// workload whose ADD finished just after is missing from it.
	GCMinAge = 5 * time.Second
)

// Plugin runs the commands. The zero value is not usable; see New.
type Plugin struct {
	Stdout io.Writer // the result of ADD
	Stderr io.Writer // notes a person should read (GC)
	Now    func() time.Time
}

// New returns a Plugin writing to the process's stdout and stderr.
func New() *Plugin {
	return &Plugin{Stdout: os.Stdout, Stderr: os.Stderr, Now: time.Now}
}

// Funcs are the command handlers for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

// Main is the binary's main: it bounds the network configuration read from
// stdin, then hands over to skel, which prints errors as CNI error JSON and
// exits 1.
func Main() {
	cmd := os.Getenv("CNI_COMMAND")
	if cmd != "" && cmd != "VERSION" {
		// A runtime writes the configuration and closes stdin at once; a
		// stdin that never ends must not hold the plugin (and the workload's
		// start) forever.
		timer := time.AfterFunc(StdinTimeout, func() {
			exitWith(types.NewError(types.ErrIOFailure,
				fmt.Sprintf("the network configuration on stdin did not end within %v", StdinTimeout), ""))
		})
		data, err := io.ReadAll(io.LimitReader(os.Stdin, MaxNetconfBytes+1))
		timer.Stop()
		switch {
		case err != nil:
			exitWith(types.NewError(types.ErrIOFailure, "read the network configuration from stdin: "+err.Error(), ""))
		case len(data) > MaxNetconfBytes:
			exitWith(types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("the network configuration on stdin is larger than %d bytes", MaxNetconfBytes), ""))
		}
		// skel reads os.Stdin to its end without a bound: give it the bounded copy.
		r, w, err := os.Pipe()
		if err != nil {
			exitWith(types.NewError(types.ErrIOFailure, "make a pipe for the network configuration: "+err.Error(), ""))
		}
		go func() {
			_, _ = w.Write(data)
			w.Close()
		}()
		os.Stdin = r
	}
	about := fmt.Sprintf("CNI IPAM plugin spiderpool %s: addresses from the spiderpool-agent on this node (%s by default)", Version, api.DefaultSocketPath)
	skel.PluginMainFuncs(New().Funcs(), version.PluginSupports(SupportedVersions...), about)
}

func exitWith(e *types.Error) {
	_ = e.Print()
	os.Exit(1)
}

// networkName checks the network's name, which ADD records as the
// allocation's origin and GC compares with it: without a usable one, GC
// could not tell this network's allocations from another's.
func networkName(nc *NetConf) error {
	var fe *api.FieldError
	if err := api.ValidateNetworkName("name", nc.Name); errors.As(err, &fe) {
		return types.NewError(types.ErrInvalidNetworkConfig, "spiderpool IPAM: "+confErr("name", "the network's name %s", fe.Msg).Error(), "")
	}
	return nil
}

// parse reads the network configuration; a malformed one is the spec's
// error 7 naming the field.
func parse(args *skel.CmdArgs) (*NetConf, *api.Client, error) {
	nc, err := ParseNetConf(args.StdinData)
	if err != nil {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, "spiderpool IPAM: "+err.Error(), "")
	}
	// core/api's client believes only a trusted peer (SO_PEERCRED: root, or
	// the agent's own user in a directory root gave it), like the CLI.
	return nc, &api.Client{SocketPath: nc.IPAM.Socket}, nil
}

// Add asks the agent for one address per configured pool and prints the
// result in the network configuration's CNI version.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	nc, c, err := parse(args)
	if err != nil {
		return err
	}
	if err := networkName(nc); err != nil {
		return err
	}
	workload, err := Workload(args.Args)
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "spiderpool IPAM: "+err.Error(), "")
	}
	req := api.AllocateRequest{
		ContainerID: args.ContainerID, Interface: args.IfName, Netns: args.Netns,
		Workload: workload, Pools: nc.IPAM.Pools, SkipDetection: nc.Skips,
		// What this network's GC compares: it releases only what ADDs of
		// this network made.
		Origin: &api.Origin{Kind: api.OriginCNI, Network: nc.Name, Interface: args.IfName},
	}
	ctx, cancel := context.WithTimeout(context.Background(), nc.IPAM.AgentWait+AllocateTimeout)
	defer cancel()
	var att api.Attachment
	err = withAgent(ctx, nc.IPAM.AgentWait, func(ctx context.Context) error {
		var err error
		att, err = c.Allocate(ctx, req)
		return err
	})
	if err != nil {
		return cniError("allocate "+describeKey(args.ContainerID, args.IfName)+" from "+strings.Join(nc.IPAM.Pools, ", "), err)
	}
	res, err := Result(att)
	if err != nil {
		// The agent handed out something unusable: give it back.
		rctx, rcancel := context.WithTimeout(context.Background(), CallTimeout)
		defer rcancel()
		_, _ = c.Release(rctx, api.ReleaseRequest{ContainerID: args.ContainerID, Interface: args.IfName})
		return types.NewError(types.ErrInternal, "spiderpool IPAM: "+err.Error(), "")
	}
	out, err := res.GetAsVersion(nc.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "spiderpool IPAM: "+err.Error(), "")
	}
	return out.PrintTo(p.Stdout)
}

// Result turns an allocation into a CNI result of the current version. An
// IPAM result names no interface: the main plugin fills that in.
func Result(att api.Attachment) (*current.Result, error) {
	if len(att.Addresses) == 0 {
		return nil, fmt.Errorf("the agent's allocation for %s holds no address", describeKey(att.ContainerID, att.Interface))
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for _, a := range att.Addresses {
		if !a.Address.IsValid() {
			return nil, fmt.Errorf("the agent returned an invalid address for pool %s", a.Pool)
		}
		ipc := &current.IPConfig{Address: *ipNet(a.Address)}
		if a.Gateway.IsValid() {
			ipc.Gateway = net.IP(a.Gateway.AsSlice())
		}
		res.IPs = append(res.IPs, ipc)
		for _, r := range a.Routes {
			rt := &types.Route{Dst: *ipNet(r.Dst.Masked())}
			switch {
			case r.GW.IsValid():
				rt.GW = net.IP(r.GW.AsSlice())
			case a.Gateway.IsValid():
				rt.GW = net.IP(a.Gateway.AsSlice())
			}
			res.Routes = append(res.Routes, rt)
		}
	}
	return res, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().Unmap()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// Del releases what the container's interface holds. Releasing nothing
// succeeds (the spec's idempotent DEL). An agent that is away (stopped,
// restarting) is waited for, up to ipam.agent_wait; if it is still away
// the DEL is spooled on the node (core/ipam/cnispool) and succeeds: the
// agent applies the spool when it starts, before it serves an ADD.
//
// Success is the right answer for a spooled DEL: a runtime does not retry
// a failed DEL (Podman logs it and forgets the container; the kubelet
// retries only while the pod exists), so an error would leave the address
// allocated until the agent's GC noticed the namespace was gone, minutes
// later; the spool is what guarantees the release. Only a DEL that could
// not be spooled either (a full or untrusted spool) fails, saying why.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	nc, c, err := parse(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), nc.IPAM.AgentWait+CallTimeout)
	defer cancel()
	start := p.Now()
	err = withAgent(ctx, nc.IPAM.AgentWait, func(ctx context.Context) error {
		_, err := c.Release(ctx, api.ReleaseRequest{ContainerID: args.ContainerID, Interface: args.IfName})
		return err
	})
	if err == nil {
		return nil
	}
	what := "release " + describeKey(args.ContainerID, args.IfName)
	if !undelivered(err) {
		return cniError(what, err)
	}
	rec := cnispool.Record{Version: 1, ContainerID: args.ContainerID, Interface: args.IfName, Network: nc.Name, DeletedAt: p.Now().UTC()}
	if serr := cnispool.Write(nc.IPAM.SpoolDir, rec); serr != nil {
		e := agentError(err)
		e.Msg = fmt.Sprintf("spiderpool IPAM: %s: %s; and the DEL could not be spooled for the agent either: %v", what, e.Msg, serr)
		return e
	}
	fmt.Fprintf(p.Stderr, "spiderpool IPAM: %s: the agent did not take it within %v (ipam.agent_wait %v): %s; spooled in %s, the agent releases it when it is back\n",
		what, p.Now().Sub(start).Round(time.Millisecond), nc.IPAM.AgentWait, agentError(err).Msg, nc.IPAM.SpoolDir)
	return nil
}

// Backoff between attempts while the agent is away: its restart takes
// ~150 ms, so the first attempts come close together.
const (
	agentBackoffMin = 25 * time.Millisecond
	agentBackoffMax = 250 * time.Millisecond
)

// withAgent runs call, and again while it fails because the agent is away
// (agentAway), with a short backoff, until wait has passed since the first
// attempt or ctx ends; it returns the last error. ADD, DEL and CHECK are
// idempotent per (container id, interface), so a repeat is safe even when
// an earlier attempt reached the agent.
func withAgent(ctx context.Context, wait time.Duration, call func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	pause := agentBackoffMin
	for {
		err := call(ctx)
		if err == nil || !agentAway(err) {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, agentBackoffMax)
	}
}

// agentAway: err says the agent is not there to answer now - nothing
// listens on its socket (stopped, restarting), the connection was dropped
// before any answer (it was stopping), or it answered that it is not ready
// or busy with this key (core/api's rule for what a caller may retry).
func agentAway(err error) bool {
	var (
		nr *api.NotRunningError
		ae *api.APIError
	)
	switch {
	case errors.As(err, &nr):
		return true
	case errors.As(err, &ae):
		return ae.TryAgain()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || (errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF))
}

// undelivered: a DEL that failed this way may not have been applied by
// the agent, and the agent may apply it later from the spool - it was
// away, did not answer in time, broke the connection, or failed on its
// side (a 5xx). A refusal (a bad request, an untrusted peer) is not
// spooled: the agent would refuse it again.
func undelivered(err error) bool {
	var (
		ae *api.APIError
		up *api.UntrustedPeerError
		ne net.Error
	)
	switch {
	case errors.As(err, &up):
		return false
	case errors.As(err, &ae):
		return ae.TryAgain() || ae.Status >= 500
	}
	return agentAway(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

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

// Status reports whether an ADD could be served now: the agent answers,
// IPAM is on, and each configured pool exists and has a free address.
// Anything else is the spec's error 50. It answers at once, without
// ipam.agent_wait: a runtime asks STATUS to decide, not to wait.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	nc, c, err := parse(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	usage, err := c.Pools(ctx)
	if err != nil {
		return types.NewError(CodeUnavailable, "spiderpool IPAM cannot serve ADD: "+agentError(err).Msg, "")
	}
	byName := map[string]api.PoolUsage{}
	for _, u := range usage {
		byName[u.Name] = u
	}
	for _, name := range nc.IPAM.Pools {
		u, ok := byName[name]
		switch {
		case !ok:
			return types.NewError(CodeUnavailable, fmt.Sprintf("spiderpool IPAM cannot serve ADD: the agent on %s has no pool %q", c.SocketPath, name), "")
		case u.Free <= 0:
			return types.NewError(CodeUnavailable, fmt.Sprintf("spiderpool IPAM cannot serve ADD: pool %s is full: %d addresses, %d allocated, %d reserved, %d quarantined",
				name, u.Size, u.Allocated, u.Reserved, u.Quarantined), "")
		}
	}
	return nil
}

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

func describeKey(container, iface string) string {
	return fmt.Sprintf("container %s interface %s", input.Cut(container), input.Cut(iface))
}

// cniError maps an error of the agent onto a CNI error for what: the spec's
// code where one fits, else this plugin's; the agent's verdict as the
// message.
func cniError(what string, err error) error {
	e := agentError(err)
	e.Msg = "spiderpool IPAM: " + what + ": " + e.Msg
	return e
}

// agentError classifies an error of api.Client.
func agentError(err error) *types.Error {
	var (
		nr *api.NotRunningError
		up *api.UntrustedPeerError
		ae *api.APIError
		ne net.Error
	)
	switch {
	case errors.As(err, &nr):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf(
			"spiderpool-agent is not running: nothing answers on %s (start it: systemctl start spiderpool-agent)", nr.Path), "")
	case errors.As(err, &up):
		return types.NewError(CodeUntrustedAgent, up.Error(), "")
	case errors.As(err, &ae):
		return types.NewError(apiCode(ae), ae.ErrorBody.Error, skippedDetails(ae.Skipped))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		// No answer in time, or the connection broke: the agent may be
		// busy, restarting or stopping.
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// apiCode is the CNI code of an error answer of the agent.
func apiCode(ae *api.APIError) uint {
	switch ae.Code {
	case api.CodeBadRequest:
		if strings.HasPrefix(ae.Field, "pools") || strings.HasPrefix(ae.Field, "origin") {
			return types.ErrInvalidNetworkConfig
		}
		return types.ErrInvalidEnvironmentVariables
	case api.CodePoolFull:
		return CodePoolFull
	case api.CodeConflict:
		return CodeConflict
	case api.CodeGateway:
		return CodeGateway
	case api.CodeBlocked:
		return CodeBlocked
	case api.CodeCheckFailed:
		return CodeCheckFailed
	case api.CodeUnknownPool:
		return CodeUnknownPool
	case api.CodeDisabled:
		return CodeIPAMDisabled
	case api.CodeMismatch:
		return CodeMismatch
	case api.CodeNotFound:
		return types.ErrUnknownContainer
	}
	// try_again, not_ready or a 503: the agent is up but cannot serve yet
	// (core/api's one rule for what a caller may retry).
	if ae.TryAgain() {
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}

// skippedDetails lists the candidates the agent passed over, for the
// error's details.
func skippedDetails(sk []api.SkippedIP) string {
	if len(sk) == 0 {
		return ""
	}
	parts := make([]string, 0, len(sk))
	for _, s := range sk {
		q := ""
		if s.Quarantined {
			q = ", quarantined"
		}
		parts = append(parts, fmt.Sprintf("%s (pool %s): %s%s", s.Address, s.Pool, s.Reason, q))
	}
	return "skipped " + strings.Join(parts, "; ")
}
