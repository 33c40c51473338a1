package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/httpserve"
)

// fakeBackend is a Backend with scripted answers that records its calls.
type fakeBackend struct {
	agent       api.Agent
	shutdownErr error
	reloadErr   error
	checkErr    error
	checkResp   api.CheckResult
	onShutdown  func()

	mu        sync.Mutex
	got       []api.Check
	shutdowns int
	reloads   int
}

func (f *fakeBackend) Status(context.Context) api.Agent { return f.agent }

func (f *fakeBackend) Shutdown(context.Context) error {
	f.mu.Lock()
	f.shutdowns++
	f.mu.Unlock()
	if f.shutdownErr == nil && f.onShutdown != nil {
		f.onShutdown()
	}
	return f.shutdownErr
}

func (f *fakeBackend) Reload(context.Context) error {
	f.mu.Lock()
	f.reloads++
	f.mu.Unlock()
	return f.reloadErr
}

func (f *fakeBackend) Check(_ context.Context, req api.Check) (api.CheckResult, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.mu.Unlock()
	return f.checkResp, f.checkErr
}

// calls returns what the backend was asked so far.
func (f *fakeBackend) calls() (shutdowns, reloads int, got []api.Check) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdowns, f.reloads, append([]api.Check(nil), f.got...)
}

func jsonDecoder(s string) *json.Decoder {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec
}

// sockPath is a socket path in a fresh directory that does not exist yet.
func sockPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "spc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "run", "spiderpool.sock")
}

// startAgent serves b on a fresh socket until the test ends.
func startAgent(t *testing.T, b Backend) (path string) {
	t.Helper()
	path = sockPath(t)
	ln, err := Listen(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, NewHandler(b, nil)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return path
}

// staleSocket leaves a socket file that nothing listens on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("no stale socket at %s: %v", path, err)
	}
}

func TestListenCreatesDirAndSocket(t *testing.T) {
	path := sockPath(t)
	ln, err := Listen(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if dir.Mode().Perm() != 0o750 {
		t.Errorf("socket directory mode = %o, want 750", dir.Mode().Perm())
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with mode 0600", fi.Mode())
	}
}

func TestListenRemovesStaleSocket(t *testing.T) {
	path := sockPath(t)
	staleSocket(t, path)
	ln, err := Listen(context.Background(), path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, NewHandler(&fakeBackend{agent: api.Agent{PID: 77}}, nil)) }()
	a, err := (&api.Client{SocketPath: path}).Status(context.Background())
	if err != nil || a.PID != 77 {
		t.Errorf("status after replacing a stale socket = %+v, %v", a, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

func TestListenRefusesLiveAgent(t *testing.T) {
	path := startAgent(t, &fakeBackend{agent: api.Agent{PID: 4242, Started: true}})
	ln, err := Listen(context.Background(), path)
	if err == nil {
		ln.Close()
		t.Fatal("a second Listen on a live agent's socket succeeded")
	}
	want := fmt.Sprintf("another spiderpool-agent is running (pid 4242) on %s", path)
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	var running *AlreadyRunningError
	if !errors.As(err, &running) || running.PID != 4242 {
		t.Errorf("error %v is not an AlreadyRunningError with pid 4242", err)
	}
	// The running agent was left alone.
	if a, err := (&api.Client{SocketPath: path}).Status(context.Background()); err != nil || a.PID != 4242 {
		t.Errorf("the first agent no longer answers: %+v, %v", a, err)
	}
}

func TestListenRefusesWhatIsNotAStaleSocket(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{"regular file", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o750)
			if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "the path exists and is a regular file, not a socket: refusing to replace it"},
		{"directory", func(t *testing.T, path string) {
			if err := os.MkdirAll(path, 0o750); err != nil {
				t.Fatal(err)
			}
		}, "the path exists and is a directory, not a socket"},
		{"symbolic link", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o750)
			if err := os.Symlink("/nonexistent", path); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link, not a socket"},
		{"socket of another program", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o750)
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.NotFoundHandler()}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
		}, "is in use but does not answer as a spiderpool-agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			tt.setup(t, path)
			before, _ := os.Lstat(path)
			ln, err := Listen(context.Background(), path)
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to name %s and say %q", err, path, tt.wantErr)
			}
			after, serr := os.Lstat(path)
			if serr != nil || !os.SameFile(before, after) {
				t.Errorf("Listen touched %s: %v", path, serr)
			}
		})
	}
}

func TestListenPathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("x", 120) + "/s.sock"
	if _, err := Listen(context.Background(), path); err == nil || !strings.Contains(err.Error(), "at most 107") {
		t.Errorf("Listen on a %d-byte path = %v, want a length error", len(path), err)
	}
}

func TestCloseLeavesAReplacedSocket(t *testing.T) {
	path := sockPath(t)
	ln, err := Listen(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// Someone removed our socket and another process bound the path.
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing our listener removed the other process's socket: %v", err)
	}
}

func TestClientNoDaemon(t *testing.T) {
	missing := sockPath(t)
	stale := sockPath(t)
	staleSocket(t, stale)
	for _, path := range []string{missing, stale} {
		c := &api.Client{SocketPath: path}
		want := fmt.Sprintf("no spiderpool-agent answers on %s: is it running?", path)
		var nr *api.NotRunningError
		if _, err := c.Status(context.Background()); !errors.As(err, &nr) || nr.Error() != want {
			t.Errorf("Status on %s = %v, want %q", path, err, want)
		}
		if _, err := c.Shutdown(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Shutdown on %s = %v, want %q", path, err, want)
		}
		if err := c.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Reload on %s = %v", path, err)
		}
		if _, code, err := c.Check(context.Background(), api.CheckRequest{}); code != 0 || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check on %s = %d, %v", path, code, err)
		}
	}
}

func TestStatus(t *testing.T) {
	agent := api.Agent{Version: "1.0.0", PID: 31337, Started: true,
		Plugins: []api.Plugin{{Name: "ip-conflict", Kind: "detector", State: api.Ready, PID: 99}}}
	path := startAgent(t, &fakeBackend{agent: agent})
	got, err := (&api.Client{SocketPath: path}).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 31337 || got.Version != "1.0.0" || !got.Started || len(got.Plugins) != 1 || got.Plugins[0].Name != "ip-conflict" {
		t.Errorf("status = %+v", got)
	}

	// A backend that leaves the pid out still answers with the daemon's.
	path = startAgent(t, &fakeBackend{})
	got, err = (&api.Client{SocketPath: path}).Status(context.Background())
	if err != nil || got.PID != os.Getpid() {
		t.Errorf("status pid = %d, %v; want %d", got.PID, err, os.Getpid())
	}
	rec := serveOnce(t, &fakeBackend{}, http.MethodGet, api.StatusPath, "")
	if !strings.Contains(rec.Body.String(), `"plugins":[]`) || !strings.Contains(rec.Body.String(), fmt.Sprintf(`"pid":%d`, os.Getpid())) {
		t.Errorf("status body = %s, want a pid and an empty plugin list", rec.Body)
	}
}

func TestShutdown(t *testing.T) {
	// As the daemon does: Shutdown begins the stop (ends Serve's context)
	// and returns at once; the answer still reaches the client.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &fakeBackend{onShutdown: cancel}
	path := sockPath(t)
	ln, err := Listen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, NewHandler(b, nil)) }()

	pid, err := (&api.Client{SocketPath: path}).Shutdown(context.Background())
	if err != nil || pid != os.Getpid() {
		t.Fatalf("Shutdown = %d, %v; want %d", pid, err, os.Getpid())
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after the stop: %v", err)
	}
	if n, _, _ := b.calls(); n != 1 {
		t.Errorf("backend Shutdown called %d times", n)
	}

	rec := serveOnce(t, &fakeBackend{}, http.MethodPost, api.ShutdownPath, "")
	if rec.Code != http.StatusAccepted || rec.Body.String() != fmt.Sprintf("{\"pid\":%d}\n", os.Getpid()) {
		t.Errorf("shutdown = %d %s", rec.Code, rec.Body)
	}
	rec = serveOnce(t, &fakeBackend{shutdownErr: errors.New("already stopping")}, http.MethodPost, api.ShutdownPath, "")
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "already stopping") {
		t.Errorf("failed shutdown = %d %s", rec.Code, rec.Body)
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
	}{
		{"reloaded", nil, 200},
		{"bad config", errors.New("/etc/spiderpool/agent.hcl:3:1: unknown attribute \"helth_port\"; did you mean \"health_port\"?"), 422},
		{"not ready", fmt.Errorf("reload: %w", ErrNotReady), 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{reloadErr: tt.err}
			path := startAgent(t, b)
			err := (&api.Client{SocketPath: path}).Reload(context.Background())
			var apiErr *api.APIError
			switch {
			case tt.err == nil && err != nil:
				t.Fatalf("Reload = %v", err)
			case tt.err != nil && (!errors.As(err, &apiErr) || apiErr.Status != tt.wantCode || apiErr.ErrorBody.Error != tt.err.Error()):
				t.Fatalf("Reload = %v, want an api.APIError %d carrying %q", err, tt.wantCode, tt.err)
			}
			if _, n, _ := b.calls(); n != 1 {
				t.Errorf("backend Reload called %d times", n)
			}
			var log strings.Builder
			rec := httptest.NewRecorder()
			NewHandler(&fakeBackend{reloadErr: tt.err}, hclog.New(&hclog.LoggerOptions{Output: &log})).
				ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.ReloadPath, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("code = %d, want %d", rec.Code, tt.wantCode)
			}
			// A refusal leaves its reason in the daemon's log, as SIGHUP's does.
			if refused := tt.wantCode == 422; refused != strings.Contains(log.String(), "reload failed; the running configuration stays") ||
				(refused && !strings.Contains(log.String(), "agent.hcl:3:1")) {
				t.Errorf("log after a %d reload:\n%s", tt.wantCode, log.String())
			}
		})
	}
}

