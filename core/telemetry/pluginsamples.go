package telemetry

// A plugin's samples: how they are checked, bounded and re-emitted under
// the agent's namespace. The agent's own metrics are in telemetry.go.

import (
	"fmt"
	"math"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// MaxSeriesPerPlugin bounds how many series one plugin may create, so that a
// plugin with an unbounded label cannot exhaust the agent's memory. Samples
// for new series past it are rejected (reason "limit").
const MaxSeriesPerPlugin = 2000

// seriesKey names one series of one plugin: labels is the canonical form
// of its label set (sorted name=value pairs).
type seriesKey struct {
	plugin, name, labels string
}

// PluginSamples re-emits a plugin's samples as spiderpool_<name> with the
// label plugin="<plugin>" added:
//
//   - counters arrive cumulative since the plugin started: the increase
//     since the last sample of the same series is added; a value lower than
//     the last one means the plugin restarted, and it is added whole;
//   - gauges are set;
//   - summaries observe each of their observations.
//
// A sample with an invalid name, type, label or value, or one whose name is
// the agent's own or already used with another type, is dropped and counted
// in spiderpool_plugin_samples_rejected_total{plugin,reason}; the first drop
// of each kind is logged.
func (t *Telemetry) PluginSamples(plugin string, samples []sdk.Sample) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range samples {
		reason, why := t.admit(plugin, s)
		if reason != "" {
			t.reject(plugin, s.Name, reason, why)
			continue
		}
		full := Prefix + s.Name
		lbls := pluginLabels(plugin, s.Labels)
		key := seriesKey{plugin: plugin, name: s.Name, labels: canonical(lbls)}
		if reason, why := t.track(key); reason != "" {
			t.reject(plugin, s.Name, reason, why)
			continue
		}
		t.types[full] = s.Type
		if s.Help != "" && t.help[full] == "" {
			t.help[full] = s.Help
		}
		ml := labels(lbls)
		switch s.Type {
		case sdk.Counter:
			last, seen := t.last[key]
			t.last[key] = s.Value
			t.metrics.IncrCounterWithLabels([]string{s.Name}, float32(counterDelta(last, seen, s.Value)), ml)
		case sdk.Gauge:
			t.metrics.SetPrecisionGaugeWithLabels([]string{s.Name}, s.Value, ml)
		case sdk.Summary:
			for _, o := range s.Observations {
				if !math.IsNaN(o) && !math.IsInf(o, 0) {
					t.metrics.AddSampleWithLabels([]string{s.Name}, float32(o), ml)
				}
			}
		}
	}
}

// counterDelta is what to add to the agent's counter for a plugin's
// cumulative value v, given the last value seen for the same series: all
// of v the first time and after a reset (v below the last value, so the
// plugin restarted), else the increase.
func counterDelta(last float64, seen bool, v float64) float64 {
	if !seen || v < last {
		return v
	}
	return v - last
}

// admit says why a plugin's sample cannot be re-emitted, or "" when it can.
func (t *Telemetry) admit(plugin string, s sdk.Sample) (reason, why string) {
	switch s.Type {
	case sdk.Counter, sdk.Gauge, sdk.Summary:
	default:
		return RejectType, fmt.Sprintf("unknown sample type %q", s.Type)
	}
	if reason, why := checkName(s.Name, s.Type); reason != "" {
		return reason, why
	}
	if _, ok := own[s.Name]; ok {
		return RejectConflict, fmt.Sprintf("%s%s is the agent's own metric", Prefix, s.Name)
	}
	if reason, why := t.checkType(Prefix+s.Name, s.Type); reason != "" {
		return reason, why
	}
	if reason, why := checkLabels(s.Labels, s.Type); reason != "" {
		return reason, why
	}
	if _, ok := s.Labels[exportedPrefix+PluginLabel]; ok {
		if _, ok := s.Labels[PluginLabel]; ok {
			return RejectLabel, fmt.Sprintf("labels %q and %q together: %q is where the agent keeps the plugin's own %q", PluginLabel, exportedPrefix+PluginLabel, exportedPrefix+PluginLabel, PluginLabel)
		}
	}
	if s.Type == sdk.Counter && (s.Value < 0 || math.IsNaN(s.Value) || math.IsInf(s.Value, 0)) {
		return RejectValue, fmt.Sprintf("counter value %v is not a finite count", s.Value)
	}
	return "", ""
}

// track counts a plugin's series against MaxSeriesPerPlugin.
func (t *Telemetry) track(key seriesKey) (reason, why string) {
	seen := t.series[key.plugin]
	if _, ok := seen[key]; ok {
		return "", ""
	}
	if len(seen) >= MaxSeriesPerPlugin {
		return RejectLimit, fmt.Sprintf("the plugin already has %d series", MaxSeriesPerPlugin)
	}
	if seen == nil {
		seen = make(map[seriesKey]struct{})
		t.series[key.plugin] = seen
	}
	seen[key] = struct{}{}
	return "", ""
}

func (t *Telemetry) reject(plugin, name, reason, why string) {
	t.metrics.IncrCounterWithLabels([]string{mPluginRejected}, 1, labels(map[string]string{PluginLabel: plugin, labelReason: reason}))
	t.warnOnce("plugin:"+plugin+":"+reason, "dropped a plugin's metric sample; later drops for the same reason are only counted in "+Prefix+mPluginRejected, "plugin", plugin, "metric", truncate(name, maxNameLength), "reason", why)
}

// forgetCounters drops the last values of a plugin's counters, so that the
// next sample of each is taken whole. Caller holds t.mu.
func (t *Telemetry) forgetCounters(plugin string) {
	for k := range t.last {
		if k.plugin == plugin {
			delete(t.last, k)
		}
	}
}

// pluginLabels is a sample's labels with plugin="<plugin>" added; a label
// of the sample's own called plugin becomes exported_plugin.
func pluginLabels(plugin string, lbls map[string]string) map[string]string {
	out := make(map[string]string, len(lbls)+1)
	for k, v := range lbls {
		if k == PluginLabel {
			k = exportedPrefix + PluginLabel
		}
		out[k] = v
	}
	out[PluginLabel] = plugin
	return out
}

func canonical(m map[string]string) string {
	var b strings.Builder
	for _, l := range labels(m) {
		b.WriteString(l.Name)
		b.WriteByte(0)
		b.WriteString(l.Value)
		b.WriteByte(0)
	}
	return b.String()
}
