//go:build linux

package probe

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

// newTestSock is an ifSock with no socket behind it, enough to drive handle
// and dispatch.
func newTestSock() *ifSock {
	s := &ifSock{
		c:       &counters{},
		waiters: make(map[netip.Addr][]*waiter),
		groups:  make(map[[6]byte]int),
		done:    make(chan struct{}),
	}
	var m [6]byte
	copy(m[:], testMAC)
	s.mac.Store(&m)
	return s
}

func fired(w *waiter) bool {
	select {
	case <-w.hit:
		return true
	default:
		return false
	}
}

func TestDispatch(t *testing.T) {
	cand4, cand6 := mustAddr("10.0.0.5"), mustAddr("fd00::5")
	thirdMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x33}
	tll := func(m net.HardwareAddr) ndp.Option { return &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: m} }
	sll := func(m net.HardwareAddr) ndp.Option { return &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: m} }
	nonceOpt := func(n []byte) ndp.Option { return &ndp.RawOption{Type: arpnd.NDOptNonce, Length: 1, Value: n} }
	ourProbe, _ := arpnd.BuildARPRequest(testMAC, arpnd.IPv4Zero, cand4)
	ourNS, _ := arpnd.BuildNS(testMAC, arpnd.IPv6Zero, cand6, testNonce, false)

	tests := []struct {
		name     string
		addr     netip.Addr
		gateway  bool
		frame    []byte
		from     uint8 // pkttype
		want     bool
		evidence string
		mac      net.HardwareAddr
	}{
		{name: "arp reply from owner", addr: cand4, frame: arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), want: true, evidence: "arp-reply", mac: otherMAC},
		{name: "arp request from owner", addr: cand4, frame: arpFrame(1, otherMAC, "10.0.0.5", arpnd.ZeroMAC, "10.0.0.1"), want: true, evidence: "arp-request", mac: otherMAC},
		{name: "gratuitous arp from owner", addr: cand4, frame: arpFrame(1, otherMAC, "10.0.0.5", arpnd.ZeroMAC, "10.0.0.5"), want: true, evidence: "gratuitous-arp", mac: otherMAC},
		{name: "gateway gratuitous arp is not an answer", addr: cand4, gateway: true, frame: arpFrame(1, otherMAC, "10.0.0.5", arpnd.ZeroMAC, "10.0.0.5")},
		{name: "another host probing", addr: cand4, frame: arpFrame(1, otherMAC, "0.0.0.0", arpnd.ZeroMAC, "10.0.0.5"), want: true, evidence: "arp-probe", mac: otherMAC},
		{name: "our probe looped back", addr: cand4, frame: ourProbe},
		{name: "our probe as outgoing", addr: cand4, frame: arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), from: unix.PACKET_OUTGOING},
		{name: "reflected with foreign eth src but our sender MAC", addr: cand4, frame: func() []byte {
			b := append([]byte(nil), ourProbe...)
			copy(b[6:12], otherMAC)
			return b
		}()},
		{name: "someone else resolving the candidate", addr: cand4, frame: arpFrame(1, otherMAC, "10.0.0.9", arpnd.ZeroMAC, "10.0.0.5")},
		{name: "unrelated reply", addr: cand4, frame: arpFrame(2, otherMAC, "10.0.0.6", testMAC, "0.0.0.0")},
		{name: "gateway reply", addr: cand4, gateway: true, frame: arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), want: true, evidence: "arp-reply", mac: otherMAC},
		{name: "gateway request is not an answer", addr: cand4, gateway: true, frame: arpFrame(1, otherMAC, "10.0.0.5", arpnd.ZeroMAC, "10.0.0.9")},
		{name: "gateway probe is not an answer", addr: cand4, gateway: true, frame: arpFrame(1, otherMAC, "0.0.0.0", arpnd.ZeroMAC, "10.0.0.5")},

		{name: "na from owner", addr: cand6, frame: ndFrame(t, otherMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{Override: true, TargetAddress: cand6, Options: []ndp.Option{tll(otherMAC)}}), want: true, evidence: "neighbor-advertisement", mac: otherMAC},
		{name: "na names owner by tll", addr: cand6, frame: ndFrame(t, thirdMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: cand6, Options: []ndp.Option{tll(otherMAC)}}), want: true, evidence: "neighbor-advertisement", mac: otherMAC},
		{name: "na without tll names eth source", addr: cand6, frame: ndFrame(t, otherMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: cand6}), want: true, evidence: "neighbor-advertisement", mac: otherMAC},
		{name: "na advertising our MAC", addr: cand6, frame: ndFrame(t, thirdMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: cand6, Options: []ndp.Option{tll(testMAC)}})},
		{name: "na with hop limit 64", addr: cand6, frame: ndFrame(t, otherMAC, "fd00::5", "ff02::1", 64, &ndp.NeighborAdvertisement{TargetAddress: cand6})},
		{name: "another node's dad", addr: cand6, frame: ndFrame(t, otherMAC, "::", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6, Options: []ndp.Option{nonceOpt([]byte{9, 9, 9, 9, 9, 9})}}), want: true, evidence: "dad-probe", mac: otherMAC},
		{name: "another node's dad without nonce", addr: cand6, frame: ndFrame(t, otherMAC, "::", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6}), want: true, evidence: "dad-probe", mac: otherMAC},
		{name: "our dad looped back", addr: cand6, frame: ourNS},
		{name: "our nonce from a reflecting switch", addr: cand6, frame: ndFrame(t, otherMAC, "::", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6, Options: []ndp.Option{nonceOpt(testNonce)}})},
		{name: "ns resolving the candidate", addr: cand6, frame: ndFrame(t, otherMAC, "fd00::9", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6, Options: []ndp.Option{sll(otherMAC)}})},
		{name: "ns sent from the candidate", addr: cand6, frame: ndFrame(t, thirdMAC, "fd00::5", "ff02::1:ff00:9", 255, &ndp.NeighborSolicitation{TargetAddress: mustAddr("fd00::9"), Options: []ndp.Option{sll(otherMAC)}}), want: true, evidence: "nd-source", mac: otherMAC},
		{name: "gateway solicited na", addr: cand6, gateway: true, frame: ndFrame(t, otherMAC, "fd00::5", "fe80::1", 255, &ndp.NeighborAdvertisement{Solicited: true, TargetAddress: cand6, Options: []ndp.Option{tll(otherMAC)}}), want: true, evidence: "neighbor-advertisement", mac: otherMAC},
		{name: "gateway na to all-nodes (answering a probe from ::)", addr: cand6, gateway: true, frame: ndFrame(t, otherMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{Override: true, TargetAddress: cand6, Options: []ndp.Option{tll(otherMAC)}}), want: true, evidence: "neighbor-advertisement", mac: otherMAC},
		{name: "gateway unsolicited na to a unicast address", addr: cand6, gateway: true, frame: ndFrame(t, otherMAC, "fd00::5", "fe80::1", 255, &ndp.NeighborAdvertisement{TargetAddress: cand6})},
		{name: "gateway na for another address", addr: cand6, gateway: true, frame: ndFrame(t, otherMAC, "fd00::6", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: mustAddr("fd00::6")})},
		{name: "gateway na to all-nodes naming our MAC", addr: cand6, gateway: true, frame: ndFrame(t, thirdMAC, "fd00::5", "ff02::1", 255, &ndp.NeighborAdvertisement{TargetAddress: cand6, Options: []ndp.Option{tll(testMAC)}})},
		{name: "gateway dad is not an answer", addr: cand6, gateway: true, frame: ndFrame(t, otherMAC, "::", "ff02::1:ff00:5", 255, &ndp.NeighborSolicitation{TargetAddress: cand6})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSock()
			var nonce []byte
			if tc.addr.Is6() && !tc.gateway {
				nonce = testNonce
			}
			w := s.register(tc.addr, tc.gateway, nonce)
			other := s.register(mustAddr("10.9.9.9"), false, nil)
			at := time.Unix(100, 0)
			s.handle(tc.frame, &unix.SockaddrLinklayer{Pkttype: tc.from}, at)
			if fired(other) {
				t.Fatal("unrelated waiter woken")
			}
			if got := fired(w); got != tc.want {
				t.Fatalf("answered = %v, want %v", got, tc.want)
			}
			if !tc.want {
				return
			}
			if w.ans.evidence != tc.evidence || net.HardwareAddr(w.ans.mac[:]).String() != tc.mac.String() || !w.ans.at.Equal(at) {
				t.Fatalf("answer %+v, want evidence %s mac %s", w.ans, tc.evidence, tc.mac)
			}
			s.unregister(w)
			s.unregister(other)
			if len(s.waiters) != 0 {
				t.Fatalf("waiters left: %v", s.waiters)
			}
		})
	}
}

