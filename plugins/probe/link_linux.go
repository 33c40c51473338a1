//go:build linux

// Link state (netlink) and multicast memberships of a socket's interface.

package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

// linkQuery is one netlink look-up shared by every caller that asked for it
// before it started: a burst of checks costs one or two queries, and no
// caller ever gets a state read before it asked.
type linkQuery struct {
	done chan struct{}
	err  error
}

// checkLink verifies that the interface is still there (same index, same
// name) and usable for ARP/ND probing, and refreshes its MAC.
func (s *ifSock) checkLink(ctx context.Context) error {
	s.linkMu.Lock()
	q := s.linkNext
	if q == nil {
		q = &linkQuery{done: make(chan struct{})}
		s.linkNext = q
	}
	if !s.linkBusy {
		s.linkBusy = true
		go s.runLinkQueries()
	}
	s.linkMu.Unlock()
	select {
	case <-q.done:
		return q.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *ifSock) runLinkQueries() {
	for {
		s.linkMu.Lock()
		q := s.linkNext
		s.linkNext = nil
		if q == nil {
			s.linkBusy = false
			s.linkMu.Unlock()
			return
		}
		s.linkMu.Unlock()
		q.err = s.queryLink()
		close(q.done)
	}
}

func (s *ifSock) queryLink() error {
	a, err := s.links.linkAttrs(s.ifindex)
	if err != nil {
		if errors.Is(err, errLinkNotFound) {
			s.broken.Store(true)
			return fmt.Errorf("%w: interface vanished", ErrInterface)
		}
		return fmt.Errorf("look up interface: %w", err)
	}
	if a.Name != s.ifname {
		s.broken.Store(true)
		return fmt.Errorf("%w: interface index %d is now %q", ErrInterface, s.ifindex, a.Name)
	}
	if err := usable(a); err != nil {
		return err
	}
	var m [6]byte
	copy(m[:], a.HardwareAddr)
	s.mac.Store(&m)
	return nil
}

// usable tells whether a link can carry our probes: present, up, with
// carrier, ARP enabled, and an Ethernet MAC address.
func usable(a *netlink.LinkAttrs) error {
	switch {
	case a.Flags&net.FlagUp == 0:
		return fmt.Errorf("%w: interface is down", ErrInterface)
	case a.RawFlags&unix.IFF_LOWER_UP == 0:
		return fmt.Errorf("%w: no carrier (operstate %s)", ErrInterface, a.OperState)
	}
	switch a.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent, netlink.OperDormant, netlink.OperTesting:
		return fmt.Errorf("%w: link not operational (operstate %s)", ErrInterface, a.OperState)
	}
	switch {
	case a.RawFlags&unix.IFF_NOARP != 0:
		return fmt.Errorf("%w: NOARP is set", ErrInterface)
	case len(a.HardwareAddr) != 6 || bytes.Equal(a.HardwareAddr, arpnd.ZeroMAC):
		return fmt.Errorf("%w: no Ethernet MAC address", ErrInterface)
	case a.HardwareAddr[0]&1 != 0:
		return fmt.Errorf("%w: MAC address %s is a group address", ErrInterface, a.HardwareAddr)
	case a.Flags&net.FlagLoopback != 0:
		return fmt.Errorf("%w: loopback interface", ErrInterface)
	}
	return nil
}

// linkLocal returns a usable (not tentative, optimistic or failed) IPv6
// link-local address of the interface.
func (s *ifSock) linkLocal() (netip.Addr, error) {
	addrs, err := s.nl.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: s.ifindex}}, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses: %w", err)
	}
	var unusable []string
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Is6() || !ip.IsLinkLocalUnicast() {
			continue
		}
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_OPTIMISTIC|unix.IFA_F_DADFAILED) != 0 {
			unusable = append(unusable, ip.String()+" (tentative or failed DAD)")
			continue
		}
		return ip, nil
	}
	if len(unusable) > 0 {
		return netip.Addr{}, fmt.Errorf("%w: %v", ErrNoLinkLocal, unusable)
	}
	return netip.Addr{}, ErrNoLinkLocal
}

// join adds a multicast group to the socket, refcounted; the first IPv6 join
// also adds all-nodes (33:33:00:00:00:01), where answers to DAD arrive, so
// that they are received even if the kernel's IPv6 is off on the interface.
func (s *ifSock) join(group net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all [6]byte
	copy(all[:], arpnd.AllNodesMAC)
	if s.groups[all] == 0 {
		if err := s.conn.JoinGroup(arpnd.AllNodesMAC); err != nil {
			return fmt.Errorf("join all-nodes group: %w", err)
		}
		s.groups[all] = 1 // kept until the socket closes
	}
	var g [6]byte
	copy(g[:], group)
	if s.groups[g] == 0 {
		if err := s.conn.JoinGroup(group); err != nil {
			return fmt.Errorf("join group %s: %w", group, err)
		}
	}
	s.groups[g]++
	return nil
}

func (s *ifSock) leave(group net.HardwareAddr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var g [6]byte
	copy(g[:], group)
	if bytes.Equal(group, arpnd.AllNodesMAC) {
		return
	}
	s.groups[g]--
	if s.groups[g] <= 0 {
		delete(s.groups, g)
		_ = s.conn.LeaveGroup(group)
	}
}
