package control

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// timed are the profiles that always run for a duration.
var timed = map[string]bool{"cpu": true, "trace": true}

// profileSeconds parses the seconds parameter of a profile request: empty
// is the default for a timed profile and a snapshot for the others.
func profileSeconds(name, s string) (int, error) {
	if s == "" {
		if timed[name] {
			return api.DefaultProfileSeconds, nil
		}
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > int(api.MaxProfileDuration/time.Second) {
		return 0, fieldErr("seconds", "%q: want a whole number of seconds from 1 to %d", s, int(api.MaxProfileDuration/time.Second))
	}
	return n, nil
}

func (h *handler) pprof(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: fmt.Sprintf("%s %s is not allowed: use GET", r.Method, r.URL.Path)})
		return
	}
	name := r.URL.Path[len(api.PprofPath):]
	if !api.KnownProfile(name) {
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: fmt.Sprintf("no profile %q: want one of %v", name, api.Profiles), Field: "profile"})
		return
	}
	secs, err := profileSeconds(name, r.URL.Query().Get("seconds"))
	if err != nil {
		badRequest(w, err)
		return
	}
	// Hand net/http/pprof a clean query: only the bounded seconds.
	q := url.Values{}
	if secs > 0 {
		q.Set("seconds", strconv.Itoa(secs))
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	r2.Form = nil
	lw := &limitWriter{ResponseWriter: w, left: api.MaxProfileBytes}
	h.log.Info("profile requested over the control socket", "profile", name, "seconds", secs)
	switch name {
	case "cpu":
		pprof.Profile(lw, r2)
	case "trace":
		pprof.Trace(lw, r2)
	default:
		pprof.Handler(name).ServeHTTP(lw, r2)
	}
}

// errProfileTooBig ends a profile answer beyond api.MaxProfileBytes.
var errProfileTooBig = fmt.Errorf("the profile exceeds %d bytes", api.MaxProfileBytes)

// limitWriter cuts an answer at its byte budget; the client sees a
// truncated body, which it reports as an error.
type limitWriter struct {
	http.ResponseWriter
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		p = p[:l.left]
		n, _ := l.ResponseWriter.Write(p)
		l.left -= int64(n)
		return n, errProfileTooBig
	}
	n, err := l.ResponseWriter.Write(p)
	l.left -= int64(n)
	return n, err
}
