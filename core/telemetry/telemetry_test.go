package telemetry

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func newT(t *testing.T) *Telemetry {
	t.Helper()
	tel, err := New(Options{Version: "1.2.3", Commit: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

// series finds the series name{want...} (exactly those labels) in a gather.
func series(t *testing.T, tel *Telemetry, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := tel.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func counter(t *testing.T, tel *Telemetry, name string, lbls map[string]string) float64 {
	t.Helper()
	m := series(t, tel, name, lbls)
	if m == nil || m.Counter == nil {
		t.Fatalf("no counter %s%v", name, lbls)
	}
	return m.GetCounter().GetValue()
}

func gauge(t *testing.T, tel *Telemetry, name string, lbls map[string]string) float64 {
	t.Helper()
	m := series(t, tel, name, lbls)
	if m == nil || m.Gauge == nil {
		t.Fatalf("no gauge %s%v", name, lbls)
	}
	return m.GetGauge().GetValue()
}

func summaryCount(t *testing.T, tel *Telemetry, name string, lbls map[string]string) (uint64, float64) {
	t.Helper()
	m := series(t, tel, name, lbls)
	if m == nil || m.Summary == nil {
		t.Fatalf("no summary %s%v", name, lbls)
	}
	return m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum()
}

// exercise touches every method, so that the scrape holds every family.
func exercise(tel *Telemetry) {
	tel.ConfigReloaded(true)
	tel.ConfigReloaded(false)
	tel.Check("pass", 0.101)
	tel.Check("block", 0.003)
	tel.PluginState("ip-conflict", api.Ready, 0)
	tel.PluginState("gateway-detector", api.Failed, 1)
	tel.PluginRestarted("gateway-detector")
	tel.PluginCall("ip-conflict", "Check", 0.1, nil)
	tel.PluginCall("ip-conflict", "Health", 0.001, errors.New("boom"))
	tel.PluginSamples("ip-conflict", []sdk.Sample{
		{Name: "conflicts_total", Type: sdk.Counter, Value: 3, Labels: map[string]string{"family": "ipv4"}, Help: "Addresses found in use."},
		{Name: "probe_sockets", Type: sdk.Gauge, Value: 2, Help: "Open probe sockets."},
		{Name: "probe_rtt_seconds", Type: sdk.Summary, Observations: []float64{0.00002, 0.0001}, Help: "Round trip of answered probes."},
		{Name: "Bad-Name", Type: sdk.Gauge, Value: 1},
	})
	tel.SetHelp("probes_sent_total", "Probes sent.")
	tel.IncrCounter("probes_sent_total", 5, map[string]string{"family": "ipv6"})
	tel.SetGauge("checks_in_flight", 1, nil)
	tel.SetHelp("checks_in_flight", "Checks running now.")
	tel.Observe("detector_duration_seconds", 0.02, map[string]string{"detector": "ip-conflict"})
}

func scrape(t *testing.T, h http.Handler) []byte {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("scrape = %s: %s", res.Status, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text format", ct)
	}
	return body
}

func TestScrapeParsesAndLintsClean(t *testing.T) {
	tel := newT(t)
	exercise(tel)
	body := scrape(t, tel.Handler())

	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	want := []string{
		"spiderpool_build_info", "spiderpool_uptime_seconds", "spiderpool_config_reloads_total",
		"spiderpool_checks_total", "spiderpool_check_duration_seconds",
		"spiderpool_plugin_up", "spiderpool_plugin_state", "spiderpool_plugin_restarts_total",
		"spiderpool_plugin_call_duration_seconds", "spiderpool_plugin_call_errors_total",
		"spiderpool_plugin_samples_rejected_total",
		"spiderpool_conflicts_total", "spiderpool_probe_sockets", "spiderpool_probe_rtt_seconds",
		"spiderpool_probes_sent_total", "spiderpool_checks_in_flight", "spiderpool_detector_duration_seconds",
	}
	for _, name := range want {
		if _, ok := families[name]; !ok {
			t.Errorf("scrape lacks %s", name)
		}
	}
	for name, mf := range families {
		if !strings.HasPrefix(name, Prefix) {
			t.Errorf("%s lacks the %s prefix", name, Prefix)
		}
		if mf.GetHelp() == "" || mf.GetHelp() == name && name != "spiderpool_detector_duration_seconds" {
			t.Errorf("%s has no real help text: %q", name, mf.GetHelp())
		}
	}
	if got := families["spiderpool_conflicts_total"].GetHelp(); got != "Addresses found in use." {
		t.Errorf("a plugin's help = %q, want the sample's", got)
	}
	if got := families["spiderpool_probes_sent_total"].GetHelp(); got != "Probes sent." {
		t.Errorf("SetHelp help = %q", got)
	}
}

func TestBuildInfoAndUptime(t *testing.T) {
	tel := newT(t)
	if v := gauge(t, tel, "spiderpool_build_info", map[string]string{"version": "1.2.3", "commit": "abc123", "go_version": runtime.Version()}); v != 1 {
		t.Errorf("build_info = %v, want 1", v)
	}
	first := gauge(t, tel, "spiderpool_uptime_seconds", nil)
	second := gauge(t, tel, "spiderpool_uptime_seconds", nil)
	if first <= 0 || second < first {
		t.Errorf("uptime %v then %v: want positive and growing at each scrape", first, second)
	}

	anon, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v := gauge(t, anon, "spiderpool_build_info", map[string]string{"version": "unknown", "commit": "unknown", "go_version": runtime.Version()}); v != 1 {
		t.Errorf("build_info without a version = %v, want 1 labelled unknown", v)
	}
}

func TestSeriesDeclaredUpFront(t *testing.T) {
	tel := newT(t)
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"spiderpool_config_reloads_total", map[string]string{"result": "success"}},
		{"spiderpool_config_reloads_total", map[string]string{"result": "failure"}},
		{"spiderpool_checks_total", map[string]string{"verdict": "pass"}},
		{"spiderpool_checks_total", map[string]string{"verdict": "block"}},
	} {
		if v := counter(t, tel, tc.name, tc.labels); v != 0 {
			t.Errorf("%s%v = %v before any event, want 0", tc.name, tc.labels, v)
		}
	}
	if n, _ := summaryCount(t, tel, "spiderpool_check_duration_seconds", nil); n != 0 {
		t.Errorf("check_duration_seconds count = %d, want 0", n)
	}
}

func TestOwnRegistry(t *testing.T) {
	a, b := newT(t), newT(t) // two on the default registry would clash
	a.ConfigReloaded(true)
	if v := counter(t, b, "spiderpool_config_reloads_total", map[string]string{"result": "success"}); v != 0 {
		t.Errorf("a reload on one Telemetry shows in another: %v", v)
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), Prefix) {
			t.Errorf("%s is on the default registry", mf.GetName())
		}
	}
}

