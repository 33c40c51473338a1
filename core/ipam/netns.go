package ipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	sdknetns "github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// LinkUpper brings a workload's interface up so that it can be probed. A
// CNI main plugin (macvlan, ipvlan) calls IPAM while the interface it made
// is still down, and a down interface cannot send an ARP probe.
type LinkUpper interface {
	// EnsureUp sets iface in the namespace at netnsPath (empty: our own)
	// up when it is down, and then waits (bounded by ctx and its own
	// limit: core/ipam/linkup's LinkWait) for carrier. It does not wait
	// for the IPv6 link-local address to pass DAD: an IPv6 gateway probe
	// goes from :: when there is no usable link-local yet. done ends the
	// caller's probe: if EnsureUp raised the interface and no other
	// caller still probes on it, after says whether it is put down again.
	EnsureUp(ctx context.Context, netnsPath, iface string) (done func(after AfterProbe), err error)
}

// AfterProbe is what becomes of an interface EnsureUp raised once the
// probe on it is done.
type AfterProbe uint8

const (
	// PutDown: down again, as it was found (an allocation through the
	// API, a check that did not pass).
	PutDown AfterProbe = iota
	// LeaveUpOutOfDAD: left up for a main plugin that raises it itself
	// next - putting it down would be undone at once, at the cost of an
	// RCU grace period under the node's RTNL lock (4-20 ms, serialised
	// across the node's interfaces) - unless an IPv6 address the raise
	// made is still in DAD: a main plugin may turn DAD off before raising
	// the interface and then wait for every tentative address (the bridge
	// plugin does; a link-local left mid-DAD cost each dual-stack
	// `podman run` 1.5 s).
	LeaveUpOutOfDAD
	// LeaveUp: left up whatever its addresses: the main plugin raises it
	// with DAD as it is, so its own addresses' DAD outlasts the
	// link-local's (AllocateRequest.MainPluginKeepsDAD).
	LeaveUp
)

// asItIs is the LinkUpper of an IPAM given none: the interface is probed
// in whatever state it is in.
type asItIs struct{}

func (asItIs) EnsureUp(context.Context, string, string) (func(AfterProbe), error) {
	return func(AfterProbe) {}, nil
}

// CheckNetns is the default Options.CheckNetns: the path must open, without
// blocking, as a network namespace file of nsfs (sdk/netns.Open). A request
// is refused with it before anything is reserved, so that a FIFO, a device
// or another kind of namespace named as a workload's namespace costs
// nothing; an empty path (the agent's own namespace) passes.
func CheckNetns(path string) error {
	if path == "" {
		return nil
	}
	fd, err := sdknetns.Open(path)
	if err != nil {
		return &api.FieldError{Field: "netns", Msg: err.Error()}
	}
	return unix.Close(fd)
}

// NetnsGone reports whether the namespace at path is gone: the path no
// longer exists, or it is no longer a namespace (a /var/run/netns file
// whose bind mount was removed, a /proc/PID/ns/net of a dead process).
// Any other error is returned: GC never frees on a doubt.
func NetnsGone(path string) (bool, error) {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type == unix.NSFS_MAGIC || st.Type == unix.PROC_SUPER_MAGIC {
		return false, nil
	}
	// A plain file left behind where a namespace was bind-mounted.
	if _, err := os.Stat(path); err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return true, nil
}
