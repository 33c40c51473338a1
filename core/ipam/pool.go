package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Store names a pool can use.
const (
	// StoreLocal is the embedded bbolt file of this node (the default).
	StoreLocal = "local"
	// StoreEtcd is the etcd of the agent's etcd { } block, shared by nodes.
	StoreEtcd = "etcd"
)

// DefaultQuarantine is how long an address that answered on the wire is
// kept out of allocation.
const DefaultQuarantine = 10 * time.Minute

// QuarantineShare is the most of a pool (size / QuarantineShare addresses)
// that may be quarantined at once: beyond it a conflicting address is only
// skipped for the allocation that met it, so conflicts can never exhaust a
// pool (Kea's decline storm once burned 91 addresses in 5 hours).
const QuarantineShare = 10

// PoolSpec is a pool as written in the configuration, before it is checked.
type PoolSpec struct {
	Name    string
	Subnet  string
	Ranges  []string // "a-b" (inclusive) or a CIDR inside Subnet
	Exclude []string // addresses, "a-b" or CIDRs
	Gateway string
	Routes  []RouteSpec
	PoolOptions
}

// PoolOptions are the settings of a pool that NewPool checks and takes
// over as written, filling in the defaults of Quarantine, Store and
// Domain. PoolSpec and Pool embed them, so a checked pool carries them
// under the same names.
type PoolOptions struct {
	VLAN int // informational
	// ConflictDetection and GatewayDetection say which detectors vet an
	// address of this pool before it is returned.
	ConflictDetection bool
	GatewayDetection  bool
	// Quarantine is how long an address of this pool that answered on the
	// wire is kept out of allocation; zero is DefaultQuarantine.
	Quarantine time.Duration
	// Store is where the pool's addresses are recorded, StoreLocal or
	// StoreEtcd; empty is StoreLocal.
	Store string
	// Domain is the layer-2 domain (VLAN, segment) the pool's addresses
	// live in; empty is DefaultDomain. Address records are keyed by
	// address within it, so no two pools of one domain can hand out one
	// address, while pools in different domains may reuse the same
	// private addresses.
	Domain string
	// Defend answers a claim of an allocated address by another station
	// with one announcement from the workload, at most one per 10 s per
	// address (RFC 5227 2.4(b)); off, the claim is only reported.
	Defend bool
}

// DefaultDomain is the layer-2 domain of a pool that names none.
const DefaultDomain = "default"

// MaxDomain bounds a domain name (it is a key segment).
const MaxDomain = 63

// RouteSpec is a route as written.
type RouteSpec struct {
	Dst string
	GW  string
}

// Pool is a checked pool: its addresses are the ranges minus the excludes,
// the gateway and (IPv4) the network and broadcast addresses.
type Pool struct {
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr // zero when none
	Routes  []Route
	// PoolOptions are the spec's, with the defaults filled in: Quarantine,
	// Store and Domain are never zero.
	PoolOptions
	// Spec is what the pool was built from: its ranges, excludes and
	// gateway as written, which the fleet-wide definition hash compares.
	Spec PoolSpec

	spans []span // sorted, disjoint
	size  uint64
}

// span is an inclusive run of addresses [lo, hi] with off = the index of lo
// among the pool's addresses.
type span struct {
	lo, hi u128
	off    uint64
}

// FieldError is a pool definition problem naming the attribute.
type FieldError struct {
	Pool  string
	Field string // "ranges[1]", "gateway"
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("pool %q: %s: %s", e.Pool, e.Field, e.Msg)
}

// ErrPoolTooLarge is wrapped by NewPool when a pool holds more addresses
// than max_allocated_ips allows.
var ErrPoolTooLarge = errors.New("pool too large")

// Family is "ipv4" or "ipv6".
func (p *Pool) Family() string { return family(p.Subnet.Addr()) }

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// Size is how many addresses the pool can hand out.
func (p *Pool) Size() int { return int(p.size) }

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	_, ok := p.index(a)
	return ok
}