func TestConfigReloadsAndChecks(t *testing.T) {
	tel := newT(t)
	tel.ConfigReloaded(true)
	tel.ConfigReloaded(true)
	tel.ConfigReloaded(false)
	tel.Check("pass", 0.1)
	tel.Check("block", 0.2)
	tel.Check("block", 0.3)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"spiderpool_config_reloads_total", map[string]string{"result": "success"}, 2},
		{"spiderpool_config_reloads_total", map[string]string{"result": "failure"}, 1},
		{"spiderpool_checks_total", map[string]string{"verdict": "pass"}, 1},
		{"spiderpool_checks_total", map[string]string{"verdict": "block"}, 2},
	} {
		if got := counter(t, tel, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	n, sum := summaryCount(t, tel, "spiderpool_check_duration_seconds", nil)
	if n != 3 || sum < 0.59 || sum > 0.61 {
		t.Errorf("check_duration_seconds = %d observations summing %v, want 3 and 0.6", n, sum)
	}
}

func TestPluginState(t *testing.T) {
	tests := []struct {
		st     api.PluginState
		wantUp float64
	}{
		{api.Starting, 0}, {api.Ready, 1}, {api.Degraded, 1},
		{api.Failed, 0}, {api.Restarting, 0}, {api.Disabled, 0},
	}
	tel := newT(t)
	for _, tt := range tests {
		tel.PluginState("p", tt.st, 0)
		if got := gauge(t, tel, "spiderpool_plugin_up", map[string]string{"plugin": "p"}); got != tt.wantUp {
			t.Errorf("%s: plugin_up = %v, want %v", tt.st, got, tt.wantUp)
		}
		for _, s := range api.AllPluginStates {
			want := 0.0
			if s == tt.st {
				want = 1
			}
			if got := gauge(t, tel, "spiderpool_plugin_state", map[string]string{"plugin": "p", "state": string(s)}); got != want {
				t.Errorf("%s: plugin_state{state=%s} = %v, want %v", tt.st, s, got, want)
			}
		}
	}
	if got := counter(t, tel, "spiderpool_plugin_restarts_total", map[string]string{"plugin": "p"}); got != 0 {
		t.Errorf("restarts_total = %v before any restart, want 0", got)
	}
}

func TestRestartsCountedOnce(t *testing.T) {
	tel := newT(t)
	lbl := map[string]string{"plugin": "p"}
	steps := []struct {
		do   func()
		want float64
	}{
		{func() { tel.PluginState("p", api.Starting, 0) }, 0},
		{func() { tel.PluginRestarted("p") }, 1},
		{func() { tel.PluginState("p", api.Ready, 1) }, 1},      // already counted
		{func() { tel.PluginState("p", api.Ready, 3) }, 3},      // catches up
		{func() { tel.PluginState("p", api.Ready, 2) }, 3},      // never goes back
		{func() { tel.PluginRestarted("p") }, 4},                // 4th restart
		{func() { tel.PluginState("p", api.Restarting, 4) }, 4}, // same one
	}
	for i, s := range steps {
		s.do()
		if got := counter(t, tel, "spiderpool_plugin_restarts_total", lbl); got != s.want {
			t.Fatalf("step %d: restarts_total = %v, want %v", i, got, s.want)
		}
	}
}

func TestAgentMetricsValidated(t *testing.T) {
	var logs bytes.Buffer
	tel, err := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})})
	if err != nil {
		t.Fatal(err)
	}
	tel.IncrCounter("probes", 1, nil)          // no _total
	tel.SetGauge("checks_total", 1, nil)       // the agent's own counter
	tel.IncrCounter("negative_total", -1, nil) // negative
	tel.Observe("lat_seconds", 1, map[string]string{"quantile": "x"})
	tel.IncrCounter("probes", 1, nil) // logged once only
	mfs, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "spiderpool_probes", "spiderpool_negative_total", "spiderpool_lat_seconds":
			t.Errorf("invalid metric %s was emitted", mf.GetName())
		case "spiderpool_checks_total":
			if mf.GetType() != dto.MetricType_COUNTER {
				t.Errorf("checks_total became a %s", mf.GetType())
			}
		}
	}
	if n := strings.Count(logs.String(), "dropped a metric of the agent"); n != 4 {
		t.Errorf("logged %d drops, want 4 (one per kind):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `counter \"probes\" must end in _total`) {
		t.Errorf("log does not say why:\n%s", logs.String())
	}
}

