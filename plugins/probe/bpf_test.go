package probe

import (
	"testing"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

func TestFilterBody(t *testing.T) {
	vm, err := bpf.NewVM(arpnd.FilterBody())
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, mustAddr("fd00::5"), testNonce, false)
	na := ndFrame(t, otherMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: mustAddr("fd00::5")})
	rs := ndFrame(t, otherMAC, "fe80::1", "ff02::2", 255, &ndp.RouterSolicitation{})
	udp := append([]byte(nil), ns...)
	udp[14+6] = 17 // next header UDP
	ipv4 := append([]byte(nil), ns...)
	ipv4[12], ipv4[13] = 0x08, 0x00
	tests := []struct {
		name   string
		frame  []byte
		accept bool
	}{
		{"arp probe", arpFrame(1, otherMAC, "0.0.0.0", arpnd.ZeroMAC, "10.0.0.5"), true},
		{"arp reply", arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), true},
		{"neighbor solicitation", ns, true},
		{"neighbor advertisement", na, true},
		{"router solicitation", rs, false},
		{"ipv6 udp", udp, false},
		{"ipv4", ipv4, false},
		{"runt", []byte{1, 2, 3}, false},
	}
	for _, tc := range tests {
		n, err := vm.Run(tc.frame)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (n > 0) != tc.accept {
			t.Errorf("%s: filter returned %d, want accept=%v", tc.name, n, tc.accept)
		}
	}
}

func TestFilterAssembles(t *testing.T) {
	raw, err := arpnd.Filter()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(arpnd.FilterBody())+3 {
		t.Fatalf("program has %d instructions", len(raw))
	}
	// The first instruction loads the packet type (SKF_AD_OFF + SKF_AD_PKTTYPE).
	if raw[0].K != 0xfffff004 {
		t.Fatalf("first instruction %+v does not load pkttype", raw[0])
	}
}
