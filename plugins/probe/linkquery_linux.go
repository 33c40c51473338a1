//go:build linux

// The link query of every check: one RTM_GETLINK for the socket's interface
// index on a netlink socket of its namespace, without statistics, decoded
// for the few attributes a check looks at.

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkQueryTimeout bounds one link query (send and answer).
const linkQueryTimeout = 5 * time.Second

// rtextFilterSkipStats asks RTM_GETLINK to leave out the interface's
// statistics (RTEXT_FILTER_SKIP_STATS, Linux 4.20; older kernels ignore the
// bit and send them, which costs only their size).
const rtextFilterSkipStats = 1 << 3

// errLinkNotFound: the kernel has no interface with the index (ENODEV).
var errLinkNotFound = errors.New("no interface with this index")

// linkConn is a NETLINK_ROUTE socket bound to one namespace. A burst of
// checks makes about one link query per check (queries coalesce only while
// one is running), and vishvananda/netlink's LinkByIndex asks for and
// decodes every attribute (statistics, type-specific data): a sixth of a
// detector's CPU. This asks for one link and reads four attributes.
//
// Queries on one linkConn must not run concurrently: the socket's link
// queries run one at a time (runLinkQueries). The socket is non-blocking
// under the runtime's poller, so a query is bounded by a deadline and close
// is safe while one runs.
type linkConn struct {
	f   *os.File
	raw syscall.RawConn
	seq uint32
	buf []byte
}

// openLinkConn opens the socket in the calling thread's namespace.
func openLinkConn() (*linkConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// One link's message without statistics is 1-3 kB; a larger one grows
	// the buffer (linkAttrs). A socket per workload namespace is open while
	// checks use it, so the buffer stays small.
	return &linkConn{f: f, raw: raw, buf: make([]byte, 8<<10)}, nil
}

func (c *linkConn) close() error { return c.f.Close() }

// maxLinkAnswer bounds the answer to one link query.
const maxLinkAnswer = 1 << 20

// linkAttrs returns the attributes of the interface with the given index
// that usable and the identity check look at: name, flags, operstate and
// hardware address.
func (c *linkConn) linkAttrs(index int) (*netlink.LinkAttrs, error) {
	a, need, err := c.query(index)
	if need > 0 {
		// A link with more attributes than the buffer holds: the kernel
		// said how large its answer is; grow to that and ask again.
		c.buf = make([]byte, need)
		a, _, err = c.query(index)
	}
	return a, err
}

// query sends one RTM_GETLINK and reads its answer. need is the answer's
// size when it did not fit the buffer (and is at most maxLinkAnswer).
func (c *linkConn) query(index int) (a *netlink.LinkAttrs, need int, err error) {
	c.seq++
	seq := c.seq
	var req [unix.NLMSG_HDRLEN + unix.SizeofIfInfomsg + 8]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETLINK)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	ifi := req[unix.NLMSG_HDRLEN:]
	ifi[0] = unix.AF_UNSPEC
	ne.PutUint32(ifi[4:], uint32(int32(index)))
	attr := ifi[unix.SizeofIfInfomsg:]
	ne.PutUint16(attr[0:], 8)
	ne.PutUint16(attr[2:], unix.IFLA_EXT_MASK)
	ne.PutUint32(attr[4:], rtextFilterSkipStats)

	if err := c.f.SetDeadline(time.Now().Add(linkQueryTimeout)); err != nil {
		return nil, 0, fmt.Errorf("netlink deadline: %w", err)
	}
	var serr error
	if err := c.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return nil, 0, fmt.Errorf("send link query: %w", err)
	}
	if serr != nil {
		return nil, 0, fmt.Errorf("send link query: %w", serr)
	}
	for {
		var (
			n    int
			rerr error
		)
		if err := c.raw.Read(func(fd uintptr) bool {
			// MSG_TRUNC: n is the message's real size, so a message
			// larger than the buffer is seen, not cut.
			n, _, rerr = unix.Recvfrom(int(fd), c.buf, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		}); err != nil {
			return nil, 0, fmt.Errorf("read link query answer: %w", err)
		}
		switch {
		case rerr == unix.EINTR:
			continue
		case rerr != nil:
			return nil, 0, fmt.Errorf("read link query answer: %w", rerr)
		case n > maxLinkAnswer:
			return nil, 0, fmt.Errorf("link query answer of %d bytes is larger than %d", n, maxLinkAnswer)
		case n > len(c.buf):
			return nil, n, fmt.Errorf("link query answer of %d bytes is larger than the buffer of %d", n, len(c.buf))
		}
		a, done, err := parseLinkAnswer(c.buf[:n], seq)
		if done {
			return a, 0, err
		}
		// An answer to an earlier query that timed out: read on.
	}
}

// parseLinkAnswer reads the messages of one netlink datagram and returns
// the answer to query seq: the link's attributes or the kernel's error.
// done is false when the datagram holds no answer to seq.
func parseLinkAnswer(b []byte, seq uint32) (a *netlink.LinkAttrs, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(ne.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, true, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		data := b[unix.NLMSG_HDRLEN:l]
		if next := nlmAlign(l); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(data) < 4 {
				return nil, true, errors.New("malformed netlink error message")
			}
			errno := -int32(ne.Uint32(data))
			if errno == int32(unix.ENODEV) {
				return nil, true, errLinkNotFound
			}
			return nil, true, fmt.Errorf("link query: %w", syscall.Errno(errno))
		case unix.RTM_NEWLINK:
			a, err := parseLink(data)
			return a, true, err
		}
	}
	return nil, false, nil
}

// parseLink decodes an RTM_NEWLINK body: the ifinfomsg and the attributes
// IFLA_IFNAME, IFLA_ADDRESS and IFLA_OPERSTATE.
func parseLink(b []byte) (*netlink.LinkAttrs, error) {
	if len(b) < unix.SizeofIfInfomsg {
		return nil, errors.New("malformed link message")
	}
	ne := binary.NativeEndian
	raw := ne.Uint32(b[8:])
	a := &netlink.LinkAttrs{Index: int(int32(ne.Uint32(b[4:]))), RawFlags: raw}
	if raw&unix.IFF_UP != 0 {
		a.Flags |= net.FlagUp
	}
	if raw&unix.IFF_LOOPBACK != 0 {
		a.Flags |= net.FlagLoopback
	}
	b = b[unix.SizeofIfInfomsg:]
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b[0:]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return nil, fmt.Errorf("malformed link attribute (length %d of %d)", l, len(b))
		}
		v := b[unix.SizeofRtAttr:l]
		switch ne.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case unix.IFLA_IFNAME:
			for i, ch := range v {
				if ch == 0 {
					v = v[:i]
					break
				}
			}
			a.Name = string(v)
		case unix.IFLA_ADDRESS:
			a.HardwareAddr = append(net.HardwareAddr(nil), v...)
		case unix.IFLA_OPERSTATE:
			if len(v) > 0 {
				a.OperState = netlink.LinkOperState(v[0])
			}
		}
		if next := nlmAlign(l); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
	}
	return a, nil
}

// nlmAlign rounds a netlink length up to the 4-byte alignment of messages
// and attributes.
func nlmAlign(n int) int { return (n + 3) &^ 3 }