func TestDispatchManyWaitersSameAddress(t *testing.T) {
	s := newTestSock()
	a := s.register(mustAddr("10.0.0.5"), false, nil)
	b := s.register(mustAddr("10.0.0.5"), false, nil)
	g := s.register(mustAddr("10.0.0.5"), true, nil)
	s.handle(arpFrame(2, otherMAC, "10.0.0.5", testMAC, "0.0.0.0"), nil, time.Now())
	if !fired(a) || !fired(b) || !fired(g) {
		t.Fatal("not every waiter for the address was answered")
	}
	// A second answer changes nothing.
	first := a.ans
	s.handle(arpFrame(2, net.HardwareAddr{2, 0, 0, 0, 0, 0x77}, "10.0.0.5", testMAC, "0.0.0.0"), nil, time.Now())
	if a.ans != first {
		t.Fatal("answer overwritten")
	}
	s.unregister(b)
	if len(s.waiters[mustAddr("10.0.0.5")]) != 2 {
		t.Fatal("unregister removed the wrong waiter")
	}
}

func TestCountersForOwnAndInvalid(t *testing.T) {
	s := newTestSock()
	s.register(mustAddr("10.0.0.5"), false, nil)
	own, _ := arpnd.BuildARPRequest(testMAC, arpnd.IPv4Zero, mustAddr("10.0.0.5"))
	s.handle(own, nil, time.Now())
	s.handle([]byte{1, 2, 3}, nil, time.Now())
	if s.c.framesOwn.Load() != 1 || s.c.framesInvalid.Load() != 1 || s.c.framesReceived.Load() != 2 {
		t.Fatalf("own %d invalid %d received %d", s.c.framesOwn.Load(), s.c.framesInvalid.Load(), s.c.framesReceived.Load())
	}
}

