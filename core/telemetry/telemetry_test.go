package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
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

func TestPluginCall(t *testing.T) {
	tel := newT(t)
	tel.PluginCall("p", "Check", 0.5, nil)
	lbl := map[string]string{"plugin": "p", "method": "Check"}
	if got := counter(t, tel, "spiderpool_plugin_call_errors_total", lbl); got != 0 {
		t.Errorf("errors after a good call = %v, want 0", got)
	}
	tel.PluginCall("p", "Check", 1.5, errors.New("unavailable"))
	if got := counter(t, tel, "spiderpool_plugin_call_errors_total", lbl); got != 1 {
		t.Errorf("errors after a failed call = %v, want 1", got)
	}
	if n, sum := summaryCount(t, tel, "spiderpool_plugin_call_duration_seconds", lbl); n != 2 || sum != 2 {
		t.Errorf("call duration = %d observations summing %v, want 2 and 2", n, sum)
	}
}

func TestCounterDelta(t *testing.T) {
	tests := []struct {
		name  string
		last  float64
		seen  bool
		v     float64
		delta float64
	}{
		{"first sample is added whole", 0, false, 7, 7},
		{"first sample at zero", 0, false, 0, 0},
		{"increase", 7, true, 10, 3},
		{"no change", 10, true, 10, 0},
		{"lower: the plugin restarted", 10, true, 4, 4},
		{"restarted to zero", 10, true, 0, 0},
		{"fractional", 1.5, true, 2.25, 0.75},
	}
	for _, tt := range tests {
		if got := counterDelta(tt.last, tt.seen, tt.v); got != tt.delta {
			t.Errorf("%s: counterDelta(%v, %v, %v) = %v, want %v", tt.name, tt.last, tt.seen, tt.v, got, tt.delta)
		}
	}
}

func TestPluginCounterReemission(t *testing.T) {
	type step struct {
		value     float64 // cumulative value the plugin reports
		restarted bool    // the supervisor says the plugin restarted first
		want      float64 // the agent's counter afterwards
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"grows", []step{{value: 2, want: 2}, {value: 5, want: 5}, {value: 5, want: 5}, {value: 9, want: 9}}},
		{"reset seen as a lower value", []step{{value: 10, want: 10}, {value: 3, want: 13}, {value: 4, want: 14}}},
		{"reset to zero", []step{{value: 10, want: 10}, {value: 0, want: 10}, {value: 2, want: 12}}},
		{"restart announced, new value higher than the old one",
			[]step{{value: 3, want: 3}, {value: 5, restarted: true, want: 8}, {value: 6, want: 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := newT(t)
			for i, s := range tt.steps {
				if s.restarted {
					tel.PluginRestarted("ip-conflict")
				}
				tel.PluginSamples("ip-conflict", []sdk.Sample{{Name: "probes_sent_total", Type: sdk.Counter, Value: s.value,
					Labels: map[string]string{"family": "ipv4", "interface": "eth0"}}})
				got := counter(t, tel, "spiderpool_probes_sent_total", map[string]string{"plugin": "ip-conflict", "family": "ipv4", "interface": "eth0"})
				if got != s.want {
					t.Fatalf("step %d (value %v): counter = %v, want %v", i, s.value, got, s.want)
				}
			}
		})
	}
}

func TestCountersAreKeptPerSeriesAndPlugin(t *testing.T) {
	tel := newT(t)
	send := func(plugin, family string, v float64) {
		tel.PluginSamples(plugin, []sdk.Sample{{Name: "errors_total", Type: sdk.Counter, Value: v, Labels: map[string]string{"family": family}}})
	}
	send("a", "ipv4", 5)
	send("a", "ipv6", 1)
	send("b", "ipv4", 2)
	send("a", "ipv4", 6)
	send("b", "ipv4", 1) // b restarted; a is not affected
	for _, tc := range []struct {
		plugin, family string
		want           float64
	}{{"a", "ipv4", 6}, {"a", "ipv6", 1}, {"b", "ipv4", 3}} {
		if got := counter(t, tel, "spiderpool_errors_total", map[string]string{"plugin": tc.plugin, "family": tc.family}); got != tc.want {
			t.Errorf("%s/%s = %v, want %v", tc.plugin, tc.family, got, tc.want)
		}
	}
}

