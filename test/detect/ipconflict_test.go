package detect

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// Free and busy addresses of both families, checked from the node's
// namespace given by path; the busy host's kernel owns the busy addresses.
func TestIPConflict(t *testing.T) {
	netlab.RequireRoot(t)
	l := netlab.NewStdLAN(t)
	c := serve(t, ipconflict.New(nil), "", dualStack)

	t.Run("checks", func(t *testing.T) {
		t.Run("free IPv4", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Free4+"/24", ""), sdk.VerdictPass,
				"10.0.0.50 is not in use on eth0 (no answer within 100ms, 3 probes)")
			evidence(t, res, "family", "ipv4", "probes_sent", "3", "window", "100ms", "responder_mac", "")
		})
		t.Run("busy IPv4", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Busy4+"/24", ""), sdk.VerdictBlock,
				"10.0.0.10 is in use by "+netlab.BusyMAC+" on eth0")
			evidence(t, res, "family", "ipv4", "responder_mac", netlab.BusyMAC, "evidence", "arp-reply")
			if res.Evidence["rtt"] == "" || res.Evidence["probes_sent"] == "" {
				t.Errorf("evidence lacks rtt or probes_sent: %v", res.Evidence)
			}
		})
		t.Run("free IPv6", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Free6+"/64", ""), sdk.VerdictPass,
				"fd00::50 is not in use on eth0 (no answer within 100ms, 3 probes)")
			evidence(t, res, "family", "ipv6")
		})
		t.Run("busy IPv6", func(t *testing.T) {
			t.Parallel()
			res := check(t, c, req(l.Node, netlab.Busy6+"/64", ""), sdk.VerdictBlock,
				"fd00::10 is in use by "+netlab.BusyMAC+" on eth0")
			evidence(t, res, "family", "ipv6", "responder_mac", netlab.BusyMAC, "evidence", "neighbor-advertisement")
		})
		t.Run("gateway's address is in use", func(t *testing.T) {
			t.Parallel()
			check(t, c, req(l.Node, netlab.GW4+"/24", ""), sdk.VerdictBlock, "in use by "+netlab.GwMAC)
		})
	})

	// Every check shared one socket on the node's eth0.
	expectMetrics(t, metrics(t, c),
		[]any{"ip_conflict_checks_total", 2, "family", "ipv4", "verdict", "block"},
		[]any{"ip_conflict_checks_total", 1, "family", "ipv4", "verdict", "pass"},
		[]any{"ip_conflict_checks_total", 1, "family", "ipv6", "verdict", "block"},
		[]any{"ip_conflict_checks_total", 1, "family", "ipv6", "verdict", "pass"},
		[]any{"ip_conflict_conflicts_total", 2, "family", "ipv4"},
		[]any{"ip_conflict_conflicts_total", 1, "family", "ipv6"},
		[]any{"ip_conflict_probes_sent_total", ">0"},
		[]any{"ip_conflict_send_errors_total", 0},
		[]any{"ip_conflict_errors_total", 0, "reason", "interface"},
		[]any{"ip_conflict_check_duration_seconds", 5},
		[]any{"ip_conflict_sockets_open", 1},
	)
	h, err := c.Health(context.Background())
	if err != nil || h.State != sdk.HealthReady {
		t.Fatalf("health %+v %v", h, err)
	}
	var d struct {
		SocketsOpen int `json:"sockets_open"`
		Checks      int `json:"checks"`
	}
	if err := json.Unmarshal(h.Detail.(json.RawMessage), &d); err != nil || d.SocketsOpen != 1 || d.Checks != 5 {
		t.Errorf("health detail %s (%v)", h.Detail, err)
	}

	// A node with IPv6 disabled skips IPv6 and still probes IPv4.
	singleStack(t, func() sdk.Plugin { return ipconflict.New(nil) },
		req(l.Node, netlab.Busy4+"/24", ""), req(l.Node, netlab.Busy6+"/64", ""), sdk.VerdictBlock, netlab.BusyMAC)
}

// The agent's deadline wins over the window: a check cut short is an error
// ("timeout"), never a pass, and it returns at the deadline.
func TestDeadlineShorterThanWindow(t *testing.T) {
	netlab.RequireRoot(t)
	l := netlab.NewLAN(t)
	node := l.AddHost("node", netlab.NodeMAC)
	for name, p := range map[string]interface {
		sdk.Detector
		Shutdown(context.Context) error
	}{"ip-conflict": ipconflict.New(nil), "gateway-detector": gatewaydetector.New(nil)} {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			err := p.Configure(context.Background(), sdk.ConfigureRequest{
				Config: sdk.RawConfig{Filename: "detect.hcl", Body: []byte(`window = "5s"`)}, Agent: dualStack})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err := p.Check(ctx, req(node, netlab.Free4+"/24", "10.0.0.2"))
			took := time.Since(start)
			if err != nil || res.Verdict != sdk.VerdictError || res.Evidence["error"] != "timeout" ||
				!strings.Contains(res.Reason, "deadline exceeded") {
				t.Fatalf("Check = %+v, %v; want a timeout error", res, err)
			}
			if took > time.Second {
				t.Errorf("Check took %v with a 50ms deadline and a 5s window", took)
			}
		})
	}
}
