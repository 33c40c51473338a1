package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNewPool(t *testing.T) {
	cases := []struct {
		name    string
		spec    PoolSpec
		max     int
		size    int
		first   string
		last    string
		wantErr string
	}{
		{name: "v4 whole subnet minus network, broadcast, gateway",
			spec: PoolSpec{Subnet: "10.20.0.0/24", Gateway: "10.20.0.1"}, size: 253, first: "10.20.0.2", last: "10.20.0.254"},
		{name: "v4 range and CIDR with excludes",
			spec: PoolSpec{Subnet: "10.20.0.0/24", Ranges: []string{"10.20.0.10-10.20.0.19", "10.20.0.32/30"}, Exclude: []string{"10.20.0.12", "10.20.0.33-10.20.0.34"}},
			size: 11, first: "10.20.0.10", last: "10.20.0.35"},
		{name: "overlapping ranges counted once",
			spec: PoolSpec{Subnet: "10.0.0.0/16", Ranges: []string{"10.0.1.0-10.0.1.99", "10.0.1.50-10.0.1.149"}}, size: 150, first: "10.0.1.0", last: "10.0.1.149"},
		{name: "v6 sized by its ranges",
			spec: PoolSpec{Subnet: "fd00::/64", Ranges: []string{"fd00::100-fd00::1ff"}, Gateway: "fd00::1"}, size: 256, first: "fd00::100", last: "fd00::1ff"},
		{name: "v6 /64 without ranges is too large",
			spec: PoolSpec{Subnet: "fd00::/64"}, wantErr: "has 18446744073709551616 addresses, more than max_allocated_ips"},
		{name: "the cap", spec: PoolSpec{Subnet: "10.0.0.0/16"}, max: 5000, wantErr: "has 65534 addresses, more than max_allocated_ips (SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS) = 5000"},
		{name: "v4 /31 has both addresses", spec: PoolSpec{Subnet: "10.0.0.0/31"}, size: 2, first: "10.0.0.0", last: "10.0.0.1"},
		{name: "bad subnet", spec: PoolSpec{Subnet: "10.0.0.0/33"}, wantErr: `pool "p": subnet: "10.0.0.0/33" is not a CIDR`},
		{name: "host bits", spec: PoolSpec{Subnet: "10.0.0.5/24"}, wantErr: "has host bits set; the subnet is 10.0.0.0/24"},
		{name: "range outside", spec: PoolSpec{Subnet: "10.0.0.0/24", Ranges: []string{"10.0.0.5", "10.0.1.1-10.0.1.5"}}, wantErr: "ranges[1]: 10.0.1.1 is outside the subnet 10.0.0.0/24"},
		{name: "reversed range", spec: PoolSpec{Subnet: "10.0.0.0/24", Ranges: []string{"10.0.0.9-10.0.0.5"}}, wantErr: "ranges[0]: \"10.0.0.9-10.0.0.5\": 10.0.0.9 comes after 10.0.0.5"},
		{name: "family mix", spec: PoolSpec{Subnet: "10.0.0.0/24", Ranges: []string{"fd00::1-fd00::5"}}, wantErr: "ranges[0]: fd00::1 is outside"},
		{name: "gateway outside", spec: PoolSpec{Subnet: "10.0.0.0/24", Gateway: "10.0.1.1"}, wantErr: "gateway: 10.0.1.1 is outside the subnet"},
		{name: "gateway detection needs a gateway", spec: PoolSpec{Subnet: "10.0.0.0/24", PoolOptions: PoolOptions{GatewayDetection: true}}, wantErr: "gateway_detection: needs a gateway"},
		{name: "everything excluded", spec: PoolSpec{Subnet: "10.0.0.0/30", Exclude: []string{"10.0.0.0/30"}}, wantErr: "no address left"},
		{name: "unknown store", spec: PoolSpec{Subnet: "10.0.0.0/24", PoolOptions: PoolOptions{Store: "consul"}}, wantErr: `store: "consul" is not a store of this agent`},
		{name: "route without gateway", spec: PoolSpec{Subnet: "10.0.0.0/24", Routes: []RouteSpec{{Dst: "0.0.0.0/0"}}}, wantErr: "routes[0].gw: no gw and the pool has no gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = "p"
			if tc.max == 0 {
				tc.max = 1 << 20
			}
			p, err := NewPool(tc.spec, tc.max)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Size() != tc.size {
				t.Fatalf("size %d, want %d (ranges %v)", p.Size(), tc.size, p.Ranges())
			}
			if got := p.At(0).String(); got != tc.first {
				t.Errorf("first %s, want %s", got, tc.first)
			}
			if got := p.At(p.Size() - 1).String(); got != tc.last {
				t.Errorf("last %s, want %s", got, tc.last)
			}
			seen := map[netip.Addr]bool{}
			for i := range p.Size() {
				a := p.At(i)
				if seen[a] || !p.Contains(a) || !p.Subnet.Contains(a) || a == p.Gateway {
					t.Fatalf("address %d = %s: duplicate, outside or the gateway", i, a)
				}
				if idx, _ := p.index(a); idx != i {
					t.Fatalf("index(%s) = %d, want %d", a, idx, i)
				}
				seen[a] = true
			}
		})
	}
}

func TestPoolTooLargeIsTyped(t *testing.T) {
	_, err := NewPool(PoolSpec{Name: "big", Subnet: "10.0.0.0/20"}, 100)
	if !errors.Is(err, ErrPoolTooLarge) {
		t.Fatalf("%v does not wrap ErrPoolTooLarge", err)
	}
}

// FuzzParseRange: no input panics; an accepted range lies inside the
// subnet with lo <= hi, and a pool built from it enumerates inside it.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10.0.0.1-10.0.0.9", "10.0.0.0/28", "10.0.0.7", "fd00::1-fd00::ff", "fd00::/120", "-", "1.2.3.4-", "::ffff:10.0.0.1", "10.0.0.1 - 10.0.0.2", "fe80::1%eth0"} {
		f.Add(s, "10.0.0.0/24")
		f.Add(s, "fd00::/64")
	}
	f.Fuzz(func(t *testing.T, r, subnet string) {
		sn, err := netip.ParsePrefix(subnet)
		if err != nil {
			return
		}
		sn = sn.Masked()
		s, err := parseRange(r, sn)
		if err != nil {
			return
		}
		is4 := sn.Addr().Is4()
		if s.hi.less(s.lo) || !sn.Contains(s.lo.addr(is4)) || !sn.Contains(s.hi.addr(is4)) {
			t.Fatalf("parseRange(%q, %s) = [%s, %s]", r, sn, s.lo.addr(is4), s.hi.addr(is4))
		}
		p, err := NewPool(PoolSpec{Name: "f", Subnet: sn.String(), Ranges: []string{r}}, 4096)
		if err != nil {
			return
		}
		for _, i := range []int{0, p.Size() / 2, p.Size() - 1} {
			if a := p.At(i); !sn.Contains(a) || !p.Contains(a) {
				t.Fatalf("At(%d) = %s outside %s", i, a, sn)
			}
		}
	})
}