// At returns the i-th address of the pool, 0 <= i < Size.
func (p *Pool) At(i int) netip.Addr {
	n := uint64(i)
	k := sort.Search(len(p.spans), func(j int) bool { return p.spans[j].off > n }) - 1
	s := p.spans[k]
	return s.lo.add(n - s.off).addr(p.Subnet.Addr().Is4())
}

func (p *Pool) index(a netip.Addr) (int, bool) {
	if !a.IsValid() || a.Is4() != p.Subnet.Addr().Is4() || a.Zone() != "" {
		return 0, false
	}
	v := fromAddr(a)
	k := sort.Search(len(p.spans), func(j int) bool { return !p.spans[j].hi.less(v) })
	if k == len(p.spans) || v.less(p.spans[k].lo) {
		return 0, false
	}
	return int(p.spans[k].off + v.sub(p.spans[k].lo)), true
}

// Ranges renders the pool's address runs, for display.
func (p *Pool) Ranges() []string {
	out := make([]string, len(p.spans))
	is4 := p.Subnet.Addr().Is4()
	for i, s := range p.spans {
		lo, hi := s.lo.addr(is4), s.hi.addr(is4)
		if lo == hi {
			out[i] = lo.String()
		} else {
			out[i] = lo.String() + "-" + hi.String()
		}
	}
	return out
}

