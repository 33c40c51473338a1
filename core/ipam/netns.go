package ipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
	sdknetns "github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// LinkUpper brings a workload's interface up so that it can be probed. A
// CNI main plugin (macvlan, ipvlan) calls IPAM while the interface it made
// is still down, and a down interface cannot send an ARP probe.
type LinkUpper interface {
	// EnsureUp sets iface in the namespace at netnsPath (empty: our own)
	// up when it is down, and then waits (bounded by ctx and LinkWait)
	// for carrier. It does not wait for the IPv6 link-local address to
	// pass DAD: an IPv6 gateway probe goes from :: when there is no
	// usable link-local yet. restore puts the interface down again if
	// EnsureUp raised it.
	EnsureUp(ctx context.Context, netnsPath, iface string) (restore func(), err error)
}

// LinkWait bounds the wait for carrier on an interface raised for a probe
// (a veth or macvlan has it at once; a physical port may take seconds to
// negotiate). When it passes, the probe runs anyway and the detector says
// what is missing.
const LinkWait = 3 * time.Second

// linkPoll is how often the raised interface's state is read: state the
// kernel reaches on its own, so there is nothing to wait on but time.
const linkPoll = 10 * time.Millisecond

// NetlinkUpper is the LinkUpper of the daemon: netlink on a handle opened
// inside the namespace, from a locked OS thread.
type NetlinkUpper struct{}

// EnsureUp implements LinkUpper.
func (NetlinkUpper) EnsureUp(ctx context.Context, netnsPath, iface string) (func(), error) {
	h, err := handleIn(netnsPath)
	if err != nil {
		return nil, err
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	if link.Attrs().Flags&unix.IFF_UP != 0 {
		h.Close()
		return func() {}, nil
	}
	if err := h.LinkSetUp(link); err != nil {
		h.Close()
		return nil, fmt.Errorf("bring %s up for the probe: %w", iface, err)
	}
	restore := func() {
		defer h.Close()
		_ = h.LinkSetDown(link)
	}
	wctx, cancel := context.WithTimeout(ctx, LinkWait)
	defer cancel()
	for !hasCarrier(h, iface) {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				restore()
				return nil, ctx.Err()
			}
			return restore, nil
		case <-time.After(linkPoll):
		}
	}
	return restore, nil
}

// hasCarrier: the raised interface reports carrier (IFF_LOWER_UP).
func hasCarrier(h *netlink.Handle, iface string) bool {
	link, err := h.LinkByName(iface)
	return err == nil && link.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// handleIn opens a netlink handle bound to the namespace at path. The
// path is opened as every request's namespace path is (CheckNetns): a FIFO
// or anything else that is not a network namespace is refused at once. The
// socket keeps working in that namespace after the thread has left it.
func handleIn(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle()
	}
	fd, err := sdknetns.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	ns := netns.NsHandle(fd)
	defer ns.Close()
	// NewHandleAt switches this locked thread into ns and back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, nil
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
		return &ipamapi.FieldError{Field: "netns", Msg: err.Error()}
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
