// Package health serves the agent's health endpoints (port 5710 by default)
// on Spiderpool's paths:
//
//	GET /v1/runtime/startup    200 once initialisation has finished, else 503
//	GET /v1/runtime/readiness  200 when no plugin holds readiness back, else 503:
//	                           ready and degraded plugins answer calls, and a
//	                           disabled one was turned off on purpose (or by
//	                           its checksum); starting, failed and restarting
//	                           ones hold it back (state.Agent.Ready)
//	GET /v1/runtime/liveness   200 when Source.Live says the agent's loops run, else 503
//
// Every answer is a JSON document naming each plugin and its state, like
// CoreDNS's /ready names who is not ready, so that a failing probe says why.
// Serve the handler with core/httpserve.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

// Paths of the three probes.
const (
	StartupPath   = "/v1/runtime/startup"
	ReadinessPath = "/v1/runtime/readiness"
	LivenessPath  = "/v1/runtime/liveness"
)

// LivenessTimeout bounds Source.Live: a liveness probe answers 503 when the
// agent's loops have not answered within it.
const LivenessTimeout = time.Second

// Statuses in a Response.
const (
	StatusStarted    = "started"
	StatusStarting   = "starting"
	StatusReady      = "ready"
	StatusNotReady   = "not ready"
	StatusAlive      = "alive"
	StatusNotAlive   = "not alive"
	statusNotAllowed = "method not allowed"
)

// Source is what the health endpoints ask. The daemon implements it.
type Source interface {
	// Snapshot returns the agent's state at this moment.
	Snapshot() state.Agent
	// Live returns nil when the agent's own machinery (the supervisor loop,
	// the control socket) answers before ctx ends, or an error saying which
	// part did not.
	Live(ctx context.Context) error
}

// Response is the JSON body of every health endpoint.
type Response struct {
	// Status is the probe's answer: started/starting, ready/not ready,
	// alive/not alive.
	Status string `json:"status"`
	// Started is true once the agent's initialisation has finished.
	Started bool `json:"started"`
	// WaitingFor names the plugins that hold readiness back.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Error says why liveness failed.
	Error         string   `json:"error,omitempty"`
	Version       string   `json:"version,omitempty"`
	PID           int      `json:"pid,omitempty"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	Plugins       []Plugin `json:"plugins"`
	// Components are the parts of the agent other than plugins that
	// readiness depends on (the control socket, "control-socket"; the
	// shared IPAM store, "ipam-store").
	Components []Component `json:"components,omitempty"`
}

// Component is one non-plugin part of the agent in a Response.
type Component struct {
	Name  string `json:"name"`
	State string `json:"state"` // "up" or "down"
	Error string `json:"error,omitempty"`
}

// Plugin is one plugin's line in a Response.
type Plugin struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind,omitempty"`
	State     state.PluginState `json:"state"`
	PID       int               `json:"pid,omitempty"`
	Restarts  int               `json:"restarts"`
	LastError string            `json:"last_error,omitempty"`
	Message   string            `json:"message,omitempty"`
	Detail    json.RawMessage   `json:"detail,omitempty"`
}

type handler struct {
	src     Source
	now     func() time.Time
	timeout time.Duration // LivenessTimeout; shorter in tests
}

// NewHandler returns the handler for the three probe paths. Other paths
// answer 404, and methods other than GET and HEAD answer 405; both with a
// JSON body too.
func NewHandler(src Source) http.Handler {
	return &handler{src: src, now: time.Now, timeout: LivenessTimeout}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var probe func(context.Context, state.Agent) (int, Response)
	switch r.URL.Path {
	case StartupPath:
		probe = h.startup
	case ReadinessPath:
		probe = h.readiness
	case LivenessPath:
		probe = h.liveness
	default:
		write(w, http.StatusNotFound, Response{Status: "not found", Error: fmt.Sprintf("no health endpoint at %s: use %s, %s or %s", r.URL.Path, StartupPath, ReadinessPath, LivenessPath)})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		write(w, http.StatusMethodNotAllowed, Response{Status: statusNotAllowed, Error: r.Method + " is not allowed: use GET or HEAD"})
		return
	}
	code, resp := probe(r.Context(), h.src.Snapshot())
	write(w, code, resp)
}

