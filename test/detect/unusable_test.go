package detect

import (
	"strings"
	"testing"

	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// A check that cannot run is an error naming why, never a pass: an
// interface that is down, one that does not exist, a namespace path that
// does not exist. The busy host owns the addresses, so a wrong "pass" or
// "block" could not hide behind silence.
func TestUnusable(t *testing.T) {
	netlab.RequireRoot(t)
	l := netlab.NewLAN(t)
	busy := l.AddHost("busy", netlab.BusyMAC, netlab.Busy4+"/24", netlab.Busy6+"/64")
	down := l.AddHost("down", netlab.NodeMAC)
	netlab.IP(t, down.NS, "link", "set", "eth0", "down")
	missingNS := *down
	missingNS.Path = down.Path + "-missing"

	ipc := serve(t, ipconflict.New(nil), "", dualStack)
	gwd := serve(t, gatewaydetector.New(nil), "", dualStack)

	tests := []struct {
		name   string
		host   *netlab.Host
		iface  string
		reason string // the error class
		parts  []string
	}{
		{"interface down", down, "eth0", "interface", []string{"cannot probe eth0 (netns " + down.Path + ")", "interface is down"}},
		{"no such interface", down, "eth9", "interface", []string{"cannot probe eth9", "no such interface"}},
		{"no such namespace", &missingNS, "eth0", "netns", []string{"cannot probe eth0", missingNS.Path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fam := range []struct{ addr, gw string }{{netlab.Busy4 + "/24", netlab.Busy4}, {netlab.Busy6 + "/64", netlab.Busy6}} {
				r := req(tt.host, fam.addr, fam.gw)
				r.Interface = tt.iface
				for name, c := range map[string]*sdk.Client{"ip-conflict": ipc, "gateway-detector": gwd} {
					res := check(t, c, r, sdk.VerdictError, tt.parts...)
					if res.Evidence["error"] != tt.reason {
						t.Errorf("%s %s: error class %q, want %q (%s)", name, fam.addr, res.Evidence["error"], tt.reason, res.Reason)
					}
				}
			}
		})
	}
	// The same checks from a usable namespace decide.
	check(t, ipc, req(busy, netlab.Free4+"/24", ""), sdk.VerdictPass)

	for _, m := range []struct {
		c      *sdk.Client
		prefix string
	}{{ipc, "ip_conflict"}, {gwd, "gateway"}} {
		ss := metrics(t, m.c)
		expectMetrics(t, ss,
			[]any{m.prefix + "_errors_total", 4, "reason", "interface"},
			[]any{m.prefix + "_errors_total", 2, "reason", "netns"},
			[]any{m.prefix + "_errors_total", 0, "reason", "send"},
			[]any{m.prefix + "_checks_total", 3, "family", "ipv4", "verdict", "error"},
			[]any{m.prefix + "_checks_total", 3, "family", "ipv6", "verdict", "error"},
		)
		if strings.HasPrefix(m.prefix, "ip") {
			expectMetrics(t, ss, []any{m.prefix + "_checks_total", 1, "family", "ipv4", "verdict", "pass"})
		}
	}
}
