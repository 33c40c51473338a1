// Package telemetry is the agent's metrics: hashicorp/go-metrics writing to
// its Prometheus sink, on a registry of the agent's own (never the global
// default one), served in the Prometheus text format.
//
// Every name is snake_case under the spiderpool_ prefix, which this package
// adds; counters end in _total and durations are in seconds. The agent's own
// metrics carry help text; a plugin's samples are re-emitted under
// spiderpool_<name> with a plugin="<plugin>" label (see PluginSamples).
//
// Series never expire while the agent runs: the sink is built with
// Expiration 0, which in go-metrics v0.7.0 means "never untracked".
//
// A Telemetry is safe for concurrent use.
package telemetry

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Prefix starts every metric name the agent serves.
const Prefix = "spiderpool_"

// namespace is Prefix as go-metrics' service name (it joins key parts with _).
const namespace = "spiderpool"

// PluginLabel is the label PluginSamples adds to a plugin's samples. A
// sample's own label of that name is kept as exported_plugin, as Prometheus
// does with conflicting target labels.
const PluginLabel = "plugin"

// Reasons in spiderpool_plugin_samples_rejected_total.
const (
	RejectName     = "name"     // not snake_case, wrong _total suffix, or carries the prefix
	RejectType     = "type"     // unknown sample type
	RejectLabel    = "label"    // invalid label name or value
	RejectValue    = "value"    // a counter value that is negative or not finite
	RejectConflict = "conflict" // the name is the agent's own or already has another type
	RejectLimit    = "limit"    // the plugin has MaxSeriesPerPlugin series already
)

// Names of the agent's own metrics, without the prefix.
const (
	mBuildInfo       = "build_info"
	mUptime          = "uptime_seconds"
	mConfigReloads   = "config_reloads_total"
	mPluginUp        = "plugin_up"
	mPluginState     = "plugin_state"
	mPluginRestarts  = "plugin_restarts_total"
	mPluginCallDur   = "plugin_call_duration_seconds"
	mPluginCallErrs  = "plugin_call_errors_total"
	mPluginRejected  = "plugin_samples_rejected_total"
	mPluginLogDrops  = "plugin_log_lines_suppressed_total"
	mChecks          = "checks_total"
	mCheckDuration   = "check_duration_seconds"
	labelResult      = "result"
	labelVerdict     = "verdict"
	labelState       = "state"
	labelMethod      = "method"
	labelReason      = "reason"
	exportedPrefix   = "exported_"
	maxNameLength    = 200
	maxLabelsPerName = 32
)

// own describes the agent's own metrics: their type and help text. Their
// names are reserved: a plugin cannot emit them.
var own = map[string]struct {
	typ  sdk.SampleType
	help string
}{
	mBuildInfo:      {sdk.Gauge, "Always 1; the labels say which build of the agent runs."},
	mUptime:         {sdk.Gauge, "Seconds since the agent started."},
	mConfigReloads:  {sdk.Counter, "Configuration reloads, by result (success or failure)."},
	mPluginUp:       {sdk.Gauge, "1 when the plugin is ready or degraded (it answers calls), else 0."},
	mPluginState:    {sdk.Gauge, "1 for the state the plugin is in, 0 for the other states."},
	mPluginRestarts: {sdk.Counter, "Times the agent restarted the plugin."},
	mPluginCallDur:  {sdk.Summary, "Duration of calls from the agent to a plugin, in seconds, by method."},
	mPluginCallErrs: {sdk.Counter, "Calls from the agent to a plugin that failed, by method."},
	mPluginRejected: {sdk.Counter, "Metric samples from a plugin that the agent dropped, by reason."},
	mPluginLogDrops: {sdk.Counter, "Log lines of a plugin that the agent dropped because the plugin logged faster than its limit."},
	mChecks:         {sdk.Counter, "Address checks answered, by verdict."},
	mCheckDuration:  {sdk.Summary, "Duration of address checks, in seconds."},
}

// Options configures New.
type Options struct {
	// Version and Commit label spiderpool_build_info.
	Version string
	Commit  string
	// Logger receives warnings about rejected samples and failed scrapes.
	// Optional: nothing is logged when nil.
	Logger hclog.Logger
}

// Telemetry records the agent's metrics and serves them.
type Telemetry struct {
	metrics *gometrics.Metrics
	reg     *prometheus.Registry
	log     hclog.Logger
	start   time.Time

	mu       sync.Mutex
	help     map[string]string         // full name -> help text
	types    map[string]sdk.SampleType // full name -> type, once first emitted
	last     map[seriesKey]float64     // last cumulative value of a plugin counter
	series   map[string]map[seriesKey]struct{}
	restarts map[string]int // restarts counted per plugin
	// warned holds the rejections already logged: one key per plugin and
	// reason (never per metric name, which a plugin controls), so that
	// a plugin sending endless unique bad names cannot grow it.
	warned map[string]bool
}

