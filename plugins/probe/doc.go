// Package probe is the ARP/NDP probe engine shared by spiderpool-agent's
// detector plugins: "is this address already used on the wire?" (IPv4 RFC 5227
// probe, IPv6 RFC 4862 duplicate address detection with an RFC 7527 nonce)
// and "does this gateway answer?" (ARP request, IPv6 Neighbor Solicitation).
//
// An Engine keeps one AF_PACKET socket per (network namespace, interface),
// with a classic BPF filter that lets through only ARP and ICMPv6 NS/NA, and
// shares it among every check on that interface: replies are demultiplexed by
// address, so a burst of checks costs one reply window, not one each. Sockets
// close after an idle timeout. A socket for a workload's namespace is opened
// on a locked OS thread that enters the namespace and leaves it again; the
// socket keeps working from any thread afterwards.
//
// Frames are built with mdlayher/arp and mdlayher/ndp and sent on the packet
// socket with their Ethernet (and IPv6) headers: an ARP probe must be sent
// from 0.0.0.0 and a DAD Neighbor Solicitation from ::, which no
// higher-level socket allows.
//
// Silence is a verdict only once proven: every probe left inside the
// window, the reader handled every frame that arrived before its end, and
// the kernel dropped none on the socket; otherwise the window is probed
// again, and then the check fails with ErrUnproven. Probes are paced per
// socket. See README.md, "PROVING SILENCE".
//
// The package is Linux-only and needs CAP_NET_RAW (and CAP_SYS_ADMIN to
// enter other namespaces). It imports nothing from the agent: third-party
// detector plugins may use it as is. See README.md for the semantics and the
// traps it handles.
package probe
