package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// fakeSource is a Source with a fixed snapshot and a scripted Live.
type fakeSource struct {
	agent api.Agent
	live  func(context.Context) error
}

func (f fakeSource) Snapshot() api.Agent { return f.agent }

func (f fakeSource) Live(ctx context.Context) error {
	if f.live == nil {
		return nil
	}
	return f.live(ctx)
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func agent(started bool, plugins ...api.Plugin) api.Agent {
	return api.Agent{Version: "1.2.3", PID: 4242, StartedAt: t0, Started: started, Plugins: plugins}
}

func plugin(name string, st api.PluginState) api.Plugin {
	return api.Plugin{Name: name, Kind: "detector", State: st, PID: 100, Restarts: 2}
}

func serve(t *testing.T, src Source, method, path string) (*http.Response, Response, string) {
	t.Helper()
	h := NewHandler(src).(*handler)
	h.now = func() time.Time { return t0.Add(90 * time.Second) }
	h.timeout = 50 * time.Millisecond
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	raw := rec.Body.String()
	var body Response
	if method != http.MethodHead {
		if got := res.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("body %q is not a Response: %v", raw, err)
		}
	}
	return res, body, raw
}

func TestProbes(t *testing.T) {
	failed := plugin("ip-conflict", api.Failed)
	failed.LastError = "exit status 2"
	failed.Message = "restart budget spent"

	tests := []struct {
		name        string
		path        string
		src         fakeSource
		wantCode    int
		wantStatus  string
		wantWaiting []string
		wantError   string
	}{
		{"startup before init", StartupPath, fakeSource{agent: agent(false)}, 503, StatusStarting, nil, ""},
		{"startup after init", StartupPath, fakeSource{agent: agent(true, failed)}, 200, StatusStarted, nil, ""},
		{"ready, no plugins", ReadinessPath, fakeSource{agent: agent(true)}, 200, StatusReady, nil, ""},
		{"ready, every kind of acceptable state", ReadinessPath, fakeSource{agent: agent(true,
			plugin("a", api.Ready), plugin("b", api.Degraded), plugin("c", api.Disabled))}, 200, StatusReady, nil, ""},
		{"not ready: plugins hold it back", ReadinessPath, fakeSource{agent: agent(true,
			plugin("gateway-detector", api.Ready), failed, plugin("custom", api.Starting), plugin("tuner", api.Restarting))},
			503, StatusNotReady, []string{"ip-conflict", "custom", "tuner"}, ""},
		{"not ready: still starting", ReadinessPath, fakeSource{agent: agent(false, plugin("a", api.Ready))},
			503, StatusNotReady, nil, "the agent is still starting"},
		{"alive", LivenessPath, fakeSource{agent: agent(true)}, 200, StatusAlive, nil, ""},
		{"alive even when plugins are failed", LivenessPath, fakeSource{agent: agent(true, failed)}, 200, StatusAlive, nil, ""},
		{"not alive: Live fails", LivenessPath, fakeSource{agent: agent(true), live: func(context.Context) error {
			return errors.New("control socket: no answer")
		}}, 503, StatusNotAlive, nil, "control socket: no answer"},
		{"not alive: Live honours the timeout", LivenessPath, fakeSource{agent: agent(true), live: func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("supervisor loop: " + ctx.Err().Error())
		}}, 503, StatusNotAlive, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body, _ := serve(t, tt.src, http.MethodGet, tt.path)
			if res.StatusCode != tt.wantCode {
				t.Errorf("code = %d, want %d", res.StatusCode, tt.wantCode)
			}
			if body.Status != tt.wantStatus {
				t.Errorf("status = %q, want %q", body.Status, tt.wantStatus)
			}
			if !reflect.DeepEqual(body.WaitingFor, tt.wantWaiting) {
				t.Errorf("waiting_for = %q, want %q", body.WaitingFor, tt.wantWaiting)
			}
			if tt.wantError != "" && body.Error != tt.wantError {
				t.Errorf("error = %q, want %q", body.Error, tt.wantError)
			}
			if tt.wantCode == 503 && tt.path == LivenessPath && body.Error == "" {
				t.Error("a failed liveness probe must say why")
			}
			if body.Started != tt.src.agent.Started || body.Version != "1.2.3" || body.PID != 4242 {
				t.Errorf("started/version/pid = %v/%q/%d", body.Started, body.Version, body.PID)
			}
			if body.UptimeSeconds != 90 {
				t.Errorf("uptime_seconds = %v, want 90", body.UptimeSeconds)
			}
			if len(body.Plugins) != len(tt.src.agent.Plugins) {
				t.Fatalf("plugins = %d, want %d", len(body.Plugins), len(tt.src.agent.Plugins))
			}
			for i, p := range tt.src.agent.Plugins {
				got := body.Plugins[i]
				if got.Name != p.Name || got.State != p.State || got.Kind != p.Kind || got.PID != p.PID ||
					got.Restarts != p.Restarts || got.LastError != p.LastError || got.Message != p.Message {
					t.Errorf("plugin %d = %+v, want it to render %+v", i, got, p)
				}
			}
		})
	}
}

