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
// its TLS and x509 (ipamapi speaks HTTP/1.0 itself; test/layout's
// TestDependencyRule enforces it), so that it is small and starts about as
// fast as an empty Go program.
package cniplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
	"github.com/spiderpool-agent/spiderpool-agent/core/retry"
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
	// CheckNetns refuses a CNI_NETNS that is the plugin's own namespace
	// (refuseOwnNetns): ADD before it allocates, DEL after it releases.
	// Main sets it unless the runtime set CNI_NETNS_OVERRIDE.
	CheckNetns bool
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
	p := New()
	p.CheckNetns = !netnsOverridden(os.Getenv("CNI_NETNS_OVERRIDE"))
	// The plugin makes skel's check of CNI_NETNS itself, without /proc
	// (see refuseOwnNetns); skel is told to skip its own.
	_ = os.Setenv("CNI_NETNS_OVERRIDE", "1")
	about := fmt.Sprintf("CNI IPAM plugin spiderpool %s: addresses from the spiderpool-agent on this node (%s by default)", Version, api.DefaultSocketPath)
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports(SupportedVersions...), about)
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
	// ipamapi's client believes only a trusted peer (SO_PEERCRED: root, or
	// the agent's own user in a directory root gave it), like the CLI.
	return nc, &api.Client{SocketPath: nc.IPAM.Socket}, nil
}

// Add asks the agent for one address per configured pool and prints the
// result in the network configuration's CNI version.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	if p.CheckNetns {
		if err := refuseOwnNetns(args.Netns); err != nil {
			return err
		}
	}
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
		Workload: workload, Pools: nc.IPAM.Pools, SkipDetection: nc.Skips, MainPluginKeepsDAD: nc.KeepsDAD,
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
	err := p.del(args)
	if err == nil && p.CheckNetns {
		err = refuseOwnNetns(args.Netns)
	}
	return err
}

func (p *Plugin) del(args *skel.CmdArgs) error {
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
	b := retry.Backoff{Min: agentBackoffMin, Max: agentBackoffMax}
	_, err := b.Again(ctx, deadline, call(ctx), agentAway, call)
	return err
}

// agentAway: err says the agent is not there to answer now - nothing
// listens on its socket (stopped, restarting), the connection was dropped
// before any answer (it was stopping), or it answered that it is not ready
// or busy with this key (ipamapi's rule for what a caller may retry).
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
