//go:build linux

package probe

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nlMsg builds one netlink message of type typ and sequence seq.
func nlMsg(typ uint16, seq uint32, body []byte) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.NLMSG_HDRLEN, nlmAlign(unix.NLMSG_HDRLEN+len(body)))
	ne.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[8:], seq)
	b = append(b, body...)
	return b[:cap(b)]
}

// rtAttr builds one attribute, padded.
func rtAttr(typ uint16, v []byte) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.SizeofRtAttr, nlmAlign(unix.SizeofRtAttr+len(v)))
	ne.PutUint16(b[0:], uint16(unix.SizeofRtAttr+len(v)))
	ne.PutUint16(b[2:], typ)
	b = append(b, v...)
	return b[:cap(b)]
}

func linkBody(index int32, flags uint32, attrs ...[]byte) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

func TestParseLinkAnswer(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x07}
	body := linkBody(7, unix.IFF_UP|unix.IFF_LOWER_UP|unix.IFF_BROADCAST,
		rtAttr(unix.IFLA_MTU, []byte{0xdc, 0x05, 0, 0}),
		rtAttr(unix.IFLA_IFNAME, []byte("eth0\x00")),
		rtAttr(unix.IFLA_ADDRESS, mac),
		rtAttr(unix.IFLA_OPERSTATE, []byte{uint8(netlink.OperUp)}),
		rtAttr(unix.IFLA_AF_SPEC|unix.NLA_F_NESTED, []byte{0, 0, 0, 0}))
	stale := nlMsg(unix.RTM_NEWLINK, 4, linkBody(7, 0, rtAttr(unix.IFLA_IFNAME, []byte("old\x00"))))

	a, done, err := parseLinkAnswer(append(stale, nlMsg(unix.RTM_NEWLINK, 5, body)...), 5)
	if err != nil || !done {
		t.Fatalf("parse: done %v, err %v", done, err)
	}
	if a.Name != "eth0" || a.Index != 7 || a.HardwareAddr.String() != mac.String() || a.OperState != netlink.OperUp ||
		a.Flags&net.FlagUp == 0 || a.RawFlags&unix.IFF_LOWER_UP == 0 || a.Flags&net.FlagLoopback != 0 {
		t.Errorf("parsed %+v", a)
	}
	if err := usable(a); err != nil {
		t.Errorf("usable: %v", err)
	}

	if _, done, _ := parseLinkAnswer(stale, 5); done {
		t.Error("an answer to an earlier query was taken for this one's")
	}

	errMsg := func(errno unix.Errno) []byte {
		b := make([]byte, 4+unix.NLMSG_HDRLEN) // the error, then the request's header
		binary.NativeEndian.PutUint32(b, uint32(-int32(errno)))
		return b
	}
	enodev := errMsg(unix.ENODEV)
	if _, done, err := parseLinkAnswer(nlMsg(unix.NLMSG_ERROR, 5, enodev), 5); !done || !errors.Is(err, errLinkNotFound) {
		t.Errorf("ENODEV: done %v, err %v, want errLinkNotFound", done, err)
	}
	eperm := errMsg(unix.EPERM)
	if _, done, err := parseLinkAnswer(nlMsg(unix.NLMSG_ERROR, 5, eperm), 5); !done || !errors.Is(err, unix.EPERM) {
		t.Errorf("EPERM: done %v, err %v", done, err)
	}

	for name, b := range map[string][]byte{
		"message longer than the datagram":  nlMsg(unix.RTM_NEWLINK, 5, body)[:40],
		"attribute longer than the message": nlMsg(unix.RTM_NEWLINK, 5, append(linkBody(7, 0), 0xff, 0, 3, 0)),
		"short ifinfomsg":                   nlMsg(unix.RTM_NEWLINK, 5, []byte{0, 0, 0, 0}),
		"short error":                       nlMsg(unix.NLMSG_ERROR, 5, []byte{1}),
	} {
		if _, done, err := parseLinkAnswer(b, 5); !done || err == nil {
			t.Errorf("%s: done %v, err %v, want an error", name, done, err)
		}
	}
}

// Against the kernel, in the test's own namespace (reading it changes
// nothing): loopback's attributes through a buffer too small for them,
// which grows; an index no interface has; a closed socket.
func TestLinkConnKernel(t *testing.T) {
	c, err := openLinkConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.close() })
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	c.buf = make([]byte, 16)
	a, err := c.linkAttrs(lo.Index)
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	if a.Name != "lo" || a.Index != lo.Index || a.Flags&net.FlagLoopback == 0 || len(c.buf) <= 16 {
		t.Errorf("loopback parsed as %+v (buffer %d bytes)", a, len(c.buf))
	}
	if err := usable(a); err == nil || !errors.Is(err, ErrInterface) {
		t.Errorf("loopback usable: %v", err)
	}
	if _, err := c.linkAttrs(1 << 30); !errors.Is(err, errLinkNotFound) {
		t.Errorf("missing index: %v, want errLinkNotFound", err)
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.linkAttrs(lo.Index); err == nil {
		t.Error("a closed socket answered a link query")
	}
}
