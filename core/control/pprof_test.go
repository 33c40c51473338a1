package control

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// The profiles gops offered to every local user are
// served over the 0600 control socket instead, bounded in time and size.
func TestProfilesOverTheSocket(t *testing.T) {
	path := startAgent(t, &fakeBackend{})
	c := &api.Client{SocketPath: path}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gzipMagic := []byte{0x1f, 0x8b}
	for _, p := range []struct {
		name    string
		seconds int
	}{{"heap", 0}, {"goroutine", 0}, {"allocs", 0}, {"threadcreate", 0}, {"block", 0}, {"mutex", 0}, {"cpu", 1}, {"heap", 1}} {
		var buf bytes.Buffer
		n, err := c.Profile(ctx, p.name, p.seconds, &buf)
		if err != nil {
			t.Errorf("%s (%ds): %v", p.name, p.seconds, err)
			continue
		}
		if n == 0 || !bytes.HasPrefix(buf.Bytes(), gzipMagic) {
			t.Errorf("%s: %d bytes, not a gzipped pprof profile: %q", p.name, n, buf.Bytes()[:min(16, buf.Len())])
		}
	}
	var buf bytes.Buffer
	if _, err := c.Profile(ctx, "trace", 1, &buf); err != nil || buf.Len() == 0 {
		t.Errorf("trace: %d bytes, %v", buf.Len(), err)
	}

	// Bounds: a duration beyond the limit is a 400 naming "seconds", and
	// no profile outside the list is served.
	var apiErr *api.APIError
	if _, err := c.Profile(ctx, "cpu", 3600, &buf); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Field != "seconds" {
		t.Errorf("cpu for an hour: %v, want 400 naming seconds", err)
	}
	for _, bad := range []string{"cmdline", "symbol", ""} {
		if rec := serveOnce(t, &fakeBackend{}, http.MethodGet, api.PprofPath+bad, ""); rec.Code != http.StatusNotFound {
			t.Errorf("profile %q: %d, want 404", bad, rec.Code)
		}
	}
	// A path that climbs out of the profiles is no profile: the server's
	// mux sends it to the cleaned path, outside /v1/debug/pprof/.
	rec := httptest.NewRecorder()
	NewHandler(&fakeBackend{}, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.PprofPath+"../status", nil))
	if loc := rec.Header().Get("Location"); rec.Code == http.StatusOK || strings.HasPrefix(loc, api.PprofPath) {
		t.Errorf("profile \"../status\": %d to %q, want no profile", rec.Code, loc)
	}
	if _, err := c.Profile(ctx, "cmdline", 0, &buf); err == nil {
		t.Error("the client asked for a profile outside the list")
	}
}

// The answer is cut at its byte budget.
func TestLimitWriter(t *testing.T) {
	rec := &bytes.Buffer{}
	lw := &limitWriter{ResponseWriter: &recorderWriter{rec}, left: 10}
	if n, err := lw.Write(make([]byte, 8)); n != 8 || err != nil {
		t.Fatalf("first write = %d, %v", n, err)
	}
	if n, err := lw.Write(make([]byte, 8)); n != 2 || !errors.Is(err, errProfileTooBig) {
		t.Fatalf("write past the budget = %d, %v; want 2, errProfileTooBig", n, err)
	}
	if rec.Len() != 10 {
		t.Fatalf("%d bytes written, want 10", rec.Len())
	}
}

type recorderWriter struct{ b *bytes.Buffer }

func (r *recorderWriter) Header() http.Header         { return http.Header{} }
func (r *recorderWriter) Write(p []byte) (int, error) { return r.b.Write(p) }
func (r *recorderWriter) WriteHeader(int)             {}