func TestCheck(t *testing.T) {
	resp := api.CheckResult{Verdict: api.VerdictBlock, DurationMs: 101.5, Addresses: []api.AddressResult{{
		Address: "10.0.0.7/24", Gateway: "10.0.0.1", Verdict: api.VerdictBlock,
		Detectors: []api.DetectorResult{
			{Name: "ip-conflict", Verdict: "block", Reason: "10.0.0.7 is in use by 52:54:00:12:34:56 on eth0",
				Evidence: map[string]string{"mac": "52:54:00:12:34:56"}, DurationMs: 0.02},
			{Name: "gateway-detector", Verdict: api.VerdictSkip},
		},
	}}}
	b := &fakeBackend{checkResp: resp}
	path := startAgent(t, b)
	req := api.CheckRequest{Interface: "eth0.100", Netns: "/var/run/netns/pod1", Addresses: []api.AddressRequest{
		{Address: "10.0.0.7/24", Gateway: "10.0.0.1"},
		{Address: "fd00::7/64"},
	}}
	got, code, err := (&api.Client{SocketPath: path}).Check(context.Background(), req)
	if err != nil || code != 200 {
		t.Fatalf("Check = %d, %v", code, err)
	}
	if !reflect.DeepEqual(got, resp) {
		t.Errorf("response = %+v, want %+v", got, resp)
	}
	want := api.Check{Interface: "eth0.100", Netns: "/var/run/netns/pod1", Addresses: []api.CheckAddress{
		{Address: netip.MustParsePrefix("10.0.0.7/24"), Gateway: netip.MustParseAddr("10.0.0.1")},
		{Address: netip.MustParsePrefix("fd00::7/64")},
	}}
	if _, _, calls := b.calls(); len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
		t.Errorf("backend got %+v, want %+v", calls, want)
	}
}

func TestCheckBackendErrors(t *testing.T) {
	tests := []struct {
		err      error
		wantCode int
	}{
		{fmt.Errorf("plugins starting: %w", ErrNotReady), 503},
		{ErrNotReady, 503},
		{errors.New("detector crashed"), 500},
	}
	for _, tt := range tests {
		path := startAgent(t, &fakeBackend{checkErr: tt.err})
		_, code, err := (&api.Client{SocketPath: path}).Check(context.Background(), api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "10.0.0.7/24"}}})
		var apiErr *api.APIError
		if code != tt.wantCode || !errors.As(err, &apiErr) || apiErr.ErrorBody.Error != tt.err.Error() {
			t.Errorf("backend error %v: got %d %v, want %d with the message", tt.err, code, err, tt.wantCode)
		}
	}
}

func serveOnce(t *testing.T, b Backend, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	NewHandler(b, nil).ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s Content-Type = %q", method, path, ct)
	}
	return rec
}

