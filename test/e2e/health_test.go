package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

type healthBody struct {
	Status     string   `json:"status"`
	WaitingFor []string `json:"waiting_for"`
	Plugins    []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Restarts int    `json:"restarts"`
	} `json:"plugins"`
}

func getHealth(t *testing.T, a *agenttest.Agent, path string) (int, healthBody) {
	t.Helper()
	code, body, err := a.Get(a.Health, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var hb healthBody
	if err := json.Unmarshal(body, &hb); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v\n%s", path, err, body)
	}
	return code, hb
}

func TestHealthEndpoints(t *testing.T) {
	a := agenttest.Start(t, bins, agenttest.Options{})
	took := a.WaitReady(agenttest.ReadyTimeout)
	t.Logf("ready after %v", took)
	for _, path := range []string{"/v1/runtime/startup", "/v1/runtime/readiness", "/v1/runtime/liveness"} {
		code, hb := getHealth(t, a, path)
		if code != http.StatusOK {
			t.Errorf("%s = %d %+v, want 200", path, code, hb)
		}
		if len(hb.Plugins) != 3 {
			t.Errorf("%s names %d plugins, want the 3 built-ins: %+v", path, len(hb.Plugins), hb.Plugins)
		}
		for _, p := range hb.Plugins {
			if p.State != "ready" || p.PID == 0 {
				t.Errorf("%s: plugin %+v, want ready with a pid", path, p)
			}
		}
	}
}
