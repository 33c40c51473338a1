package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

func status(t *testing.T, a *agenttest.Agent) api.Agent {
	t.Helper()
	return agenttest.StatusOf(t, a.Socket)
}

func pluginState(t *testing.T, a *agenttest.Agent, name string) api.Plugin {
	t.Helper()
	return agenttest.PluginOf(t, a.Socket, name)
}

// pluginsNow is every plugin's status by name, as the agent lists them
// now: in its first milliseconds, while the supervisor is still being
// given its plugins, the list may be empty (liveness already answers).
func pluginsNow(t *testing.T, a *agenttest.Agent) map[string]api.Plugin {
	t.Helper()
	out := map[string]api.Plugin{}
	for _, p := range agenttest.StatusOf(t, a.Socket).Plugins {
		out[p.Name] = p
	}
	return out
}

// checkVia asks the agent to check addresses (CIDRs, optionally
// "CIDR via GATEWAY") on iface in the agent's own namespace.
func checkVia(t *testing.T, a *agenttest.Agent, iface string, addrs ...string) api.CheckResult {
	t.Helper()
	req := api.CheckRequest{Interface: iface}
	for _, s := range addrs {
		var ar api.AddressRequest
		if i := strings.Index(s, " via "); i >= 0 {
			ar = api.AddressRequest{Address: s[:i], Gateway: s[i+5:]}
		} else {
			ar = api.AddressRequest{Address: s}
		}
		req.Addresses = append(req.Addresses, ar)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, code, err := (&api.Client{SocketPath: a.Socket}).Check(ctx, req)
	if err != nil || code != 200 {
		t.Fatalf("check %v: %d %v", addrs, code, err)
	}
	return resp
}