func TestUsable(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	lower := uint32(unix.IFF_UP | unix.IFF_LOWER_UP)
	tests := []struct {
		name string
		a    netlink.LinkAttrs
		want string // "" = usable
	}{
		{"ok", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperUp, HardwareAddr: testMAC}, ""},
		{"ok operstate unknown", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperUnknown, HardwareAddr: testMAC}, ""},
		{"down", netlink.LinkAttrs{Flags: 0, RawFlags: 0, OperState: netlink.OperDown, HardwareAddr: testMAC}, "interface is down"},
		{"no carrier", netlink.LinkAttrs{Flags: up, RawFlags: unix.IFF_UP, OperState: netlink.OperLowerLayerDown, HardwareAddr: testMAC}, "no carrier (operstate lower-layer-down)"},
		{"dormant", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperDormant, HardwareAddr: testMAC}, "not operational"},
		{"noarp", netlink.LinkAttrs{Flags: up, RawFlags: lower | unix.IFF_NOARP, OperState: netlink.OperUp, HardwareAddr: testMAC}, "NOARP"},
		{"no mac", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperUnknown}, "no Ethernet MAC"},
		{"zero mac", netlink.LinkAttrs{Flags: up | net.FlagLoopback, RawFlags: lower, OperState: netlink.OperUnknown, HardwareAddr: arpnd.ZeroMAC}, "no Ethernet MAC"},
		{"infiniband mac", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperUp, HardwareAddr: make(net.HardwareAddr, 20)}, "no Ethernet MAC"},
		{"group mac", netlink.LinkAttrs{Flags: up, RawFlags: lower, OperState: netlink.OperUp, HardwareAddr: arpnd.AllNodesMAC}, "group address"},
	}
	for _, tc := range tests {
		err := usable(&tc.a)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrInterface) || !contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want ErrInterface with %q", tc.name, err, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestValidate(t *testing.T) {
	tgt := func(a string) Target { return Target{Interface: "eth0", Addr: mustAddr(a)} }
	tests := []struct {
		name    string
		t       Target
		gateway bool
		ok      bool
	}{
		{"v4", tgt("10.0.0.5"), false, true},
		{"v6 link-local", tgt("fe80::5"), false, true},
		{"no interface", Target{Addr: mustAddr("10.0.0.5")}, false, false},
		{"no address", Target{Interface: "eth0"}, false, false},
		{"unspecified", tgt("0.0.0.0"), false, false},
		{"broadcast", tgt("255.255.255.255"), false, false},
		{"multicast v6", tgt("ff02::1"), false, false},
		{"loopback", tgt("127.0.0.1"), true, false},
	}
	for _, tc := range tests {
		err := validate(tc.t, tc.gateway)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestParamsDefaults(t *testing.T) {
	p := Params{}.withDefaults()
	if p.Window != 100*time.Millisecond || *p.Retries != 3 || p.Probes != 3 {
		t.Fatalf("defaults %+v", p)
	}
	// Zero retries is a value, not "the default".
	p = Params{Window: time.Second, Retries: new(0), Probes: 1}.withDefaults()
	if p.Window != time.Second || *p.Retries != 0 || p.Probes != 1 {
		t.Fatalf("explicit %+v", p)
	}
	o := Options{}.withDefaults()
	if *o.IdleTimeout != DefaultIdleTimeout || o.ProbeRate != DefaultProbeRate {
		t.Fatalf("default options %+v", o)
	}
	if o := (Options{IdleTimeout: new(time.Duration(0))}).withDefaults(); *o.IdleTimeout != 0 {
		t.Fatalf("an idle timeout of 0 became %v", *o.IdleTimeout)
	}
}

func TestVerdictString(t *testing.T) {
	for v, s := range map[Verdict]string{Free: "free", Conflict: "conflict", Reachable: "reachable", Unreachable: "unreachable", 0: "unknown"} {
		if v.String() != s {
			t.Errorf("%d: %q", v, v.String())
		}
	}
}

func TestEngineErrorsWithoutNetwork(t *testing.T) {
	e := NewEngine(Options{})
	defer e.Close()
	_, err := e.CheckConflict(t.Context(), Target{Netns: "/nonexistent/netns", Interface: "eth0", Addr: mustAddr("10.0.0.5")}, Params{})
	if err == nil || !contains(err.Error(), "cannot probe eth0") {
		t.Fatalf("missing netns: %v", err)
	}
	_, err = e.CheckGateway(t.Context(), Target{Interface: "eth0", Addr: mustAddr("255.255.255.255")}, Params{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("broadcast gateway: %v", err)
	}
	if st := e.Stats(); st.Checks != 2 || st.Errors != 2 {
		t.Fatalf("stats %+v", st)
	}
	e.Close()
	_, err = e.CheckConflict(t.Context(), Target{Interface: "lo", Addr: mustAddr("10.0.0.5")}, Params{})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("closed engine: %v", err)
	}
}

func TestEvidenceNames(t *testing.T) {
	if arpnd.KindARPReply.String() != EvidenceARPReply || arpnd.KindARPRequest.String() != EvidenceARPRequest || arpnd.KindNA.String() != EvidenceNA {
		t.Fatal("frame kind names and Evidence constants differ")
	}
}