func (h *handler) startup(_ context.Context, a state.Agent) (int, Response) {
	resp := h.base(a)
	if !a.Started {
		resp.Status = StatusStarting
		return http.StatusServiceUnavailable, resp
	}
	resp.Status = StatusStarted
	return http.StatusOK, resp
}

func (h *handler) readiness(_ context.Context, a state.Agent) (int, Response) {
	resp := h.base(a)
	ready, waiting := a.Ready()
	resp.WaitingFor = waiting
	if !ready {
		resp.Status = StatusNotReady
		if !a.Started {
			resp.Error = "the agent is still starting"
		}
		return http.StatusServiceUnavailable, resp
	}
	resp.Status = StatusReady
	return http.StatusOK, resp
}

func (h *handler) liveness(ctx context.Context, a state.Agent) (int, Response) {
	resp := h.base(a)
	if err := h.live(ctx); err != nil {
		resp.Status = StatusNotAlive
		resp.Error = err.Error()
		return http.StatusServiceUnavailable, resp
	}
	resp.Status = StatusAlive
	return http.StatusOK, resp
}

// live runs Source.Live bounded by LivenessTimeout, and answers at the
// timeout even when Live ignores its context. The timeout counts from when
// Live begins, and an answer that is ready when the timer fires wins: on a
// starved machine (thousands of probes, -race, 2 cores) the goroutine may
// start late, and that is not the agent being wedged.
func (h *handler) live(ctx context.Context) error {
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, h.timeout)
		defer cancel()
		close(started)
		done <- h.src.Live(lctx)
	}()
	select {
	case <-started:
	case <-ctx.Done():
		return fmt.Errorf("liveness probe abandoned: %w", ctx.Err())
	}
	t := time.NewTimer(h.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		select {
		case err := <-done:
			return err
		default:
		}
		return fmt.Errorf("the agent did not answer within %s", h.timeout)
	case <-ctx.Done():
		return fmt.Errorf("liveness probe abandoned: %w", ctx.Err())
	}
}

func (h *handler) base(a state.Agent) Response {
	resp := Response{
		Started: a.Started,
		Version: a.Version,
		PID:     a.PID,
		Plugins: make([]Plugin, 0, len(a.Plugins)),
	}
	if !a.StartedAt.IsZero() {
		if up := h.now().Sub(a.StartedAt).Seconds(); up > 0 {
			resp.UptimeSeconds = up
		}
	}
	if cs := a.ControlSocket; cs != nil {
		c := Component{Name: state.ControlSocketComponent, State: "up"}
		if !cs.Up {
			c.State, c.Error = "down", cs.Error
		}
		resp.Components = append(resp.Components, c)
	}
	if a.IPAM != nil && a.IPAM.Store != nil {
		c := Component{Name: state.IPAMStoreComponent, State: "up"}
		if !a.IPAM.Store.Up {
			c.State, c.Error = "down", a.IPAM.Store.Error
		}
		resp.Components = append(resp.Components, c)
	}
	for _, p := range a.Plugins {
		resp.Plugins = append(resp.Plugins, Plugin{
			Name:      p.Name,
			Kind:      p.Kind,
			State:     p.State,
			PID:       p.PID,
			Restarts:  p.Restarts,
			LastError: p.LastError,
			Message:   p.Message,
			Detail:    p.Detail,
		})
	}
	return resp
}

func write(w http.ResponseWriter, code int, resp Response) {
	if resp.Plugins == nil {
		resp.Plugins = []Plugin{}
	}
	body, err := json.MarshalIndent(resp, "", "  ")
	if err != nil {
		// Only an invalid Detail can fail; answer without the details.
		for i := range resp.Plugins {
			resp.Plugins[i].Detail = nil
		}
		body, _ = json.MarshalIndent(resp, "", "  ")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