func TestMalformedCheckBodies(t *testing.T) {
	long := `{"interface":"eth0","addresses":[` + strings.Repeat(`{"address":"10.0.0.1/24"},`, api.MaxAddresses) + `{"address":"10.0.0.2/24"}]}`
	tests := []struct {
		name, body, field, says string
	}{
		{"empty body", ``, "", "body is empty"},
		{"not JSON", `interface=eth0`, "", "invalid JSON"},
		{"truncated", `{"interface":"eth0"`, "", "ends too early"},
		{"an array", `[{"interface":"eth0"}]`, "", "want an object"},
		{"two objects", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"}]} {}`, "", "after the JSON value"},
		{"unknown top-level field", `{"interface":"eth0","ip":"10.0.0.7/24"}`, "ip", `unknown field "ip"`},
		{"unknown address field", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"},{"address":"10.0.0.8/24","gw":"10.0.0.1"}]}`, "addresses[1].gw", `unknown field "gw"`},
		{"interface not a string", `{"interface":7,"addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "want a string, got a JSON number"},
		{"netns not a string", `{"interface":"eth0","netns":true,"addresses":[{"address":"10.0.0.7/24"}]}`, "netns", "want a string, got a JSON bool"},
		{"addresses not a list", `{"interface":"eth0","addresses":{"address":"10.0.0.7/24"}}`, "addresses", "want a list, got a JSON object"},
		{"address not a string", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"},{"address":["10.0.0.8/24"]}]}`, "addresses[1].address", "want a string, got a JSON array"},
		{"address entry not an object", `{"interface":"eth0","addresses":["10.0.0.7/24"]}`, "addresses[0]", "want an object, got a JSON string"},
		{"no interface", `{"addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "required"},
		// What encoding/json accepts silently.
		{"duplicate key", `{"interface":"eth0","interface":"eth1","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", `the key "interface" is given twice`},
		{"duplicate address key", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","address":"10.0.0.8/24"}]}`, "addresses[0].address", "given twice"},
		{"wrong-case key", `{"Interface":"eth0","addresses":[{"address":"10.0.0.7/24"}]}`, "Interface", `keys are case-sensitive, did you mean "interface"?`},
		{"wrong-case address key", `{"interface":"eth0","addresses":[{"ADDRESS":"10.0.0.7/24"}]}`, "addresses[0].ADDRESS", `did you mean "address"?`},
		{"keys differing in case", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","Address":"10.0.0.8/24"}]}`, "addresses[0].Address", `the keys "address" and "Address" name the same field`},
		{"network address", `{"interface":"eth0","addresses":[{"address":"10.77.0.0/24"}]}`, "addresses[0].address", "network address of 10.77.0.0/24"},
		{"broadcast address", `{"interface":"eth0","addresses":[{"address":"10.77.0.255/24"}]}`, "addresses[0].address", "broadcast address of 10.77.0.0/24"},
		{"slash zero", `{"interface":"eth0","addresses":[{"address":"10.77.0.5/0"}]}`, "addresses[0].address", "/0 prefix"},
		{"IPv6 slash zero", `{"interface":"eth0","addresses":[{"address":"fd77::5/0"}]}`, "addresses[0].address", "/0 prefix"},
		{"IPv6 subnet-router anycast", `{"interface":"eth0","addresses":[{"address":"fd77::/64"}]}`, "addresses[0].address", "subnet-router anycast address of fd77::/64"},
		{"zone", `{"interface":"eth0","addresses":[{"address":"fe80::1%eth0/64"}]}`, "addresses[0].address", `carries a zone (%...): the interface is the request's interface field; give the address without it, e.g. "fe80::1/64"`},
		{"interface too long", `{"interface":"abcdefghijklmnop","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "16 bytes"},
		{"interface with a slash", `{"interface":"eth0/1","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "'/'"},
		{"interface with a space", `{"interface":"eth 0","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "' '"},
		{"interface with a colon", `{"interface":"eth0:1","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "':'"},
		{"interface dot", `{"interface":".","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "not a valid interface name"},
		{"interface dot dot", `{"interface":"..","addresses":[{"address":"10.0.0.7/24"}]}`, "interface", "not a valid interface name"},
		{"relative netns", `{"interface":"eth0","netns":"netns/pod1","addresses":[{"address":"10.0.0.7/24"}]}`, "netns", "absolute path"},
		{"no addresses", `{"interface":"eth0","addresses":[]}`, "addresses", "at least one"},
		{"addresses missing", `{"interface":"eth0"}`, "addresses", "at least one"},
		{"too many addresses", long, "addresses", "257 addresses: at most 256"},
		{"empty address", `{"interface":"eth0","addresses":[{"address":""}]}`, "addresses[0].address", "required"},
		{"bare IPv4", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"},{"address":"10.0.0.8"}]}`, "addresses[1].address", "no prefix length: give a CIDR such as 10.0.0.8/24"},
		{"bare IPv6", `{"interface":"eth0","addresses":[{"address":"fd00::8"}]}`, "addresses[0].address", "fd00::8/64"},
		{"not an address", `{"interface":"eth0","addresses":[{"address":"ten/24"}]}`, "addresses[0].address", "not a CIDR"},
		{"prefix too long", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/33"}]}`, "addresses[0].address", "not a CIDR"},
		{"unspecified", `{"interface":"eth0","addresses":[{"address":"0.0.0.0/0"}]}`, "addresses[0].address", "unspecified"},
		{"multicast", `{"interface":"eth0","addresses":[{"address":"ff02::1/64"}]}`, "addresses[0].address", "multicast"},
		{"loopback", `{"interface":"eth0","addresses":[{"address":"127.0.0.2/8"}]}`, "addresses[0].address", "loopback"},
		{"IPv4-mapped", `{"interface":"eth0","addresses":[{"address":"::ffff:10.0.0.7/120"}]}`, "addresses[0].address", "IPv4-mapped"},
		{"duplicate", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"},{"address":"fd00::7/64"},{"address":"10.0.0.7/16"}]}`, "addresses[2].address", "already addresses[0]"},
		{"gateway not an IP", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","gateway":"router"}]}`, "addresses[0].gateway", "not an IP address"},
		{"gateway as CIDR", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","gateway":"10.0.0.1/24"}]}`, "addresses[0].gateway", "not a CIDR"},
		{"gateway family", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24"},{"address":"fd00::7/64","gateway":"10.0.0.1"}]}`, "addresses[1].gateway", "gateway 10.0.0.1 is IPv4 but address fd00::7 is IPv6"},
		{"gateway is the address", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","gateway":"10.0.0.7"}]}`, "addresses[0].gateway", "the address itself"},
		{"gateway with a zone", `{"interface":"eth0","addresses":[{"address":"fd00::7/64","gateway":"fe80::1%eth0"}]}`, "addresses[0].gateway", "zone"},
		{"gateway multicast", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","gateway":"224.0.0.1"}]}`, "addresses[0].gateway", "multicast"},
		{"gateway broadcast", `{"interface":"eth0","addresses":[{"address":"10.0.0.7/24","gateway":"255.255.255.255"}]}`, "addresses[0].gateway", "broadcast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{}
			rec := serveOnce(t, b, http.MethodPost, api.CheckPath, tt.body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("code = %d, want 400; body %s", rec.Code, rec.Body)
			}
			var eb api.ErrorBody
			dec := jsonDecoder(rec.Body.String())
			if err := dec.Decode(&eb); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if eb.Field != tt.field {
				t.Errorf("field = %q, want %q (error %q)", eb.Field, tt.field, eb.Error)
			}
			if !strings.Contains(eb.Error, tt.says) {
				t.Errorf("error = %q, want it to say %q", eb.Error, tt.says)
			}
			if tt.field != "" && !strings.HasPrefix(eb.Error, tt.field+": ") {
				t.Errorf("error %q does not start with its field", eb.Error)
			}
			if len(b.got) != 0 {
				t.Error("a malformed request reached the backend")
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	body := `{"interface":"eth0","netns":"/` + strings.Repeat("a", api.MaxBodyBytes) + `","addresses":[{"address":"10.0.0.7/24"}]}`
	b := &fakeBackend{}
	rec := serveOnce(t, b, http.MethodPost, api.CheckPath, body)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "exceeds 1048576 bytes (1 MiB)") {
		t.Errorf("oversized body = %d %s, want 413", rec.Code, rec.Body)
	}
	if len(b.got) != 0 {
		t.Error("an oversized request reached the backend")
	}
	// Just under the limit is fine (and then fails validation on its merits).
	pad := api.MaxBodyBytes - len(`{"interface":"eth0","netns":"/x","addresses":[{"address":"10.0.0.7/24"}]}`)
	ok := `{"interface":"eth0","netns":"/x","addresses":[{"address":"10.0.0.7/24"}]}` + strings.Repeat(" ", pad)
	if rec := serveOnce(t, &fakeBackend{}, http.MethodPost, api.CheckPath, ok); rec.Code != 200 {
		t.Errorf("a body of exactly 1 MiB = %d %s, want 200", rec.Code, rec.Body)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	tests := []struct {
		method, path string
		wantCode     int
		wantAllow    string
	}{
		{http.MethodPost, api.StatusPath, 405, "GET"},
		{http.MethodDelete, api.StatusPath, 405, "GET"},
		{http.MethodGet, api.ShutdownPath, 405, "POST"},
		{http.MethodGet, api.ReloadPath, 405, "POST"},
		{http.MethodGet, api.CheckPath, 405, "POST"},
		{http.MethodPut, api.CheckPath, 405, "POST"},
		{http.MethodGet, "/v1/nothing", 404, ""},
		{http.MethodGet, "/", 404, ""},
	}
	for _, tt := range tests {
		b := &fakeBackend{}
		rec := serveOnce(t, b, tt.method, tt.path, "")
		if rec.Code != tt.wantCode || rec.Header().Get("Allow") != tt.wantAllow {
			t.Errorf("%s %s = %d Allow %q, want %d Allow %q", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), tt.wantCode, tt.wantAllow)
		}
		var eb api.ErrorBody
		if err := jsonDecoder(rec.Body.String()).Decode(&eb); err != nil || eb.Error == "" {
			t.Errorf("%s %s body %q is not an api.ErrorBody", tt.method, tt.path, rec.Body)
		}
		if b.shutdowns+b.reloads+len(b.got) != 0 {
			t.Errorf("%s %s reached the backend", tt.method, tt.path)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  api.CheckRequest
		want api.Check
	}{
		{"IPv4 with gateway", api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "10.0.0.7/24", Gateway: "10.0.0.1"}}},
			api.Check{Interface: "eth0", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("10.0.0.7/24"), Gateway: netip.MustParseAddr("10.0.0.1")}}}},
		{"IPv6 without gateway, netns by proc path", api.CheckRequest{Interface: "net1", Netns: "/proc/123/ns/net", Addresses: []api.AddressRequest{{Address: "fd00::7/64"}}},
			api.Check{Interface: "net1", Netns: "/proc/123/ns/net", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("fd00::7/64")}}}},
		{"gateway outside the prefix is allowed (on-link routes)", api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "10.0.0.7/32", Gateway: "169.254.1.1"}}},
			api.Check{Interface: "eth0", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("10.0.0.7/32"), Gateway: netip.MustParseAddr("169.254.1.1")}}}},
		{"15-byte interface with a dot", api.CheckRequest{Interface: "enp0s31f6.10000", Addresses: []api.AddressRequest{{Address: "192.168.1.5/24"}}},
			api.Check{Interface: "enp0s31f6.10000", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("192.168.1.5/24")}}}},
		// Point-to-point prefixes have no network or broadcast address.
		{"/31 and /127 ends", api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "10.0.0.0/31"}, {Address: "10.0.0.3/31"}, {Address: "fd00::/127"}}},
			api.Check{Interface: "eth0", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("10.0.0.0/31")}, {Address: netip.MustParsePrefix("10.0.0.3/31")}, {Address: netip.MustParsePrefix("fd00::/127")}}}},
		{"IPv6 last address is a host", api.CheckRequest{Interface: "eth0", Addresses: []api.AddressRequest{{Address: "fd00::ffff:ffff:ffff:ffff/64"}, {Address: "10.0.0.254/24"}, {Address: "10.0.1.0/23"}}},
			api.Check{Interface: "eth0", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("fd00::ffff:ffff:ffff:ffff/64")}, {Address: netip.MustParsePrefix("10.0.0.254/24")}, {Address: netip.MustParsePrefix("10.0.1.0/23")}}}},
	}
	for _, tt := range tests {
		got, err := tt.req.Validate()
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Validate = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	many := api.CheckRequest{Interface: "eth0"}
	for i := range api.MaxAddresses {
		many.Addresses = append(many.Addresses, api.AddressRequest{Address: fmt.Sprintf("10.0.%d.%d/16", i/250, i%250+1)})
	}
	if _, err := many.Validate(); err != nil {
		t.Errorf("%d addresses: %v", api.MaxAddresses, err)
	}
}

// Every request is logged at debug level, and only when debug is on: the
// call is skipped, not just its output, when it is off.
func TestRequestLoggedAtDebugOnly(t *testing.T) {
	for _, level := range []hclog.Level{hclog.Debug, hclog.Info} {
		var log strings.Builder
		rec := httptest.NewRecorder()
		NewHandler(&fakeBackend{}, hclog.New(&hclog.LoggerOptions{Output: &log, Level: level})).
			ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.StatusPath, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		if logged := strings.Contains(log.String(), "control request") && strings.Contains(log.String(), api.StatusPath); logged != (level == hclog.Debug) {
			t.Errorf("level %s: logged %v:\n%s", level, logged, log.String())
		}
	}
}