func TestPluginFieldsInJSON(t *testing.T) {
	p := plugin("ip-conflict", api.Failed)
	p.LastError = "exit status 2"
	p.Message = "restart budget spent"
	p.Detail = json.RawMessage(`{"interfaces":["eth0"]}`)
	_, _, raw := serve(t, fakeSource{agent: agent(true, p)}, http.MethodGet, ReadinessPath)

	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"status":         "not ready",
		"started":        true,
		"waiting_for":    []any{"ip-conflict"},
		"version":        "1.2.3",
		"pid":            float64(4242),
		"uptime_seconds": float64(90),
		"plugins": []any{map[string]any{
			"name": "ip-conflict", "kind": "detector", "state": "failed", "pid": float64(100),
			"restarts": float64(2), "last_error": "exit status 2", "message": "restart budget spent",
			"detail": map[string]any{"interfaces": []any{"eth0"}},
		}},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("body =\n%s\nwant the same as %v", raw, want)
	}
}

func TestNoPluginsIsAnEmptyList(t *testing.T) {
	_, _, raw := serve(t, fakeSource{agent: agent(true)}, http.MethodGet, StartupPath)
	if !strings.Contains(raw, `"plugins": []`) {
		t.Errorf("body %s: want an empty plugins list, not null", raw)
	}
}

func TestLiveIgnoringItsContextStillAnswers(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	src := fakeSource{agent: agent(true), live: func(context.Context) error {
		<-block // a wedged loop that never looks at ctx
		return nil
	}}
	res, body, _ := serve(t, src, http.MethodGet, LivenessPath)
	if res.StatusCode != 503 || body.Status != StatusNotAlive || !strings.Contains(body.Error, "did not answer within 50ms") {
		t.Errorf("got %d %+v, want 503 not alive naming the timeout", res.StatusCode, body)
	}
}

func TestMethods(t *testing.T) {
	src := fakeSource{agent: agent(true)}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		for _, path := range []string{StartupPath, ReadinessPath, LivenessPath} {
			res, body, _ := serve(t, src, m, path)
			if res.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d, want 405", m, path, res.StatusCode)
			}
			if got := res.Header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("%s %s Allow = %q", m, path, got)
			}
			if !strings.Contains(body.Error, m) {
				t.Errorf("%s %s error %q does not name the method", m, path, body.Error)
			}
		}
	}
}

func TestHead(t *testing.T) {
	res, _, _ := serve(t, fakeSource{agent: agent(false)}, http.MethodHead, StartupPath)
	if res.StatusCode != 503 {
		t.Errorf("HEAD startup before init = %d, want 503", res.StatusCode)
	}
	res, _, _ = serve(t, fakeSource{agent: agent(true)}, http.MethodHead, ReadinessPath)
	if res.StatusCode != 200 {
		t.Errorf("HEAD readiness = %d, want 200", res.StatusCode)
	}
}

func TestUnknownPath(t *testing.T) {
	res, body, _ := serve(t, fakeSource{agent: agent(true)}, http.MethodGet, "/v1/runtime/nope")
	if res.StatusCode != 404 || !strings.Contains(body.Error, ReadinessPath) {
		t.Errorf("unknown path = %d %+v, want 404 listing the endpoints", res.StatusCode, body)
	}
}

func TestOverHTTP(t *testing.T) {
	srv := httptest.NewServer(NewHandler(fakeSource{agent: agent(true, plugin("a", api.Ready))}))
	defer srv.Close()
	for _, path := range []string{StartupPath, ReadinessPath, LivenessPath} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body Response
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || len(body.Plugins) != 1 {
			t.Errorf("GET %s = %d %+v %v", path, res.StatusCode, body, err)
		}

		res, err = http.Head(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n != 0 {
			t.Errorf("HEAD %s = %d with %d body bytes, want 200 and none", path, res.StatusCode, n)
		}
	}
}

// A control socket that stops answering holds readiness back, named with
// why; one that answers shows as up.
func TestControlSocketInReadiness(t *testing.T) {
	a := agent(true, plugin("ip-conflict", api.Ready))
	a.ControlSocket = &api.Component{Error: "the control socket has not answered for 6s: no answer"}
	res, body, _ := serve(t, fakeSource{agent: a}, http.MethodGet, ReadinessPath)
	want := []Component{{Name: api.ControlSocketComponent, State: "down", Error: a.ControlSocket.Error}}
	if res.StatusCode != http.StatusServiceUnavailable || !reflect.DeepEqual(body.WaitingFor, []string{"control-socket"}) || !reflect.DeepEqual(body.Components, want) {
		t.Errorf("socket down: %d waiting %v components %+v", res.StatusCode, body.WaitingFor, body.Components)
	}
	a.ControlSocket = &api.Component{Up: true}
	res, body, _ = serve(t, fakeSource{agent: a}, http.MethodGet, ReadinessPath)
	if res.StatusCode != http.StatusOK || len(body.WaitingFor) != 0 || len(body.Components) != 1 || body.Components[0].State != "up" {
		t.Errorf("socket up: %d waiting %v components %+v", res.StatusCode, body.WaitingFor, body.Components)
	}
}
