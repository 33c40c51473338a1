package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"time"
)

// Profiles over the control socket. gops on TCP lets any local user read
// them (and change the GC); the 0600 control socket lets only root:
//
//	GET /v1/debug/pprof/NAME[?seconds=N]
//
// NAME is one of Profiles. cpu and trace run for N seconds (default
// DefaultProfileSeconds); the others are snapshots, or with seconds a delta
// over N seconds as net/http/pprof serves them. N is at most
// MaxProfileDuration and the answer at most MaxProfileBytes.
const (
	PprofPath             = "/v1/debug/pprof/"
	DefaultProfileSeconds = 5
	MaxProfileDuration    = 60 * time.Second
	MaxProfileBytes       = 256 << 20 // 256 MiB
)

// Profiles are the profiles the control API serves: "cpu" is
// net/http/pprof's /profile, "trace" its /trace, the others runtime/pprof's
// named profiles. block and mutex stay empty unless the rates are set.
var Profiles = []string{"heap", "goroutine", "cpu", "allocs", "block", "mutex", "threadcreate", "trace"}

// timed are the profiles that always run for a duration.
var timed = map[string]bool{"cpu": true, "trace": true}

func knownProfile(name string) bool {
	for _, p := range Profiles {
		if p == name {
			return true
		}
	}
	return false
}

// profileSeconds parses the seconds parameter of a profile request: empty
// is the default for a timed profile and a snapshot for the others.
func profileSeconds(name, s string) (int, error) {
	if s == "" {
		if timed[name] {
			return DefaultProfileSeconds, nil
		}
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > int(MaxProfileDuration/time.Second) {
		return 0, fieldErr("seconds", "%q: want a whole number of seconds from 1 to %d", s, int(MaxProfileDuration/time.Second))
	}
	return n, nil
}

func (h *handler) pprof(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("%s %s is not allowed: use GET", r.Method, r.URL.Path)})
		return
	}
	name := r.URL.Path[len(PprofPath):]
	if !knownProfile(name) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no profile %q: want one of %v", name, Profiles), Field: "profile"})
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
	lw := &limitWriter{ResponseWriter: w, left: MaxProfileBytes}
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

// errProfileTooBig ends a profile answer beyond MaxProfileBytes.
var errProfileTooBig = fmt.Errorf("the profile exceeds %d bytes", MaxProfileBytes)

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

// Profile fetches profile name over the control socket into out and returns
// the bytes written. seconds 0 means the default (DefaultProfileSeconds for
// cpu and trace, a snapshot for the others). The request's deadline is
// seconds plus the given ctx's; a 4xx is an *APIError.
func (c *Client) Profile(ctx context.Context, name string, seconds int, out io.Writer) (int64, error) {
	if !knownProfile(name) {
		return 0, fmt.Errorf("profile: no profile %q: want one of %v", name, Profiles)
	}
	path := PprofPath + name
	if seconds > 0 {
		path += "?seconds=" + strconv.Itoa(seconds)
	}
	res, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, fmt.Errorf("profile %s: %w", name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("profile %s: %w", name, apiError(res))
	}
	n, err := io.Copy(out, io.LimitReader(res.Body, MaxProfileBytes+1))
	switch {
	case err != nil:
		return n, fmt.Errorf("profile %s: read the answer: %w", name, err)
	case n > MaxProfileBytes:
		return n, fmt.Errorf("profile %s: the answer exceeds %d bytes", name, int64(MaxProfileBytes))
	}
	return n, nil
}
