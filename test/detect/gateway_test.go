package detect

import (
	"testing"

	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// A gateway present and absent for both families, from the node's
// namespace given by path.
func TestGatewayDetector(t *testing.T) {
	netlab.RequireRoot(t)
	l := netlab.NewStdLAN(t)
	c := serve(t, gatewaydetector.New(nil), "", dualStack)

	t.Run("checks", func(t *testing.T) {
		t.Run("IPv4 present", func(t *testing.T) {
			t.Parallel()
			// The probe goes out from 0.0.0.0, never from the candidate.
			r := req(l.Node, "10.0.0.60/24", netlab.GW4)
			res := check(t, c, r, sdk.VerdictPass, "gateway 10.0.0.1 answered from "+netlab.GwMAC+" in ", "s on eth0")
			evidence(t, res, "family", "ipv4", "responder_mac", netlab.GwMAC, "evidence", "arp-reply", "sender", "0.0.0.0")
		})
		t.Run("IPv4 absent", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Free4+"/24", "10.0.0.2"), sdk.VerdictBlock,
				"gateway 10.0.0.2 did not answer within 100ms on eth0")
			evidence(t, res, "family", "ipv4", "probes_sent", "3", "responder_mac", "")
		})
		t.Run("IPv6 present", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Free6+"/64", netlab.GW6), sdk.VerdictPass,
				"gateway fd00::1 answered from "+netlab.GwMAC)
			evidence(t, res, "family", "ipv6", "evidence", "neighbor-advertisement", "sender", "link-local")
		})
		t.Run("IPv6 absent", func(t *testing.T) {
			t.Parallel()
			check(t, c, req(l.Node, netlab.Free6+"/64", "fd00::2"), sdk.VerdictBlock,
				"gateway fd00::2 did not answer within 100ms on eth0")
		})
		t.Run("no gateway", func(t *testing.T) {
			t.Parallel()
			check(t, c, req(l.Node, netlab.Free4+"/24", ""), sdk.VerdictSkip, "no gateway given")
		})
		t.Run("family mismatch", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Free4+"/24", netlab.GW6), sdk.VerdictError, "fd00::1 is ipv6")
			evidence(t, res, "error", "invalid")
		})
	})

	expectMetrics(t, metrics(t, c),
		[]any{"gateway_checks_total", 1, "family", "ipv4", "verdict", "pass"},
		[]any{"gateway_checks_total", 1, "family", "ipv4", "verdict", "block"},
		[]any{"gateway_checks_total", 1, "family", "ipv4", "verdict", "skip"},
		[]any{"gateway_checks_total", 1, "family", "ipv6", "verdict", "pass"},
		[]any{"gateway_checks_total", 1, "family", "ipv6", "verdict", "block"},
		[]any{"gateway_checks_total", 1, "family", "ipv6", "verdict", "error"},
		[]any{"gateway_unreachable_total", 1, "family", "ipv4"},
		[]any{"gateway_unreachable_total", 1, "family", "ipv6"},
		[]any{"gateway_probes_sent_total", ">0"},
		[]any{"gateway_errors_total", 1, "reason", "invalid"},
		[]any{"gateway_check_duration_seconds", 6},
		[]any{"gateway_rtt_seconds", 2},
		[]any{"gateway_sockets_open", 1},
	)

	// The probe form left nothing in the gateway's neighbour cache.
	if out := netlab.IP(t, l.GW.NS, "neigh", "show", "10.0.0.60"); out != "" {
		t.Errorf("the default gateway probe wrote the candidate into the gateway's cache: %q", out)
	}

	singleStack(t, func() sdk.Plugin { return gatewaydetector.New(nil) },
		req(l.Node, netlab.Free4+"/24", netlab.GW4), req(l.Node, netlab.Free6+"/64", netlab.GW6), sdk.VerdictPass, netlab.GwMAC)
}
