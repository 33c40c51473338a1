package control

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// The profiles gops offered to every local user are
// served over the 0600 control socket instead, bounded in time and size.
func TestProfilesOverTheSocket(t *testing.T) {
	path := startAgent(t, &fakeBackend{})
	c := &Client{SocketPath: path}
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
	res, err := c.send(ctx, http.MethodGet, PprofPath+"cpu?seconds=3600", nil)
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *APIError
	if e := apiError(res); !errors.As(e, &apiErr) || res.StatusCode != http.StatusBadRequest || apiErr.Field != "seconds" {
		t.Errorf("cpu for an hour: %d %v, want 400 naming seconds", res.StatusCode, e)
	}
	res.Body.Close()
	for _, bad := range []string{"cmdline", "symbol", "", "../status"} {
		res, err := c.send(ctx, http.MethodGet, PprofPath+bad, nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("profile %q: %d, want 404", bad, res.StatusCode)
		}
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
