package check

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// fakeDetectors answers from a table keyed by detector name and address.
// It stands in for the supervisor, whose real plugins are tested in
// core/supervisor and test/.
type fakeDetectors struct {
	list    []supervisor.Detector
	answers answerTable
	barrier *barrier
	mu      sync.Mutex
	seen    []sdk.CheckRequest
}

// answerTable is the fake's table: each detector's answer to a request.
type answerTable = map[string]func(sdk.CheckRequest) (sdk.CheckResult, error)

func (f *fakeDetectors) Detectors() []supervisor.Detector { return f.list }

func (f *fakeDetectors) Check(ctx context.Context, name string, req sdk.CheckRequest) (sdk.CheckResult, error) {
	f.mu.Lock()
	f.seen = append(f.seen, req)
	f.mu.Unlock()
	if f.barrier != nil {
		if err := f.barrier.wait(ctx); err != nil {
			return sdk.CheckResult{}, err
		}
	}
	return f.answers[name](req)
}

// barrier releases its waiters only once n of them have arrived: a run
// that is not parallel never gets there.
type barrier struct {
	mu   sync.Mutex
	n    int
	done chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, done: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.n--
	if b.n == 0 {
		close(b.done)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("barrier: %w", ctx.Err())
	}
}

type nopMetrics struct {
	mu       sync.Mutex
	counters map[string]float64
	verdict  string
}

func (m *nopMetrics) Check(v string, _ float64) { m.verdict = v }
func (m *nopMetrics) IncrCounter(name string, v float64, labels map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counters == nil {
		m.counters = map[string]float64{}
	}
	m.counters[fmt.Sprintf("%s %v", name, labels)] += v
}

func answer(v sdk.Verdict, reason string) func(sdk.CheckRequest) (sdk.CheckResult, error) {
	return func(sdk.CheckRequest) (sdk.CheckResult, error) {
		return sdk.CheckResult{Verdict: v, Reason: reason}, nil
	}
}

func fail(err error) func(sdk.CheckRequest) (sdk.CheckResult, error) {
	return func(sdk.CheckRequest) (sdk.CheckResult, error) { return sdk.CheckResult{}, err }
}

func det(name, policy string, available bool) supervisor.Detector {
	return supervisor.Detector{Name: name, FailurePolicy: policy, Available: available}
}

func request(addrs ...string) api.Check {
	req := api.Check{Interface: "eth0", Netns: "/var/run/netns/w"}
	for _, a := range addrs {
		addr, gw, _ := strings.Cut(a, " via ")
		va := api.CheckAddress{Address: netip.MustParsePrefix(addr)}
		if gw != "" {
			va.Gateway = netip.MustParseAddr(gw)
		}
		req.Addresses = append(req.Addresses, va)
	}
	return req
}