// NewPool checks spec and builds the pool. maxSize is max_allocated_ips: a
// pool with more addresses is refused with its size and the limit. IPv6
// pools are sized by their ranges: a /64 without ranges is refused, never
// counted as 2^64.
func NewPool(spec PoolSpec, maxSize int) (*Pool, error) {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Pool: spec.Name, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if spec.Name == "" {
		return nil, errors.New("pool: no name")
	}
	subnet, err := netip.ParsePrefix(strings.TrimSpace(spec.Subnet))
	if err != nil {
		return nil, bad("subnet", "%q is not a CIDR such as 10.20.0.0/24 or fd00::/64", spec.Subnet)
	}
	if subnet.Addr().Zone() != "" {
		return nil, bad("subnet", "%q: a zone is not allowed", spec.Subnet)
	}
	if subnet.Addr().Is4In6() {
		return nil, bad("subnet", "%q: write an IPv4 subnet in IPv4 form", spec.Subnet)
	}
	if subnet != subnet.Masked() {
		return nil, bad("subnet", "%q has host bits set; the subnet is %s", spec.Subnet, subnet.Masked())
	}
	p := &Pool{Name: spec.Name, Subnet: subnet, PoolOptions: spec.PoolOptions, Spec: spec}
	if p.Domain == "" {
		p.Domain = DefaultDomain
	}
	if err := validDomain(p.Domain); err != nil {
		return nil, bad("domain", "%v", err)
	}
	if p.Quarantine == 0 {
		p.Quarantine = DefaultQuarantine
	}
	if p.Quarantine < 0 {
		return nil, bad("quarantine", "%v is negative", p.Quarantine)
	}
	if p.Store == "" {
		p.Store = StoreLocal
	}
	if p.Store != StoreLocal && p.Store != StoreEtcd {
		return nil, bad("store", "%q is not a store of this agent (known: %q, %q)", spec.Store, StoreLocal, StoreEtcd)
	}
	if spec.VLAN < 0 || spec.VLAN > 4094 {
		return nil, bad("vlan", "%d is not a VLAN id (0-4094)", spec.VLAN)
	}
	if g := strings.TrimSpace(spec.Gateway); g != "" {
		gw, err := netip.ParseAddr(g)
		if err != nil || gw.Zone() != "" {
			return nil, bad("gateway", "%q is not an IP address", spec.Gateway)
		}
		if !subnet.Contains(gw) {
			return nil, bad("gateway", "%s is outside the subnet %s", gw, subnet)
		}
		p.Gateway = gw
	}
	if spec.GatewayDetection && !p.Gateway.IsValid() {
		return nil, bad("gateway_detection", "needs a gateway")
	}
	for i, r := range spec.Routes {
		dst, err := netip.ParsePrefix(strings.TrimSpace(r.Dst))
		if err != nil || dst.Addr().Is4() != subnet.Addr().Is4() {
			return nil, bad(fmt.Sprintf("routes[%d].dst", i), "%q is not a %s CIDR", r.Dst, family(subnet.Addr()))
		}
		rt := Route{Dst: dst.Masked()}
		if g := strings.TrimSpace(r.GW); g != "" {
			gw, err := netip.ParseAddr(g)
			if err != nil || gw.Is4() != subnet.Addr().Is4() {
				return nil, bad(fmt.Sprintf("routes[%d].gw", i), "%q is not an %s address", r.GW, family(subnet.Addr()))
			}
			rt.GW = gw
		} else if !p.Gateway.IsValid() {
			return nil, bad(fmt.Sprintf("routes[%d].gw", i), "no gw and the pool has no gateway")
		}
		p.Routes = append(p.Routes, rt)
	}

	var include []span
	if len(spec.Ranges) == 0 {
		include = []span{prefixSpan(subnet)}
	}
	for i, r := range spec.Ranges {
		s, err := parseRange(r, subnet)
		if err != nil {
			return nil, bad(fmt.Sprintf("ranges[%d]", i), "%v", err)
		}
		include = append(include, s)
	}
	var exclude []span
	for i, r := range spec.Exclude {
		s, err := parseRange(r, subnet)
		if err != nil {
			return nil, bad(fmt.Sprintf("exclude[%d]", i), "%v", err)
		}
		exclude = append(exclude, s)
	}
	if p.Gateway.IsValid() {
		g := fromAddr(p.Gateway)
		exclude = append(exclude, span{lo: g, hi: g})
	}
	if subnet.Addr().Is4() && subnet.Bits() < 31 {
		// The network and broadcast addresses are never a host's.
		all := prefixSpan(subnet)
		exclude = append(exclude, span{lo: all.lo, hi: all.lo}, span{lo: all.hi, hi: all.hi})
	}
	spans := subtract(merge(include), merge(exclude))
	size := new(big.Int)
	for _, s := range spans {
		size.Add(size, s.hi.sub128(s.lo).big())
		size.Add(size, big.NewInt(1))
	}
	if size.Sign() == 0 {
		return nil, bad("ranges", "the pool has no address left after excludes, gateway and network/broadcast")
	}
	if !size.IsInt64() || size.Int64() > int64(maxSize) {
		return nil, fmt.Errorf("%w: pool %q has %s addresses, more than max_allocated_ips (SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS) = %d; narrow its ranges", ErrPoolTooLarge, spec.Name, size.String(), maxSize)
	}
	var off uint64
	for i := range spans {
		spans[i].off = off
		off += spans[i].hi.sub(spans[i].lo) + 1
	}
	p.spans, p.size = spans, off
	return p, nil
}

// parseRange reads "a-b" (inclusive, a <= b), a single address, or a CIDR,
// all inside subnet.
func parseRange(s string, subnet netip.Prefix) (span, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return span{}, errors.New("empty range")
	}
	in := func(a netip.Addr) error {
		if a.Zone() != "" {
			return fmt.Errorf("%s: a zone is not allowed", a)
		}
		if !subnet.Contains(a) {
			return fmt.Errorf("%s is outside the subnet %s", a, subnet)
		}
		return nil
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return span{}, fmt.Errorf("%q is not a CIDR", s)
		}
		pfx = pfx.Masked()
		if pfx.Bits() < subnet.Bits() || in(pfx.Addr()) != nil {
			return span{}, fmt.Errorf("%s is not inside the subnet %s", pfx, subnet)
		}
		return prefixSpan(pfx), nil
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
		hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil {
			return span{}, fmt.Errorf("%q is not a range \"FIRST-LAST\" of two addresses", s)
		}
		if err := in(lo); err != nil {
			return span{}, err
		}
		if err := in(hi); err != nil {
			return span{}, err
		}
		if hi.Less(lo) {
			return span{}, fmt.Errorf("%q: %s comes after %s", s, lo, hi)
		}
		return span{lo: fromAddr(lo), hi: fromAddr(hi)}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return span{}, fmt.Errorf("%q is not an address, a range \"FIRST-LAST\" or a CIDR", s)
	}
	if err := in(a); err != nil {
		return span{}, err
	}
	v := fromAddr(a)
	return span{lo: v, hi: v}, nil
}

