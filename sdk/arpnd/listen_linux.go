//go:build linux

package arpnd

import (
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Listen opens a packet socket on ifi, in the calling thread's network
// namespace, that receives only what Filter passes (ARP and ND, none of
// this host's own transmissions), with a receive buffer of rcvbuf bytes.
// The socket stays bound to that namespace and works from any thread.
func Listen(ifi *net.Interface, rcvbuf int) (*packet.Conn, error) {
	prog, err := Filter()
	if err != nil {
		return nil, fmt.Errorf("assemble BPF filter: %w", err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", ifi.Name, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("packet socket on %s: %w", ifi.Name, err)
	}
	_ = raw.Control(func(fd uintptr) {
		// Keep our own transmissions out of the queue altogether (Linux
		// 4.20+; the BPF filter drops them as well).
		_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		// FORCE passes net.core.rmem_max (CAP_NET_ADMIN); without it the
		// kernel caps the size, and drops are still counted.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	})
	return conn, nil
}
