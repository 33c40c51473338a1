package sysctltuner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

// TestMain makes every proc_sys_root outside the temporary directory an
// error, so that no test in this package can reach the host's /proc/sys,
// whatever its config says (proc_sys_root defaults to /proc/sys).
func TestMain(m *testing.M) {
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	checkRoot = func(root string) error {
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			real = root
		}
		if !strings.HasPrefix(real, tmp+string(filepath.Separator)) {
			return fmt.Errorf("test guard: refusing proc_sys_root %s outside %s", root, tmp)
		}
		return nil
	}
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	root := mkTree(t, nil)
	sdktest.Run(t, New(hclog.NewNullLogger()), sdktest.Options{
		GoodConfig: fmt.Sprintf("proc_sys_root = %q\nreconcile_interval = \"1s\"\nset = { \"net.ipv4.conf.all.rp_filter\" = \"1\" }\n", root),
	})
	if got := readKey(t, root, "net/ipv4/conf/all/rp_filter"); got != "1" {
		t.Errorf("rp_filter = %q after the conformance run, want 1", got)
	}
}

// TestDriftCorrectedByLoop: a value changed behind the plugin's back is set
// back within the interval, counted and reported.
func TestDriftCorrectedByLoop(t *testing.T) {
	p, root := configuredPlugin(t, nil, `reconcile_interval = "50ms"`, both)
	key, rel := "net.ipv4.conf.all.rp_filter", "net/ipv4/conf/all/rp_filter"
	if v := mustSample(t, p, MetricDriftCorrections, map[string]string{"key": key}); v != 0 {
		t.Fatalf("drift corrections before any drift: %v", v)
	}

	writeKey(t, root, rel, "1")
	eventually(t, "drift corrected", func() bool { return readKey(t, root, rel) == "0" })
	eventually(t, "drift counted", func() bool {
		return mustSample(t, p, MetricDriftCorrections, map[string]string{"key": key}) == 1
	})
	k := statusKey(t, p.Status(context.Background()), key)
	if k.LastDrift.IsZero() || k.State != "applied" || k.Actual != "0" || k.Previous != "2" {
		t.Errorf("after drift: %+v", k)
	}
	if v := mustSample(t, p, MetricDriftCorrections, map[string]string{"key": "net.ipv4.conf.all.forwarding"}); v != 0 {
		t.Errorf("undrifted key counted: %v", v)
	}
	if v := mustSample(t, p, MetricPasses, nil); v < 2 {
		t.Errorf("passes %v, want at least 2", v)
	}

	// The counter is cumulative: a reload that changes the key's value
	// keeps it.
	mustConfigure(t, p, root, "reconcile_interval = \"50ms\"\nset = { \"net.ipv4.conf.all.rp_filter\" = \"2\" }", both)
	if v := mustSample(t, p, MetricDriftCorrections, map[string]string{"key": key}); v != 1 {
		t.Errorf("drift corrections after reload %v, want 1", v)
	}
}

// TestFailedKeyDegrades: a key whose path is a directory (which fails even
// for root) is failed; the plugin is degraded naming it, the other keys are
// applied, the failure is counted; once fixed the plugin is ready again.
func TestFailedKeyDegrades(t *testing.T) {
	p, root := configuredPlugin(t, map[string]string{"net/ipv4/conf/all/rp_filter": "", "net/ipv4/conf/all/rp_filter/x": "0\n"}, "", both)
	key := "net.ipv4.conf.all.rp_filter"

	h := p.Health(context.Background())
	if h.State != sdk.HealthDegraded || !strings.Contains(h.Message, key) || !strings.Contains(h.Message, "1 of 6") {
		t.Errorf("health %s %q, want degraded naming %s", h.State, h.Message, key)
	}
	detail, ok := h.Detail.([]tuner.KeyStatus)
	if !ok || len(detail) != 6 {
		t.Fatalf("detail %#v", h.Detail)
	}
	for _, d := range detail {
		want := tuner.StateApplied
		if d.Key == key {
			want = tuner.StateFailed
		}
		if d.State != want || (want == tuner.StateFailed) != (d.Error != "") {
			t.Errorf("detail %+v, want state %s", d, want)
		}
	}
	k := statusKey(t, p.Status(context.Background()), key)
	if k.State != "failed" || !strings.Contains(k.Error, "is a directory") {
		t.Errorf("status %+v", k)
	}
	if v := mustSample(t, p, MetricWriteFailures, map[string]string{"key": key}); v != 1 {
		t.Errorf("write failures %v, want 1", v)
	}
	if v := mustSample(t, p, MetricKeyState, map[string]string{"key": key, "state": "failed"}); v != 1 {
		t.Errorf("key_state failed = %v", v)
	}
	if v := mustSample(t, p, MetricKeys, map[string]string{"state": "failed"}); v != 1 {
		t.Errorf("keys{failed} = %v", v)
	}
	if _, err := p.applyNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := mustSample(t, p, MetricWriteFailures, map[string]string{"key": key}); v != 2 {
		t.Errorf("write failures after a second pass %v, want 2", v)
	}

	// Repair the tree: the next pass applies the key, the plugin is ready.
	if err := os.RemoveAll(filepath.Join(root, "net/ipv4/conf/all/rp_filter")); err != nil {
		t.Fatal(err)
	}
	writeKey(t, root, "net/ipv4/conf/all/rp_filter", "2")
	st, err := p.applyNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if k := statusKey(t, st, key); k.State != "applied" || k.Error != "" {
		t.Errorf("after repair: %+v", k)
	}
	if h := p.Health(context.Background()); h.State != sdk.HealthReady || h.Message != "" {
		t.Errorf("health after repair: %+v", h)
	}
	if v := mustSample(t, p, MetricWriteFailures, map[string]string{"key": key}); v != 2 {
		t.Errorf("write failures after repair %v, want still 2", v)
	}
}