func TestLabelMerging(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   map[string]string // nil: rejected
	}{
		{"no labels", nil, map[string]string{"plugin": "p"}},
		{"labels kept", map[string]string{"family": "ipv4", "interface": "eth0.100"},
			map[string]string{"plugin": "p", "family": "ipv4", "interface": "eth0.100"}},
		{"own plugin label kept as exported_plugin", map[string]string{"plugin": "spoof"},
			map[string]string{"plugin": "p", "exported_plugin": "spoof"}},
		{"exported_plugin alone is kept", map[string]string{"exported_plugin": "x"},
			map[string]string{"plugin": "p", "exported_plugin": "x"}},
		{"plugin and exported_plugin together", map[string]string{"plugin": "a", "exported_plugin": "b"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := newT(t)
			name := "widgets" + strconv.Itoa(i)
			tel.PluginSamples("p", []sdk.Sample{{Name: name, Type: sdk.Gauge, Value: 42, Labels: tt.labels}})
			m := series(t, tel, Prefix+name, tt.want)
			if tt.want == nil {
				if series(t, tel, Prefix+name, map[string]string{"plugin": "p"}) != nil || m != nil {
					t.Fatal("a rejected sample was emitted")
				}
				if got := counter(t, tel, "spiderpool_plugin_samples_rejected_total", map[string]string{"plugin": "p", "reason": RejectLabel}); got != 1 {
					t.Errorf("rejected{reason=label} = %v, want 1", got)
				}
				return
			}
			if m == nil || m.GetGauge().GetValue() != 42 {
				t.Fatalf("no series %s%v = 42", Prefix+name, tt.want)
			}
		})
	}
}

func TestLabelOrderDoesNotSplitASeries(t *testing.T) {
	tel := newT(t)
	for i := 0; i < 50; i++ { // map order varies between calls
		tel.PluginSamples("p", []sdk.Sample{{Name: "g", Type: sdk.Gauge, Value: float64(i),
			Labels: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}})
	}
	mfs, err := tel.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "spiderpool_g" && len(mf.GetMetric()) != 1 {
			t.Fatalf("spiderpool_g has %d series, want 1", len(mf.GetMetric()))
		}
	}
	if got := gauge(t, tel, "spiderpool_g", map[string]string{"plugin": "p", "a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}); got != 49 {
		t.Errorf("gauge = %v, want the last value 49", got)
	}
}

func TestPluginGaugesAndSummaries(t *testing.T) {
	tel := newT(t)
	tel.PluginSamples("p", []sdk.Sample{
		{Name: "sockets", Type: sdk.Gauge, Value: 3},
		{Name: "rtt_seconds", Type: sdk.Summary, Observations: []float64{0.25, 0.5}},
	})
	tel.PluginSamples("p", []sdk.Sample{
		{Name: "sockets", Type: sdk.Gauge, Value: 1},
		{Name: "rtt_seconds", Type: sdk.Summary, Observations: []float64{0.25}},
	})
	lbl := map[string]string{"plugin": "p"}
	if got := gauge(t, tel, "spiderpool_sockets", lbl); got != 1 {
		t.Errorf("gauge = %v, want the last value 1", got)
	}
	if n, sum := summaryCount(t, tel, "spiderpool_rtt_seconds", lbl); n != 3 || sum != 1 {
		t.Errorf("summary = %d observations summing %v, want 3 and 1", n, sum)
	}
}