func TestRun(t *testing.T) {
	unavailable := fmt.Errorf("x: %w", supervisor.ErrUnavailable)
	timeout := fmt.Errorf("x: Check did not answer within its timeout of 1s: %w", supervisor.ErrTimeout)
	tests := []struct {
		name      string
		detectors []supervisor.Detector
		answers   answerTable
		want      string   // overall
		wantEach  []string // per detector of the first address
		counter   string
	}{
		{"all pass", []supervisor.Detector{det("a", "fail-closed", true), det("b", "fail-closed", true)},
			answerTable{"a": answer(sdk.VerdictPass, ""), "b": answer(sdk.VerdictPass, "")},
			"pass", []string{"pass", "pass"}, ""},
		{"one blocks", []supervisor.Detector{det("a", "fail-closed", true), det("b", "fail-closed", true)},
			answerTable{"a": answer(sdk.VerdictBlock, "in use"), "b": answer(sdk.VerdictPass, "")},
			"block", []string{"block", "pass"}, "check_detector_results_total map[detector:a verdict:block]"},
		{"skip stays skip and does not block", []supervisor.Detector{det("a", "fail-closed", true)},
			answerTable{"a": answer(sdk.VerdictSkip, "no gateway")},
			"pass", []string{"skip"}, ""},
		{"detector cannot decide: never a pass, even fail-open", []supervisor.Detector{det("a", "fail-open", true)},
			answerTable{"a": answer(sdk.VerdictError, "cannot probe eth0: down")},
			"block", []string{"error"}, "check_errors_total map[detector:a reason:detector]"},
		{"unavailable, fail-closed", []supervisor.Detector{det("a", "fail-closed", true)},
			answerTable{"a": fail(unavailable)},
			"block", []string{"error"}, "check_errors_total map[detector:a reason:unavailable]"},
		{"unavailable, fail-open", []supervisor.Detector{det("a", "fail-open", true)},
			answerTable{"a": fail(unavailable)},
			"pass", []string{"skip"}, "check_detector_skipped_total map[detector:a]"},
		{"timeout, fail-closed", []supervisor.Detector{det("a", "fail-closed", true)},
			answerTable{"a": fail(timeout)},
			"block", []string{"error"}, "check_errors_total map[detector:a reason:timeout]"},
		{"timeout, fail-open", []supervisor.Detector{det("a", "fail-open", true)},
			answerTable{"a": fail(timeout)},
			"pass", []string{"skip"}, ""},
		{"not running, fail-closed", []supervisor.Detector{det("a", "fail-closed", false)},
			nil, "block", []string{"error"}, ""},
		{"not running, fail-open", []supervisor.Detector{det("a", "fail-open", false)},
			nil, "pass", []string{"skip"}, ""},
		{"other call error is not skipped by fail-open", []supervisor.Detector{det("a", "fail-open", true)},
			answerTable{"a": fail(fmt.Errorf("Check: bad request"))},
			"block", []string{"error"}, "check_errors_total map[detector:a reason:call]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &nopMetrics{}
			resp := Run(context.Background(), &fakeDetectors{list: tt.detectors, answers: tt.answers}, m, request("10.0.0.7/24 via 10.0.0.1"))
			if string(resp.Verdict) != tt.want || m.verdict != tt.want {
				t.Errorf("verdict %q (metrics %q), want %q: %+v", resp.Verdict, m.verdict, tt.want, resp)
			}
			got := resp.Addresses[0]
			if got.Address != "10.0.0.7/24" || got.Gateway != "10.0.0.1" {
				t.Errorf("address result names %q via %q", got.Address, got.Gateway)
			}
			for i, want := range tt.wantEach {
				d := got.Detectors[i]
				if string(d.Verdict) != want || d.Name != tt.detectors[i].Name {
					t.Errorf("detector %d: %+v, want verdict %q", i, d, want)
				}
				if d.Verdict != "pass" && d.Reason == "" {
					t.Errorf("detector %d: verdict %q without a reason", i, d.Verdict)
				}
			}
			if tt.counter != "" && m.counters[tt.counter] != 1 {
				t.Errorf("counter %q = %v, want 1 (have %v)", tt.counter, m.counters[tt.counter], m.counters)
			}
		})
	}
}

func TestRunIsParallelAcrossAddressesAndDetectors(t *testing.T) {
	// Two addresses (one per family) times two detectors: four calls that
	// can only finish if all four are in flight at once.
	f := &fakeDetectors{
		list:    []supervisor.Detector{det("ip-conflict", "fail-closed", true), det("gateway-detector", "fail-closed", true)},
		answers: answerTable{"ip-conflict": answer(sdk.VerdictPass, ""), "gateway-detector": answer(sdk.VerdictPass, "")},
		barrier: newBarrier(4),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := Run(ctx, f, &nopMetrics{}, request("10.0.0.7/24 via 10.0.0.1", "2001:db8::7/64 via 2001:db8::1"))
	if resp.Verdict != "pass" {
		t.Fatalf("verdict %q: %+v", resp.Verdict, resp)
	}
	for _, req := range f.seen {
		if req.Interface != "eth0" || req.Netns != "/var/run/netns/w" {
			t.Errorf("request %+v lost the interface or netns", req)
		}
	}
}

func TestBlockWinsOverError(t *testing.T) {
	f := &fakeDetectors{
		list: []supervisor.Detector{det("a", "fail-closed", true), det("b", "fail-closed", false)},
		answers: answerTable{
			"a": func(r sdk.CheckRequest) (sdk.CheckResult, error) {
				if r.Address.Addr().Is4() {
					return sdk.CheckResult{Verdict: sdk.VerdictBlock, Reason: "in use"}, nil
				}
				return sdk.CheckResult{Verdict: sdk.VerdictPass}, nil
			},
		},
	}
	resp := Run(context.Background(), f, &nopMetrics{}, request("10.0.0.7/24", "2001:db8::7/64"))
	if resp.Addresses[0].Verdict != "block" || resp.Addresses[1].Verdict != "error" || resp.Verdict != "block" {
		t.Errorf("got %q / %q overall %q; want block / error, block", resp.Addresses[0].Verdict, resp.Addresses[1].Verdict, resp.Verdict)
	}
}