// A name accepted once skips the name rules on later emits; the labels and
// the type of each emit are still held to the rules.
func TestAgentMetricsValidatedAfterFirstUse(t *testing.T) {
	tel := newT(t)
	tel.IncrCounter("seen_total", 1, map[string]string{"a": "1"})
	tel.IncrCounter("seen_total", 1, map[string]string{"__a": "1"}) // reserved label name
	tel.IncrCounter("seen_total", -1, map[string]string{"a": "1"})  // negative
	tel.Observe("seen_total", 1, nil)                               // another type
	tel.IncrCounter("seen_total", 2, map[string]string{"a": "1"})
	mfs, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spiderpool_seen_total" {
			continue
		}
		if mf.GetType() != dto.MetricType_COUNTER || len(mf.GetMetric()) != 1 {
			t.Fatalf("seen_total = %v", mf)
		}
	}
	if got := counter(t, tel, "spiderpool_seen_total", map[string]string{"a": "1"}); got != 3 {
		t.Errorf("seen_total{a=1} = %v, want 3 (the bad emits dropped)", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	tel := newT(t)
	h := tel.Handler()
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			plugin := "p" + strconv.Itoa(g%2)
			for i := range 200 {
				tel.PluginSamples(plugin, []sdk.Sample{
					{Name: "n_total", Type: sdk.Counter, Value: float64(i), Labels: map[string]string{"a": "1", "b": "2"}},
					{Name: "g", Type: sdk.Gauge, Value: float64(i)},
				})
				tel.PluginState(plugin, api.Ready, i/50)
				tel.PluginCall(plugin, "Check", 0.001, nil)
				tel.Check("pass", 0.001)
				if i%20 == 0 {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, MetricsPath, nil))
					if rec.Code != 200 {
						t.Errorf("scrape = %d", rec.Code)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := counter(t, tel, "spiderpool_checks_total", map[string]string{"verdict": "pass"}); got != 800 {
		t.Errorf("checks_total = %v, want 800", got)
	}
}
