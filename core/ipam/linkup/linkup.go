// Package linkup brings a workload's interface up for a probe and puts it
// down again afterwards: IPAM's LinkUpper, which the agent wires in. A CNI
// main plugin (macvlan, ipvlan) calls IPAM while the interface it made is
// still down, and a down interface cannot send an ARP probe.
package linkup

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	sdknetns "github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// LinkWait bounds the wait for carrier on an interface raised for a probe
// (a veth or macvlan has it at once; a physical port may take seconds to
// negotiate). When it passes, the probe runs anyway and the detector says
// what is missing.
const LinkWait = 3 * time.Second

// linkPoll is how often the raised interface's state is read: state the
// kernel reaches on its own, so there is nothing to wait on but time.
const linkPoll = 10 * time.Millisecond

// Netlink is the daemon's ipam.LinkUpper: netlink on a handle opened
// inside the namespace, from a locked OS thread. Its zero value is ready;
// it must not be copied once used.
//
// Several allocations may probe on one interface at once (the API takes
// several keys naming the same interface of one namespace): the first
// raises it, and only the last to finish puts it down again, so that no
// probe runs on an interface a sibling's restore has just put down.
type Netlink struct {
	mu sync.Mutex
	// users counts the callers probing on each interface this upper
	// raised and has not put down yet.
	users map[linkID]int
	// names orders raise and lower of one interface (by name in its
	// namespace), and only of one: the kernel's RTNL lock already orders
	// link changes across the node, and a lock of ours across all
	// interfaces would make each workload's probe wait for every other
	// workload's netlink calls as well (a storm of workload starts queued
	// on it for hundreds of ms).
	names map[nameID]*nameLock
}

// nameID is an interface by name in one namespace: what raise knows
// before it reads the link.
type nameID struct {
	dev, ino uint64
	name     string
}

// nameLock is the lock of one nameID, dropped when nobody holds or waits
// for it.
type nameLock struct {
	sync.Mutex
	refs int
}

// lockName takes the lock of one interface name; the returned func drops
// it.
func (u *Netlink) lockName(k nameID) (unlock func()) {
	u.mu.Lock()
	if u.names == nil {
		u.names = map[nameID]*nameLock{}
	}
	l := u.names[k]
	if l == nil {
		l = &nameLock{}
		u.names[k] = l
	}
	l.refs++
	u.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		u.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(u.names, k)
		}
		u.mu.Unlock()
	}
}

// linkID is one interface of one namespace, whatever path named the
// namespace (/var/run/netns/NAME, /proc/PID/ns/net).
type linkID struct {
	dev, ino uint64 // the namespace's nsfs inode; zero: our own
	index    int
}

// EnsureUp implements LinkUpper.
func (u *Netlink) EnsureUp(ctx context.Context, netnsPath, iface string) (func(ipam.AfterProbe), error) {
	h, ns, err := handleIn(netnsPath)
	if err != nil {
		return nil, err
	}
	link, id, raised, err := u.raise(h, iface, ns)
	if err != nil {
		h.Close()
		return nil, err
	}
	if !raised {
		h.Close()
		return func(ipam.AfterProbe) {}, nil
	}
	var once sync.Once
	restore := func(after ipam.AfterProbe) {
		once.Do(func() {
			defer h.Close()
			u.lower(h, link, nameID{dev: ns.dev, ino: ns.ino, name: iface}, id, netnsPath, after)
		})
	}
	wctx, cancel := context.WithTimeout(ctx, LinkWait)
	defer cancel()
	for !hasCarrier(h, iface) {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				restore(ipam.PutDown)
				return nil, ctx.Err()
			}
			return restore, nil
		case <-time.After(linkPoll):
		}
	}
	return restore, nil
}