// New builds the metrics on a registry of their own and sets
// spiderpool_build_info.
func New(opts Options) (*Telemetry, error) {
	t := &Telemetry{
		reg:      prometheus.NewRegistry(),
		log:      opts.Logger,
		start:    time.Now(),
		help:     make(map[string]string, len(own)),
		types:    make(map[string]sdk.SampleType, len(own)),
		last:     make(map[seriesKey]float64),
		series:   make(map[string]map[seriesKey]struct{}),
		restarts: make(map[string]int),
		warned:   make(map[string]bool),
	}
	if t.log == nil {
		t.log = hclog.NewNullLogger()
	}
	for name, m := range own {
		t.help[Prefix+name] = m.help
		t.types[Prefix+name] = m.typ
	}

	build := labels(map[string]string{
		"version":    orUnknown(opts.Version),
		"commit":     orUnknown(opts.Commit),
		"go_version": runtime.Version(),
	})
	key := func(name string) []string { return []string{namespace, name} }
	def := func(name string) string { return own[name].help }
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
		Name: "spiderpool_go_metrics_sink",
		// Zero: series are never untracked, so a gauge set once (build
		// info, a plugin's state) stays while the agent runs.
		Expiration: 0,
		Registerer: t.reg,
		// Series declared here exist from the first scrape, at zero.
		GaugeDefinitions: []gmprom.GaugeDefinition{
			{Name: key(mBuildInfo), Help: def(mBuildInfo), ConstLabels: build},
			{Name: key(mUptime), Help: def(mUptime)},
		},
		CounterDefinitions: []gmprom.CounterDefinition{
			{Name: key(mConfigReloads), Help: def(mConfigReloads), ConstLabels: labels(map[string]string{labelResult: "failure"})},
			{Name: key(mConfigReloads), Help: def(mConfigReloads), ConstLabels: labels(map[string]string{labelResult: "success"})},
			{Name: key(mChecks), Help: def(mChecks), ConstLabels: labels(map[string]string{labelVerdict: string(sdk.VerdictBlock)})},
			{Name: key(mChecks), Help: def(mChecks), ConstLabels: labels(map[string]string{labelVerdict: string(sdk.VerdictPass)})},
		},
		SummaryDefinitions: []gmprom.SummaryDefinition{
			{Name: key(mCheckDuration), Help: def(mCheckDuration)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("register the go-metrics Prometheus sink: %w", err)
	}
	t.metrics, err = gometrics.New(&gometrics.Config{
		ServiceName:      namespace,
		FilterDefault:    true,
		TimerGranularity: time.Second,
		// No hostname prefix, no type prefix, no runtime sampling goroutine.
	}, sink)
	if err != nil {
		return nil, fmt.Errorf("set up go-metrics: %w", err)
	}
	t.metrics.SetPrecisionGaugeWithLabels([]string{mBuildInfo}, 1, build)
	return t, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Handler serves the metrics in the Prometheus text format (or any format
// the scraper negotiates) on whatever path it is mounted at: mount it at
// MetricsPath, where Fetch asks. A family that cannot be gathered is left
// out and logged rather than failing the whole scrape.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t, promhttp.HandlerOpts{
		ErrorLog:      t.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Gather implements prometheus.Gatherer: it refreshes
// spiderpool_uptime_seconds, gathers the registry and puts the help texts
// in place (the sink knows help only for series declared up front).
func (t *Telemetry) Gather() ([]*dto.MetricFamily, error) {
	t.metrics.SetPrecisionGauge([]string{mUptime}, time.Since(t.start).Seconds())
	mfs, err := t.reg.Gather()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, mf := range mfs {
		if h := t.help[mf.GetName()]; h != "" {
			mf.Help = &h
		}
	}
	return mfs, err
}

// SetHelp gives the metric name (without the prefix) a help text, for
// metrics emitted through IncrCounter, SetGauge and Observe.
func (t *Telemetry) SetHelp(name, help string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.help[Prefix+name] = help
}

// IncrCounter adds v to the counter spiderpool_<name>{labels}. name must be
// snake_case and end in _total. An invalid name, label or value is dropped
// with a warning: metrics never fail the caller.
func (t *Telemetry) IncrCounter(name string, v float64, lbls map[string]string) {
	t.emit(name, sdk.Counter, lbls, func(key []string, l []gometrics.Label) {
		t.metrics.IncrCounterWithLabels(key, float32(v), l)
	}, v)
}

// SetGauge sets the gauge spiderpool_<name>{labels} to v.
func (t *Telemetry) SetGauge(name string, v float64, lbls map[string]string) {
	t.emit(name, sdk.Gauge, lbls, func(key []string, l []gometrics.Label) {
		t.metrics.SetPrecisionGaugeWithLabels(key, v, l)
	}, 0)
}

// Observe adds an observation, in seconds for a duration, to the summary
// spiderpool_<name>{labels}.
func (t *Telemetry) Observe(name string, seconds float64, lbls map[string]string) {
	t.emit(name, sdk.Summary, lbls, func(key []string, l []gometrics.Label) {
		t.metrics.AddSampleWithLabels(key, float32(seconds), l)
	}, seconds)
}

func (t *Telemetry) emit(name string, typ sdk.SampleType, lbls map[string]string, do func([]string, []gometrics.Label), v float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	full := Prefix + name
	var reason, why string
	// A name already in use with this type passed the name and type rules
	// when it was admitted (nothing enters t.types otherwise): checks emit
	// the same few counters thousands of times a second, so the regular
	// expression and the collision look-ups run once per name.
	if have, ok := t.types[full]; !ok || have != typ {
		reason, why = checkName(name, typ)
		if reason == "" {
			reason, why = t.checkType(full, typ)
		}
	}
	if reason == "" {
		reason, why = checkLabels(lbls, typ)
	}
	if reason == "" && (typ == sdk.Counter && (v < 0 || math.IsNaN(v) || math.IsInf(v, 0))) {
		reason, why = RejectValue, fmt.Sprintf("cannot add %v to a counter", v)
	}
	if reason != "" {
		t.warnOnce("agent:"+name+":"+reason, "dropped a metric of the agent", "metric", name, "reason", why)
		return
	}
	t.types[full] = typ
	do([]string{name}, labels(lbls))
}

// ConfigReloaded counts a configuration reload in
// spiderpool_config_reloads_total{result="success"|"failure"}.
func (t *Telemetry) ConfigReloaded(ok bool) {
	result := "failure"
	if ok {
		result = "success"
	}
	t.metrics.IncrCounterWithLabels([]string{mConfigReloads}, 1, labels(map[string]string{labelResult: result}))
}

// Check counts an answered check in spiderpool_checks_total{verdict} and
// observes its duration in spiderpool_check_duration_seconds.
func (t *Telemetry) Check(verdict string, seconds float64) {
	t.metrics.IncrCounterWithLabels([]string{mChecks}, 1, labels(map[string]string{labelVerdict: verdict}))
	t.metrics.AddSample([]string{mCheckDuration}, float32(seconds))
}

// PluginState sets spiderpool_plugin_up{plugin} (1 when the plugin is ready
// or degraded, else 0) and spiderpool_plugin_state{plugin,state}, one series
// per state with 1 for the current one. restarts is the supervisor's count
// of the plugin's restarts: spiderpool_plugin_restarts_total catches up with
// it, so calling both PluginRestarted and PluginState never counts twice.
func (t *Telemetry) PluginState(plugin string, st api.PluginState, restarts int) {
	up := 0.0
	if st == api.Ready || st == api.Degraded {
		up = 1
	}
	t.metrics.SetPrecisionGaugeWithLabels([]string{mPluginUp}, up, labels(map[string]string{PluginLabel: plugin}))
	known := false
	for _, s := range api.AllPluginStates {
		v := 0.0
		if s == st {
			v, known = 1, true
		}
		t.metrics.SetPrecisionGaugeWithLabels([]string{mPluginState}, v, labels(map[string]string{PluginLabel: plugin, labelState: string(s)}))
	}
	if !known && st != "" {
		t.metrics.SetPrecisionGaugeWithLabels([]string{mPluginState}, 1, labels(map[string]string{PluginLabel: plugin, labelState: string(st)}))
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	counted := t.restarts[plugin]
	add := 0
	if restarts > counted {
		add = restarts - counted
		t.restarts[plugin] = restarts
		t.forgetCounters(plugin)
	}
	// Adding 0 makes the series exist before the first restart.
	t.metrics.IncrCounterWithLabels([]string{mPluginRestarts}, float32(add), labels(map[string]string{PluginLabel: plugin}))
}

// PluginRestarted counts a restart of the plugin in
// spiderpool_plugin_restarts_total{plugin}. The restarted plugin's counters
// start again from zero, so the next sample of each is added whole.
func (t *Telemetry) PluginRestarted(plugin string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restarts[plugin]++
	t.forgetCounters(plugin)
	t.metrics.IncrCounterWithLabels([]string{mPluginRestarts}, 1, labels(map[string]string{PluginLabel: plugin}))
}

// PluginLogSuppressed counts log lines of a plugin that the supervisor
// dropped, in spiderpool_plugin_log_lines_suppressed_total{plugin}.
func (t *Telemetry) PluginLogSuppressed(plugin string, lines int) {
	t.metrics.IncrCounterWithLabels([]string{mPluginLogDrops}, float32(lines), labels(map[string]string{PluginLabel: plugin}))
}

// truncate shortens s to n bytes for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// PluginCall records one call from the agent to a plugin:
// spiderpool_plugin_call_duration_seconds{plugin,method} and, when err is
// not nil, spiderpool_plugin_call_errors_total{plugin,method}.
func (t *Telemetry) PluginCall(plugin, method string, seconds float64, err error) {
	l := labels(map[string]string{PluginLabel: plugin, labelMethod: method})
	t.metrics.AddSampleWithLabels([]string{mPluginCallDur}, float32(seconds), l)
	failed := float32(0) // adding 0 makes the error series exist from the first call
	if err != nil {
		failed = 1
	}
	t.metrics.IncrCounterWithLabels([]string{mPluginCallErrs}, failed, l)
}

func (t *Telemetry) warnOnce(key, msg string, args ...any) {
	if t.warned[key] {
		return
	}
	t.warned[key] = true
	t.log.Warn(msg, args...)
}

// checkType refuses a type other than the one a name was first used with,
// and names that would collide with a summary's _sum and _count series.
// Caller holds t.mu.
func (t *Telemetry) checkType(full string, typ sdk.SampleType) (reason, why string) {
	if have, ok := t.types[full]; ok && have != typ {
		return RejectConflict, fmt.Sprintf("%s is already a %s, not a %s", full, have, typ)
	}
	for _, suffix := range []string{"_sum", "_count"} {
		if typ == sdk.Summary {
			if _, ok := t.types[full+suffix]; ok {
				return RejectConflict, fmt.Sprintf("a summary %s would collide with %s%s", full, full, suffix)
			}
		}
		if base, ok := strings.CutSuffix(full, suffix); ok && t.types[base] == sdk.Summary {
			return RejectConflict, fmt.Sprintf("%s collides with the summary %s", full, base)
		}
	}
	return "", ""
}

var (
	metricName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	labelName  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// checkName applies the naming rules: snake_case, no prefix (the package
// adds it), counters and only counters ending in _total.
func checkName(name string, typ sdk.SampleType) (reason, why string) {
	switch {
	case name == "" || len(name) > maxNameLength:
		return RejectName, fmt.Sprintf("name %q must be 1 to %d characters", name, maxNameLength)
	case strings.HasPrefix(name, Prefix):
		return RejectName, fmt.Sprintf("name %q must not carry the %s prefix: the agent adds it", name, Prefix)
	case !metricName.MatchString(name):
		return RejectName, fmt.Sprintf("name %q is not snake_case ([a-z][a-z0-9_]*)", name)
	case typ == sdk.Counter && !strings.HasSuffix(name, "_total"):
		return RejectName, fmt.Sprintf("counter %q must end in _total", name)
	case typ != sdk.Counter && strings.HasSuffix(name, "_total"):
		return RejectName, fmt.Sprintf("%s %q must not end in _total: only counters do", typ, name)
	}
	return "", ""
}

// checkLabels applies the label rules of the Prometheus data model.
func checkLabels(lbls map[string]string, typ sdk.SampleType) (reason, why string) {
	if len(lbls) > maxLabelsPerName {
		return RejectLabel, fmt.Sprintf("%d labels: at most %d", len(lbls), maxLabelsPerName)
	}
	for k, v := range lbls {
		switch {
		case !labelName.MatchString(k) || strings.HasPrefix(k, "__"):
			return RejectLabel, fmt.Sprintf("label name %q is not snake_case or starts with __", k)
		case typ == sdk.Summary && k == "quantile":
			return RejectLabel, `a summary cannot have a "quantile" label`
		case !utf8.ValidString(v):
			return RejectLabel, fmt.Sprintf("label %q has a value that is not UTF-8", k)
		}
	}
	return "", ""
}

// labels turns a label map into go-metrics labels sorted by name: the sink
// keys its series by the labels in the order given, so the same set must
// always come in the same order.
func labels(m map[string]string) []gometrics.Label {
	if len(m) == 0 {
		return nil
	}
	out := make([]gometrics.Label, 0, len(m))
	for k, v := range m {
		out = append(out, gometrics.Label{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