// TestChildNamespaceTree: in a tree like a child network namespace's
// (no neigh/default) both gc_thresh3 keys are unsupported and the plugin
// is ready.
func TestChildNamespaceTree(t *testing.T) {
	p, _ := configuredPlugin(t, map[string]string{"net/ipv4/neigh/default/gc_thresh3": "", "net/ipv6/neigh/default/gc_thresh3": ""}, "", both)
	st := p.Status(context.Background())
	for key := range defaultKeys {
		want := "applied"
		if strings.Contains(key, "gc_thresh3") {
			want = "unsupported"
		}
		if k := statusKey(t, st, key); k.State != want || k.Error != "" {
			t.Errorf("%s: %+v, want %s", key, k, want)
		}
	}
	if h := p.Health(context.Background()); h.State != sdk.HealthReady {
		t.Errorf("health %+v", h)
	}
	if v := mustSample(t, p, MetricKeys, map[string]string{"state": "unsupported"}); v != 2 {
		t.Errorf("keys{unsupported} = %v", v)
	}
}

// TestHealthDetailJSON: the detail is a JSON list of keys with the fields
// the agent shows.
func TestHealthDetailJSON(t *testing.T) {
	root := mkTree(t, nil)
	p := newPlugin(t)
	if h := p.Health(context.Background()); h.State != sdk.HealthReady {
		t.Errorf("unconfigured health %+v", h)
	}
	mustConfigure(t, p, root, "", both)
	b, err := json.Marshal(p.Health(context.Background()).Detail)
	if err != nil {
		t.Fatal(err)
	}
	var keys []map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(keys) != 6 {
		t.Fatalf("detail %s", b)
	}
	first := keys[0]
	for _, f := range []string{"key", "path", "desired", "actual", "state", "previous", "drifts_total", "failures_total"} {
		if _, ok := first[f]; !ok {
			t.Errorf("detail entry %v lacks %q", first, f)
		}
	}
	if first["key"] != "net.ipv4.neigh.default.gc_thresh3" || first["state"] != "applied" || first["previous"] != "1024" {
		t.Errorf("first entry %v", first)
	}
}

