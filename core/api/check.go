package api

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// Validate checks the request strictly and returns its parsed form, or a
// *FieldError naming the first field at fault:
//
//   - interface: an interface name (ValidateInterface);
//   - netns: empty or an absolute path;
//   - addresses: 1 to MaxAddresses, each a CIDR (a bare IP is an error,
//     and so is a zone), not unspecified, loopback or multicast, not
//     IPv4-mapped, not a /0, not its subnet's network (IPv6: subnet-router
//     anycast) or IPv4 broadcast address, not given twice;
//   - gateway: empty, or an IP of its address's family that is not the
//     address itself.
func (r CheckRequest) Validate() (Check, error) {
	if err := ValidateInterface("interface", r.Interface); err != nil {
		return Check{}, err
	}
	if r.Netns != "" && (!filepath.IsAbs(r.Netns) || strings.ContainsRune(r.Netns, 0)) {
		return Check{}, fieldErr("netns", "%s must be an absolute path such as /var/run/netns/NAME or /proc/PID/ns/net", input.Quote(r.Netns))
	}
	switch n := len(r.Addresses); {
	case n == 0:
		return Check{}, fieldErr("addresses", "at least one address is required")
	case n > MaxAddresses:
		return Check{}, fieldErr("addresses", "%d addresses: at most %d per check", n, MaxAddresses)
	}
	out := Check{Interface: r.Interface, Netns: r.Netns, Addresses: make([]CheckAddress, 0, len(r.Addresses))}
	seen := make(map[netip.Addr]int, len(r.Addresses))
	for i, a := range r.Addresses {
		v, err := a.validate(fmt.Sprintf("addresses[%d]", i))
		if err != nil {
			return Check{}, err
		}
		if j, dup := seen[v.Address.Addr()]; dup {
			return Check{}, fieldErr(fmt.Sprintf("addresses[%d].address", i), "%s is already addresses[%d]", v.Address.Addr(), j)
		}
		seen[v.Address.Addr()] = i
		out.Addresses = append(out.Addresses, v)
	}
	return out, nil
}

func (a AddressRequest) validate(prefix string) (CheckAddress, error) {
	field := prefix + ".address"
	if a.Address == "" {
		return CheckAddress{}, fieldErr(field, "an address is required, as a CIDR such as 10.0.0.7/24")
	}
	if i := strings.IndexByte(a.Address, '%'); i >= 0 {
		// netip.ParseAddr would take "eth0/64" in fe80::1%eth0/64 for the
		// zone, and the hint below would then suggest ".../64/64".
		bare := a.Address[:i]
		if j := strings.IndexByte(a.Address[i:], '/'); j >= 0 {
			bare += a.Address[i+j:]
		}
		return CheckAddress{}, fieldErr(field, "%q carries a zone (%%...): the interface is the request's interface field; give the address without it, e.g. %s", input.Quote(a.Address), input.Quote(bare))
	}
	p, err := netip.ParsePrefix(a.Address)
	if err != nil {
		if ip, ipErr := netip.ParseAddr(a.Address); ipErr == nil {
			example := "/24"
			if ip.Is6() {
				example = "/64"
			}
			return CheckAddress{}, fieldErr(field, "%s has no prefix length: give a CIDR such as %s%s", input.Quote(a.Address), a.Address, example)
		}
		return CheckAddress{}, fieldErr(field, "%s is not a CIDR: %s", input.Quote(a.Address), input.CutError(err, a.Address))
	}
	if why := unusable(p.Addr()); why != "" {
		return CheckAddress{}, fieldErr(field, "%s cannot be a workload's address: %s", p.Addr(), why)
	}
	if why := notAHost(p); why != "" {
		return CheckAddress{}, fieldErr(field, "%s cannot be a workload's address: %s", p, why)
	}
	v := CheckAddress{Address: p}
	if a.Gateway == "" {
		return v, nil
	}

	field = prefix + ".gateway"
	gw, err := netip.ParseAddr(a.Gateway)
	switch {
	case err != nil && strings.Contains(a.Gateway, "/"):
		return CheckAddress{}, fieldErr(field, "%s must be an IP address, not a CIDR", input.Quote(a.Gateway))
	case err != nil:
		return CheckAddress{}, fieldErr(field, "%s is not an IP address: %s", input.Quote(a.Gateway), input.CutError(err, a.Gateway))
	case gw.Zone() != "":
		return CheckAddress{}, fieldErr(field, "%s must not carry a zone: the gateway is on the checked interface", input.Quote(a.Gateway))
	}
	if why := unusable(gw); why != "" {
		return CheckAddress{}, fieldErr(field, "%s cannot be a gateway: %s", gw, why)
	}
	if gw.Is4() != p.Addr().Is4() {
		return CheckAddress{}, fieldErr(field, "gateway %s is %s but address %s is %s", gw, family(gw), p.Addr(), family(p.Addr()))
	}
	if gw == p.Addr() {
		return CheckAddress{}, fieldErr(field, "gateway %s is the address itself", gw)
	}
	v.Gateway = gw
	return v, nil
}

// unusable says why ip cannot be a workload's address or gateway.
func unusable(ip netip.Addr) string {
	switch {
	case ip.Is4In6():
		return "it is an IPv4-mapped IPv6 address: give the IPv4 address"
	case ip.IsUnspecified():
		return "it is the unspecified address"
	case ip.IsLoopback():
		return "it is a loopback address"
	case ip.IsMulticast():
		return "it is a multicast address"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "it is the broadcast address"
	}
	return ""
}

// notAHost says why p's address is not a host of its subnet: a /0 prefix,
// the network address of an IPv4 subnet (or IPv6's subnet-router anycast
// address, RFC 4291 2.6.1), or the broadcast address of an IPv4 subnet.
// Point-to-point prefixes have neither (/31 RFC 3021, /32; /127 RFC 6164,
// /128).
func notAHost(p netip.Prefix) string {
	bits, max := p.Bits(), p.Addr().BitLen()
	if bits == 0 {
		return "a /0 prefix is the whole address space, not a subnet"
	}
	if bits >= max-1 {
		return ""
	}
	ip := p.Addr()
	if ip == p.Masked().Addr() {
		if ip.Is4() {
			return fmt.Sprintf("it is the network address of %s", p.Masked())
		}
		return fmt.Sprintf("it is the subnet-router anycast address of %s", p.Masked())
	}
	if ip.Is4() && ip == lastAddr(p) {
		return fmt.Sprintf("it is the broadcast address of %s", p.Masked())
	}
	return ""
}

// lastAddr is the highest address of p's subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
