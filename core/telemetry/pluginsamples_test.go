package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

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