func TestRejectedSamples(t *testing.T) {
	tests := []struct {
		name   string
		sample sdk.Sample
		reason string
	}{
		{"camelCase", sdk.Sample{Name: "probesSent_total", Type: sdk.Counter, Value: 1}, RejectName},
		{"dash", sdk.Sample{Name: "probes-sent_total", Type: sdk.Counter, Value: 1}, RejectName},
		{"empty name", sdk.Sample{Name: "", Type: sdk.Gauge}, RejectName},
		{"prefix given", sdk.Sample{Name: "spiderpool_x", Type: sdk.Gauge}, RejectName},
		{"counter without _total", sdk.Sample{Name: "probes", Type: sdk.Counter, Value: 1}, RejectName},
		{"gauge with _total", sdk.Sample{Name: "sockets_total", Type: sdk.Gauge}, RejectName},
		{"unknown type", sdk.Sample{Name: "x", Type: "histogram"}, RejectType},
		{"bad label name", sdk.Sample{Name: "x", Type: sdk.Gauge, Labels: map[string]string{"Bad-Label": "v"}}, RejectLabel},
		{"reserved label name", sdk.Sample{Name: "x", Type: sdk.Gauge, Labels: map[string]string{"__name__": "v"}}, RejectLabel},
		{"quantile on a summary", sdk.Sample{Name: "x_seconds", Type: sdk.Summary, Observations: []float64{1}, Labels: map[string]string{"quantile": "0.5"}}, RejectLabel},
		{"label value not UTF-8", sdk.Sample{Name: "x", Type: sdk.Gauge, Labels: map[string]string{"iface": "\xff"}}, RejectLabel},
		{"negative counter", sdk.Sample{Name: "x_total", Type: sdk.Counter, Value: -1}, RejectValue},
		{"agent's own name", sdk.Sample{Name: "checks_total", Type: sdk.Counter, Value: 1}, RejectConflict},
		{"agent's own name, other type", sdk.Sample{Name: "plugin_up", Type: sdk.Gauge, Value: 1}, RejectConflict},
		{"type differs from an earlier sample", sdk.Sample{Name: "seen_before", Type: sdk.Summary, Observations: []float64{1}}, RejectConflict},
		{"collides with a summary's _count", sdk.Sample{Name: "rtt_seconds_count", Type: sdk.Gauge}, RejectConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := newT(t)
			tel.PluginSamples("other", []sdk.Sample{
				{Name: "seen_before", Type: sdk.Gauge, Value: 1},
				{Name: "rtt_seconds", Type: sdk.Summary, Observations: []float64{1}},
			})
			tel.PluginSamples("p", []sdk.Sample{tt.sample, {Name: "fine", Type: sdk.Gauge, Value: 1}})
			if got := counter(t, tel, "spiderpool_plugin_samples_rejected_total", map[string]string{"plugin": "p", "reason": tt.reason}); got != 1 {
				t.Errorf("rejected{reason=%s} = %v, want 1", tt.reason, got)
			}
			if got := gauge(t, tel, "spiderpool_fine", map[string]string{"plugin": "p"}); got != 1 {
				t.Errorf("a good sample beside a bad one was not emitted")
			}
			if _, err := tel.Gather(); err != nil {
				t.Errorf("gather after a rejected sample: %v", err)
			}
		})
	}
}