// raise counts the caller as a user of iface and sets it up when nobody
// uses it and it is down; raised says whether the caller must call lower.
// An interface that is up and not raised here is someone else's to keep.
func (u *Netlink) raise(h *netlink.Handle, iface string, ns linkID) (link netlink.Link, id linkID, raised bool, err error) {
	defer u.lockName(nameID{dev: ns.dev, ino: ns.ino, name: iface})()
	// Read under the lock: a sibling's lower may have just put it down.
	link, err = h.LinkByName(iface)
	if err != nil {
		return nil, id, false, fmt.Errorf("interface %s: %w", iface, err)
	}
	id = linkID{dev: ns.dev, ino: ns.ino, index: link.Attrs().Index}
	u.mu.Lock()
	n := u.users[id]
	if n > 0 {
		u.users[id] = n + 1
	}
	u.mu.Unlock()
	if n > 0 {
		return link, id, true, nil
	}
	if link.Attrs().Flags&unix.IFF_UP != 0 {
		return link, id, false, nil
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, id, false, fmt.Errorf("bring %s up for the probe: %w", iface, err)
	}
	u.mu.Lock()
	if u.users == nil {
		u.users = map[linkID]int{}
	}
	u.users[id] = 1
	u.mu.Unlock()
	return link, id, true, nil
}

// lower ends one user's probe on link; the last user puts it down again
// or leaves it up, as after says (see ipam.AfterProbe).
func (u *Netlink) lower(h *netlink.Handle, link netlink.Link, name nameID, id linkID, netnsPath string, after ipam.AfterProbe) {
	defer u.lockName(name)()
	u.mu.Lock()
	n := u.users[id]
	if n > 1 {
		u.users[id] = n - 1
	} else {
		delete(u.users, id)
	}
	u.mu.Unlock()
	if n > 1 {
		return
	}
	if after == ipam.PutDown || after == ipam.LeaveUpOutOfDAD && inDAD(h, link, netnsPath) {
		_ = h.LinkSetDown(link)
	}
}

// inDAD: an IPv6 address on link is tentative and the kernel runs DAD on
// the link, or its addresses cannot be read (then the link is put down, as
// it was found).
func inDAD(h *netlink.Handle, link netlink.Link, netnsPath string) bool {
	addrs, err := h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			return runsDAD(link, netnsPath)
		}
	}
	return false
}

// runsDAD: the kernel runs DAD for link's new addresses. Without it (a
// NOARP link, or accept_dad below 1 both for all and for the link) an
// address is still added tentative, and the kernel clears the flag in its
// next address-configuration work item without probing: a moment, nothing
// a main plugin waits for. A setting that cannot be read counts as DAD.
func runsDAD(link netlink.Link, netnsPath string) bool {
	if link.Attrs().RawFlags&unix.IFF_NOARP != 0 {
		return false
	}
	runs := true
	_ = sdknetns.Do(netnsPath, func() error {
		all, errAll := readSysctlInt("net/ipv6/conf/all/accept_dad")
		own, errOwn := readSysctlInt("net/ipv6/conf/" + link.Attrs().Name + "/accept_dad")
		if errAll == nil && errOwn == nil {
			runs = all >= 1 || own >= 1
		}
		return nil
	})
	return runs
}

// readSysctlInt reads one integer setting under /proc/sys of the calling
// thread's network namespace; a setting is a few bytes, so 32 bound it.
func readSysctlInt(key string) (int, error) {
	f, err := os.Open("/proc/sys/" + key)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, 32)
	n, err := f.Read(b)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b[:n])))
}

// hasCarrier: the raised interface reports carrier (IFF_LOWER_UP).
func hasCarrier(h *netlink.Handle, iface string) bool {
	link, err := h.LinkByName(iface)
	return err == nil && link.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// handleIn opens a netlink handle bound to the namespace at path, and
// says which namespace that is (its nsfs inode, read from the opened file,
// so that two paths to one namespace are one). The path is opened as every
// request's namespace path is (CheckNetns): a FIFO or anything else that is
// not a network namespace is refused at once. The socket keeps working in
// that namespace after the thread has left it.
func handleIn(path string) (*netlink.Handle, linkID, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		return h, linkID{}, err
	}
	fd, err := sdknetns.Open(path)
	if err != nil {
		return nil, linkID{}, fmt.Errorf("network namespace: %w", err)
	}
	ns := netns.NsHandle(fd)
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, linkID{}, fmt.Errorf("network namespace %s: %w", path, err)
	}
	// NewHandleAt switches this locked thread into ns and back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, linkID{}, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, linkID{dev: st.Dev, ino: st.Ino}, nil
}
