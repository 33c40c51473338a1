package ipamapi

import (
	"net"

	"github.com/spiderpool-agent/spiderpool-agent/core/peercred"
)

// The client believes only a peer it can trust, by the rule of the agent's
// control client (core/peercred).

// UntrustedPeerError: the process on the socket is not one to believe.
type UntrustedPeerError = peercred.UntrustedPeerError

func trustPeer(c *net.UnixConn, path string) error { return peercred.Trust(c, path) }
