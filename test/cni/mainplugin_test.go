package cni

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// bridgeNetwork is a bridge network on bridge br whose bridge is the
// gateway (isGateway), as Podman's CNI backend writes it.
func (l *lab) bridgeNetwork(name, br, pools string) *libcni.NetworkConfigList {
	l.t.Helper()
	return confList(l.t, "1.0.0", name, fmt.Sprintf(
		`{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true, "ipam": %s}`, br, l.withSocket(pools)))
}

// TestBridgeIsGateway: on a bridge network whose bridge is the gateway,
// the bridge plugin gives the bridge its gateway address only after IPAM
// answered, so the first workload of a fresh network found no gateway to
// answer and never started ("gateway 10.0.5.1 did not answer"). The CNI
// plugin sees isGateway and asks the agent to skip gateway detection; the
// attachment says so; conflict detection still runs on the bridge.
func TestBridgeIsGateway(t *testing.T) {
	l := newLab(t)
	br := fmt.Sprintf("t23b%d", time.Now().UnixNano()%100000)
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.lan.Node.NS, "link", "del", br).Run() })
	dual := l.bridgeNetwork("brnet", br, `"pools": ["br-v4", "br-v6"]`)

	first := workload(t, "br1")
	ctx := ctxFor(t, 60*time.Second)
	v4, skips := l.addSkipping(ctx, dual, first, "the first workload on a fresh bridge network")
	for _, n := range skips {
		if !strings.Contains(n.Reason, "isGateway") {
			t.Errorf("not-checked reason %q does not name isGateway", n.Reason)
		}
	}
	if got := skipNames(skips); got != "br-v4/gateway br-v6/gateway" {
		t.Errorf("attachment says not checked %q, want the gateway detection of both pools", got)
	}
	// The bridge is the gateway now, and the workload reaches it.
	if out := netlab.IP(t, l.lan.Node.NS, "addr", "show", "dev", br); !strings.Contains(out, "10.0.5.1/24") || !strings.Contains(out, "fd00:5::1/64") {
		t.Fatalf("the bridge lacks its gateway addresses:\n%s", out)
	}
	if err := cnilab.Ping(first.Netns, v4.Addr(), netip.MustParseAddr("10.0.5.1"), 5*time.Second); err != nil {
		t.Errorf("the workload cannot reach the bridge as its gateway: %v", err)
	}

	// Conflict detection still runs: a host on the bridge owns the only
	// address of br-busy-v4.
	busy := netlab.NewNS(t, "brbusy")
	port := "p" + br
	netlab.IP(t, l.lan.Node.NS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", busy)
	netlab.IP(t, l.lan.Node.NS, "link", "set", port, "master", br, "up")
	netlab.IP(t, busy, "link", "set", "eth0", "address", "02:00:00:00:05:20", "up")
	netlab.IP(t, busy, "addr", "add", "10.0.5.20/24", "dev", "eth0")
	netlab.WaitFor(t, "the busy host's bridge port forwarding", func() (bool, error) {
		out, err := exec.Command("bridge", "-n", l.lan.Node.NS, "link", "show", "dev", port).CombinedOutput()
		return strings.Contains(string(out), "state forwarding"), err
	})
	onBusy := l.bridgeNetwork("brbusy", br, `"pools": ["br-busy-v4"]`)
	second := workload(t, "br2")
	_, err := l.rt.Add(ctx, onBusy, second)
	// The only candidate quarantined, the pool has nothing left.
	e := cniErr(t, err, cniplugin.CodePoolFull, "10.0.5.20 is in use by 02:00:00:00:05:20")
	t.Logf("ADD with the only address in use on the bridge: %v", e)
	l.delAfterFailedAdd(ctx, onBusy, second)

	if err := l.rt.Del(ctx, dual, first); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, ok := l.held(key(first)); ok {
		t.Error("DEL left the allocation")
	}
}

// TestPtpSkipsDetection: ptp calls IPAM before it creates the veth, and
// gives the veth's host side the gateway address afterwards. With
// detection on, every ADD failed (the interface to probe did not exist).
// The CNI plugin asks the agent to skip both detections, the attachment
// says so, and the workload reaches its gateway (the node).
func TestPtpSkipsDetection(t *testing.T) {
	l := newLab(t)
	list := confList(t, "1.0.0", "ptpnet", fmt.Sprintf(`{"type": "ptp", "ipMasq": false, "ipam": %s}`, l.withSocket(`"pools": ["ptp-v4", "ptp-v6"]`)))
	w := workload(t, "ptp1")
	ctx := ctxFor(t, 60*time.Second)
	v4, skips := l.addSkipping(ctx, list, w, "ADD through ptp with detection on")
	if got := skipNames(skips); got != "ptp-v4/conflict ptp-v4/gateway ptp-v6/conflict ptp-v6/gateway" {
		t.Errorf("attachment says not checked %q, want both detections of both pools", got)
	}
	if err := cnilab.Ping(w.Netns, v4.Addr(), netip.MustParseAddr("10.0.6.1"), 5*time.Second); err != nil {
		t.Errorf("the workload cannot reach the ptp gateway: %v", err)
	}
	if err := l.rt.Del(ctx, list, w); err != nil {
		t.Fatalf("DEL: %v", err)
	}
}

// addSkipping runs ADD of w through list (what names it in a failure) and
// returns w's IPv4 address and the detections the allocation the agent
// holds for it says did not run.
func (l *lab) addSkipping(ctx context.Context, list *libcni.NetworkConfigList, w cnilab.Attachment, what string) (netip.Prefix, []api.DetectionSkip) {
	l.t.Helper()
	res, err := l.rt.Add(ctx, list, w)
	if err != nil {
		l.t.Fatalf("%s: %v", what, err)
	}
	v4, _ := addrs(l.t, res)
	att, ok := l.held(key(w))
	if !ok {
		l.t.Fatalf("%s: the agent holds no allocation", what)
	}
	return v4, att.NotChecked
}

// skipNames is what skips says did not run, as "pool/detection" in order.
func skipNames(skips []api.DetectionSkip) string {
	var got []string
	for _, n := range skips {
		got = append(got, n.Pool+"/"+n.Detection)
	}
	return strings.Join(got, " ")
}