func TestSeriesLimit(t *testing.T) {
	tel := newT(t)
	batch := make([]sdk.Sample, 0, MaxSeriesPerPlugin+5)
	for i := range MaxSeriesPerPlugin + 5 {
		batch = append(batch, sdk.Sample{Name: "g", Type: sdk.Gauge, Value: 1, Labels: map[string]string{"i": strconv.Itoa(i)}})
	}
	tel.PluginSamples("p", batch)
	if got := counter(t, tel, "spiderpool_plugin_samples_rejected_total", map[string]string{"plugin": "p", "reason": RejectLimit}); got != 5 {
		t.Errorf("rejected{reason=limit} = %v, want 5", got)
	}
	tel.PluginSamples("p", batch[:1]) // an existing series still updates
	tel.PluginSamples("q", batch[:1]) // another plugin has its own budget
	if got := gauge(t, tel, "spiderpool_g", map[string]string{"plugin": "q", "i": "0"}); got != 1 {
		t.Errorf("another plugin's series = %v, want 1", got)
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

func TestFetch(t *testing.T) {
	tel := newT(t)
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, tel.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)

	body, err := Fetch(context.Background(), host, port)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Contains(body, []byte("spiderpool_build_info{")) {
		t.Errorf("Fetch body lacks build info:\n%s", body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil || len(problems) != 0 {
		t.Errorf("fetched metrics lint: %v %v", problems, err)
	}
}

func TestFetchNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	_, err = Fetch(context.Background(), "127.0.0.1", port)
	want := "nothing answers on 127.0.0.1:" + strconv.Itoa(port) +
		": metrics may be disabled (set SPIDERPOOL_ENABLED_METRIC=true or metrics { enabled = true })"
	if err == nil || err.Error() != want {
		t.Fatalf("Fetch = %v, want %q", err, want)
	}
	var ns *NotServingError
	if !errors.As(err, &ns) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v is not a NotServingError wrapping ECONNREFUSED", err)
	}
}

func TestFetchBadStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)
	_, err := Fetch(context.Background(), host, port)
	if err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Fatalf("Fetch from a 404 = %v, want an error naming the status", err)
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

// TestNameFloodIsBounded: a plugin sending endless new metric names, valid
// and invalid, grows neither the series nor the warnings the agent keeps,
// and logs one warning per reason; every drop is counted. (The warn-once
// map was keyed by the name: 86 MB to 360 MB in 2 minutes.)
func TestNameFloodIsBounded(t *testing.T) {
	var logs bytes.Buffer
	tel, err := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})})
	if err != nil {
		t.Fatal(err)
	}
	const rounds, perRound = 20, 1000
	n := 0
	for range rounds {
		batch := make([]sdk.Sample, 0, 2*perRound)
		for range perRound {
			n++
			batch = append(batch,
				sdk.Sample{Name: fmt.Sprintf("flood_%d", n), Type: sdk.Gauge, Value: 1},
				sdk.Sample{Name: fmt.Sprintf("Bad-Name-%d", n), Type: sdk.Gauge, Value: 1})
		}
		tel.PluginSamples("p", batch)
	}
	tel.mu.Lock()
	warned, series, types := len(tel.warned), len(tel.series["p"]), len(tel.types)
	tel.mu.Unlock()
	if warned > 2 {
		t.Errorf("%d warn-once keys after %d distinct bad names, want at most 2 (one per reason)", warned, n)
	}
	if series != MaxSeriesPerPlugin {
		t.Errorf("%d series kept, want the cap %d", series, MaxSeriesPerPlugin)
	}
	if types > MaxSeriesPerPlugin+len(own) {
		t.Errorf("%d metric names known, want at most %d", types, MaxSeriesPerPlugin+len(own))
	}
	if lines := strings.Count(logs.String(), "\n"); lines > 2 {
		t.Errorf("%d warning lines, want at most 2:\n%s", lines, logs.String())
	}
	if got := counter(t, tel, "spiderpool_plugin_samples_rejected_total", map[string]string{"plugin": "p", "reason": RejectName}); got != float64(n) {
		t.Errorf("rejected{reason=name} = %v, want %d", got, n)
	}
	if got := counter(t, tel, "spiderpool_plugin_samples_rejected_total", map[string]string{"plugin": "p", "reason": RejectLimit}); got != float64(n-MaxSeriesPerPlugin) {
		t.Errorf("rejected{reason=limit} = %v, want %d", got, n-MaxSeriesPerPlugin)
	}
}

func TestPluginLogSuppressed(t *testing.T) {
	tel := newT(t)
	tel.PluginLogSuppressed("p", 3)
	tel.PluginLogSuppressed("p", 4)
	if got := counter(t, tel, "spiderpool_plugin_log_lines_suppressed_total", map[string]string{"plugin": "p"}); got != 7 {
		t.Errorf("suppressed = %v, want 7", got)
	}
}
