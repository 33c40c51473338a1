package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type handler struct {
	b   Backend
	log hclog.Logger
	mux *http.ServeMux
}

// NewHandler serves the control API over b. log receives one debug line per
// request and the backend's failures; nil logs nothing.
func NewHandler(b Backend, log hclog.Logger) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	h := &handler{b: b, log: log, mux: http.NewServeMux()}
	h.route(api.StatusPath, http.MethodGet, h.status)
	h.route(api.ShutdownPath, http.MethodPost, h.shutdown)
	h.route(api.ReloadPath, http.MethodPost, h.reload)
	h.route(api.CheckPath, http.MethodPost, h.check)
	h.mux.HandleFunc(api.PprofPath, h.pprof)
	if ib, ok := b.(IPAMBackend); ok {
		h.routeIPAM(ib)
		if sb, ok := b.(IPAMStoreBackend); ok {
			h.routeIPAMStore(sb)
		}
		if wb, ok := b.(IPAMWatchBackend); ok {
			h.routeIPAMWatch(wb)
		}
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: fmt.Sprintf("no control endpoint at %s", r.URL.Path)})
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	h.mux.ServeHTTP(rec, r)
	// Asked first: the arguments of a call at a level that is off still
	// cost every request their boxing (a burst of checks is a burst of
	// requests).
	if h.log.IsDebug() {
		h.log.Debug("control request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "duration", time.Since(start))
	}
}

// route serves path for one method only; other methods answer 405.
func (h *handler) route(path, method string, fn http.HandlerFunc) {
	h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: fmt.Sprintf("%s %s is not allowed: use %s", r.Method, path, method)})
			return
		}
		fn(w, r)
	})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	a := h.b.Status(r.Context())
	if a.PID == 0 {
		a.PID = os.Getpid()
	}
	if a.Plugins == nil {
		a.Plugins = []api.Plugin{}
	}
	writeJSON(w, http.StatusOK, a)
}

func (h *handler) shutdown(w http.ResponseWriter, r *http.Request) {
	if err := h.b.Shutdown(r.Context()); err != nil {
		h.fail(w, "shutdown", err, http.StatusInternalServerError)
		return
	}
	h.log.Info("shutdown requested over the control socket")
	writeJSON(w, http.StatusAccepted, api.ShutdownResponse{PID: os.Getpid()})
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	// The daemon's log says why a reload was refused whoever asked, as it
	// does for SIGHUP: the operator who ran `reload` may not be the one
	// reading the log.
	h.log.Info("reload requested over the control socket")
	if err := h.b.Reload(r.Context()); err != nil {
		if !errors.Is(err, ErrNotReady) {
			h.log.Error("reload failed; the running configuration stays", "error", err)
		}
		h.fail(w, "reload", err, http.StatusUnprocessableEntity)
		return
	}
	writeJSON(w, http.StatusOK, api.ReloadResponse{Status: "reloaded"})
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	req, err := decodeCheck(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeJSON(w, http.StatusRequestEntityTooLarge, api.ErrorBody{Error: fmt.Sprintf("the request body exceeds %d bytes (1 MiB)", api.MaxBodyBytes)})
		return
	case err != nil:
		badRequest(w, err)
		return
	}
	valid, err := req.Validate()
	if err != nil {
		badRequest(w, err)
		return
	}
	resp, err := h.b.Check(r.Context(), valid)
	if err != nil {
		h.fail(w, "check", err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func badRequest(w http.ResponseWriter, err error) {
	body := api.ErrorBody{Error: err.Error(), Code: api.CodeBadRequest}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		body.Field = fe.Field
	}
	writeJSON(w, http.StatusBadRequest, body)
}

// fail answers a backend error: 503 for ErrNotReady, else code.
func (h *handler) fail(w http.ResponseWriter, op string, err error, code int) {
	if errors.Is(err, ErrNotReady) {
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		h.log.Warn("control request failed", "op", op, "error", err)
	}
	writeJSON(w, code, api.ErrorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		body, _ = json.Marshal(api.ErrorBody{Error: "encode the answer: " + err.Error()})
	}
	writeRawJSON(w, code, body)
}

// writeRawJSON answers body, JSON already.
func writeRawJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}