// TestMetricsShape: every name, type and label set.
func TestMetricsShape(t *testing.T) {
	p, root := configuredPlugin(t, nil, "", both)
	samples := p.Metrics(context.Background())
	types := map[string]sdk.SampleType{}
	perKeyState := map[string]float64{}
	for _, s := range samples {
		if old, ok := types[s.Name]; ok && old != s.Type {
			t.Errorf("%s has types %s and %s", s.Name, old, s.Type)
		}
		types[s.Name] = s.Type
		if s.Help == "" {
			t.Errorf("%s has no help", s.Name)
		}
		if s.Name == MetricKeyState {
			perKeyState[s.Labels["key"]] += s.Value
		}
	}
	want := map[string]sdk.SampleType{
		MetricKeyState: sdk.Gauge, MetricKeys: sdk.Gauge, MetricDriftCorrections: sdk.Counter,
		MetricWriteFailures: sdk.Counter, MetricPasses: sdk.Counter, MetricLastReconcile: sdk.Gauge,
		MetricReconcileSeconds: sdk.Gauge,
	}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("metrics %v, want %v", types, want)
	}
	if len(perKeyState) != 6 {
		t.Errorf("key_state keys %v", perKeyState)
	}
	for k, v := range perKeyState {
		if v != 1 {
			t.Errorf("key %s: states sum to %v, want exactly one state at 1", k, v)
		}
	}
	if n := len(samples); n != 6*5+6*2+5+1+2 {
		t.Errorf("%d samples", n)
	}
	if ts := mustSample(t, p, MetricLastReconcile, nil); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last reconcile %v", ts)
	}

	// A key dropped by a reload reports 0 for every state.
	mustConfigure(t, p, root, `drop = ["net.ipv4.conf.all.arp_notify"]`, both)
	for _, s := range states {
		if v := mustSample(t, p, MetricKeyState, map[string]string{"key": "net.ipv4.conf.all.arp_notify", "state": string(s)}); v != 0 {
			t.Errorf("dropped key state %s = %v", s, v)
		}
	}
	if v := mustSample(t, p, MetricKeys, map[string]string{"state": "applied"}); v != 5 {
		t.Errorf("keys{applied} = %v after the drop", v)
	}
}

// TestBeforeConfigure: an unconfigured plugin does nothing and says so
// without errors.
func TestBeforeConfigure(t *testing.T) {
	p := newPlugin(t)
	st, err := p.applyNow(context.Background())
	if err != nil || len(st.Keys) != 0 {
		t.Errorf("Apply before Configure: %+v, %v", st, err)
	}
	if st := p.Status(context.Background()); len(st.Keys) != 0 {
		t.Errorf("Status before Configure: %+v", st)
	}
}

// TestCutShortConfigurePass: a Configure whose deadline ends before its
// pass leaves keys pending; Status then runs the pass, so no key is
// reported pending.
func TestCutShortConfigurePass(t *testing.T) {
	root := mkTree(t, nil)
	p := newPlugin(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Configure(ctx, sdk.ConfigureRequest{
		Config: rawAt(fmt.Sprintf("proc_sys_root = %q\nreconcile_interval = \"0s\"", root)), Agent: both,
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := p.Health(context.Background()); h.Detail.([]tuner.KeyStatus)[0].State != "pending" {
		t.Errorf("health detail after a cut-short pass: %+v", h.Detail)
	}
	st := p.Status(context.Background())
	for _, k := range st.Keys {
		if k.State != "applied" {
			t.Errorf("%+v", k)
		}
	}
}

// TestShutdownStopsLoop: Shutdown ends the loop goroutine; a later
// Configure is refused.
func TestShutdownStopsLoop(t *testing.T) {
	root := mkTree(t, nil)
	p := New(hclog.NewNullLogger())
	mustConfigure(t, p, root, `reconcile_interval = "10ms"`, both)
	l := p.loop
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.done:
	default:
		t.Error("loop still running after Shutdown")
	}
	if err := configure(t, p, root, "", both); err == nil {
		t.Error("Configure after Shutdown accepted")
	}
}

// TestREADMEExamples configures the plugin with every complete config
// block of README.md (on a temporary tree), so that the examples stay
// valid.
func TestREADMEExamples(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllSubmatch(src, -1)
	n := 0
	for i, m := range blocks {
		text := m[1]
		if bytes.Contains(text, []byte("...")) {
			continue // the SYNTAX synopsis
		}
		f, diags := hclsyntax.ParseConfig(text, fmt.Sprintf("README.md block %d", i), hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("README hcl block %d: %v", i, diags)
			continue
		}
		for _, pb := range f.Body.(*hclsyntax.Body).Blocks {
			if pb.Type != "plugin" || len(pb.Labels) != 1 || pb.Labels[0] != Name {
				t.Errorf("README hcl block %d: unexpected block %s %v", i, pb.Type, pb.Labels)
				continue
			}
			body := ""
			for _, cb := range pb.Body.Blocks {
				if cb.Type == "config" {
					body = string(text[cb.OpenBraceRange.End.Byte:cb.CloseBraceRange.Start.Byte])
				}
			}
			n++
			root := mkTree(t, map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "1\n", "net/ipv4/conf/all/arp_ignore": "0\n"})
			p := newPlugin(t)
			if err := configure(t, p, root, body, both); err != nil {
				t.Errorf("README hcl block %d: %v", i, err)
				continue
			}
			if h := p.Health(context.Background()); h.State != sdk.HealthReady {
				t.Errorf("README hcl block %d: %+v", i, h)
			}
		}
	}
	if n < 3 {
		t.Errorf("only %d README examples found", n)
	}
}
