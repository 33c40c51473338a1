package arpnd

import (
	"net"
	"net/netip"
	"testing"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

// parseBuilt parses the frame a Build function returned with err, failing
// the test if either the build or the parse failed.
func parseBuilt(t *testing.T, b []byte, err error) Frame {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return f
}

func TestClaims(t *testing.T) {
	a4 := netip.MustParseAddr("10.0.0.5")
	a6 := netip.MustParseAddr("fd00::5")
	ll := netip.MustParseAddr("fe80::b")
	garp, gerr := BuildGratuitousARP(macB, a4)
	req, rerr := BuildARPRequest(macB, a4, netip.MustParseAddr("10.0.0.1"))
	probe, perr := BuildARPRequest(macB, IPv4Zero, a4)
	na, nerr := BuildUnsolicitedNA(macB, a6)
	dad, derr := BuildNS(macB, IPv6Zero, a6, []byte{1, 2, 3, 4, 5, 6}, false)
	res, serr := BuildNS(macB, ll, a6, nil, true)
	tests := []struct {
		name string
		b    []byte
		err  error
		want []Claim
	}{
		{"gratuitous ARP", garp, gerr, []Claim{{a4, [6]byte(macB), EvidenceGratuitousARP}}},
		{"ARP request from the address", req, rerr, []Claim{{a4, [6]byte(macB), EvidenceARPRequest}}},
		{"ARP probe", probe, perr, []Claim{{a4, [6]byte(macB), EvidenceARPProbe}}},
		{"unsolicited NA", na, nerr, []Claim{{a6, [6]byte(macB), EvidenceNA}}},
		{"DAD", dad, derr, []Claim{{a6, [6]byte(macB), EvidenceDADProbe}}},
		{"resolution NS claims its source, not its target", res, serr, []Claim{{ll, [6]byte(macB), EvidenceNDSource}}},
	}
	for _, tc := range tests {
		f := parseBuilt(t, tc.b, tc.err)
		got := Claims(&f)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: claims %v, want %v", tc.name, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: claim %d = %+v, want %+v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

func TestBuildUnsolicitedNA(t *testing.T) {
	a6 := netip.MustParseAddr("fd00::5")
	b, err := BuildUnsolicitedNA(macA, a6)
	f := parseBuilt(t, b, err)
	if f.Kind != KindNA || f.Target != a6 || f.IPSrc != a6 || f.IPDst != AllNodes || f.Solicited || !f.Override ||
		!f.HasTgtLL || f.TgtLL != [6]byte(macA) || f.EthSrc != [6]byte(macA) || f.EthDst != [6]byte(AllNodesMAC) {
		t.Fatalf("unsolicited NA parsed as %+v", f)
	}
	for _, bad := range []string{"10.0.0.5", "ff02::1", "::"} {
		if _, err := BuildUnsolicitedNA(macA, netip.MustParseAddr(bad)); err == nil {
			t.Errorf("BuildUnsolicitedNA(%s) built a frame", bad)
		}
	}
	if _, err := BuildGratuitousARP(macA, a6); err == nil {
		t.Error("BuildGratuitousARP of an IPv6 address built a frame")
	}
}

// The probe engine's reader runs ClaimsInto on every frame of a busy link:
// it must not allocate, and must agree with Claims.
func TestClaimsIntoAllocatesNothing(t *testing.T) {
	a6 := netip.MustParseAddr("fd00::5")
	b, err := BuildUnsolicitedNA(macB, a6)
	f := parseBuilt(t, b, err)
	var buf [MaxClaims]Claim
	if n := testing.AllocsPerRun(100, func() { ClaimsInto(&f, &buf) }); n != 0 {
		t.Errorf("ClaimsInto allocated %v times per frame, want 0", n)
	}
	n := ClaimsInto(&f, &buf)
	if want := Claims(&f); n != len(want) || buf[0] != want[0] {
		t.Errorf("ClaimsInto = %v, Claims = %v", buf[:n], want)
	}
}