func prefixSpan(p netip.Prefix) span {
	lo := fromAddr(p.Masked().Addr())
	width := 128
	if p.Addr().Is4() {
		width = 32
	}
	host := width - p.Bits()
	return span{lo: lo, hi: lo.or(onesLow(host))}
}

// merge sorts and joins overlapping or adjacent spans.
func merge(in []span) []span {
	if len(in) == 0 {
		return nil
	}
	s := append([]span(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i].lo.less(s[j].lo) })
	out := []span{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if !last.hi.isMax() && !last.hi.add(1).less(x.lo) {
			if last.hi.less(x.hi) {
				last.hi = x.hi
			}
			continue
		}
		if last.hi.isMax() {
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtract removes ex from in; both merged.
func subtract(in, ex []span) []span {
	var out []span
	for _, s := range in {
		cur := []span{s}
		for _, e := range ex {
			var next []span
			for _, c := range cur {
				if e.hi.less(c.lo) || c.hi.less(e.lo) {
					next = append(next, c)
					continue
				}
				if c.lo.less(e.lo) {
					next = append(next, span{lo: c.lo, hi: e.lo.subOne()})
				}
				if e.hi.less(c.hi) {
					next = append(next, span{lo: e.hi.add(1), hi: c.hi})
				}
			}
			cur = next
		}
		out = append(out, cur...)
	}
	return out
}

// validDomain checks a domain name: it is a segment of every address key
// of the domain and shows in logs and errors, so it is short and plain.
func validDomain(d string) error {
	if len(d) > MaxDomain {
		return fmt.Errorf("%q is %d bytes, at most %d", d, len(d), MaxDomain)
	}
	for i, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || i > 0 && (r == '-' || r == '_' || r == '.')) {
			return fmt.Errorf("%q: a domain name has letters, digits, '-', '_' and '.' (not first)", d)
		}
	}
	return nil
}

// Overlap reports the addresses p and q both hand out: how many, and the
// first. Pools of different families, or of different domains, share none.
func (p *Pool) Overlap(q *Pool) (n uint64, first netip.Addr) {
	if p.Domain != q.Domain || p.Subnet.Addr().Is4() != q.Subnet.Addr().Is4() {
		return 0, netip.Addr{}
	}
	is4 := p.Subnet.Addr().Is4()
	i, j := 0, 0
	for i < len(p.spans) && j < len(q.spans) {
		a, b := p.spans[i], q.spans[j]
		lo, hi := a.lo, a.hi
		if lo.less(b.lo) {
			lo = b.lo
		}
		if b.hi.less(hi) {
			hi = b.hi
		}
		if !hi.less(lo) {
			if n == 0 {
				first = lo.addr(is4)
			}
			n += hi.sub(lo) + 1
		}
		if a.hi.less(b.hi) {
			i++
		} else {
			j++
		}
	}
	return n, first
}

// HoldsGatewayOf reports whether p would hand out q's gateway (same
// domain): a workload given it would answer for the whole subnet's router.
func (p *Pool) HoldsGatewayOf(q *Pool) bool {
	return p.Domain == q.Domain && q.Gateway.IsValid() && p.Contains(q.Gateway)
}
