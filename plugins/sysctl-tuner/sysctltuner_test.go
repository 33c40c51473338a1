package sysctltuner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
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

// initNS is a sysctl tree like the initial network namespace's, with the
// kernel's defaults for the six tuned keys.
var initNS = tunertest.InitNS()

// the six defaults and their values.
var defaultKeys = map[string]string{
	"net.ipv4.neigh.default.gc_thresh3": "28160",
	"net.ipv6.neigh.default.gc_thresh3": "28160",
	"net.ipv4.conf.all.arp_notify":      "1",
	"net.ipv4.conf.all.forwarding":      "1",
	"net.ipv6.conf.all.forwarding":      "1",
	"net.ipv4.conf.all.rp_filter":       "0",
}

func keyPath(key string) string { return strings.ReplaceAll(key, ".", "/") }

// mkTree builds a sysctl tree in a temporary directory from initNS plus
// extra (an empty value removes a file).
func mkTree(t *testing.T, extra map[string]string) string {
	return tunertest.Tree(t, initNS, extra)
}

func readKey(t *testing.T, root, rel string) string {
	return strings.TrimSpace(tunertest.Read(t, root, rel))
}

func writeKey(t *testing.T, root, rel, v string) { tunertest.Write(t, root, rel, v+"\n") }

var both = sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}

// rawAt is a config block that starts at line 20, column 3 of agent.hcl, as
// a plugin block inside a larger file does.
func rawAt(body string) sdk.RawConfig {
	return sdk.RawConfig{Filename: "agent.hcl", Body: []byte(body), Start: hcl.Pos{Line: 20, Column: 3, Byte: 400}}
}

// configure configures p with body plus proc_sys_root = root.
func configure(t *testing.T, p *Plugin, root, body string, agent sdk.AgentSettings) error {
	t.Helper()
	return p.Configure(context.Background(), sdk.ConfigureRequest{
		Config: rawAt(fmt.Sprintf("proc_sys_root = %q\n%s", root, body)),
		Agent:  agent,
	})
}

func mustConfigure(t *testing.T, p *Plugin, root, body string, agent sdk.AgentSettings) {
	t.Helper()
	if err := configure(t, p, root, body, agent); err != nil {
		t.Fatalf("Configure: %v", err)
	}
}

// newPlugin returns a plugin that is shut down when the test ends.
func newPlugin(t *testing.T) *Plugin {
	t.Helper()
	p := New(hclog.NewNullLogger())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

func statusKey(t *testing.T, st sdk.TunerStatus, key string) sdk.TunedKey {
	return tunertest.Key(t, st.Keys, key, func(k sdk.TunedKey) string { return k.Key })
}

func statusKeys(st sdk.TunerStatus) []string {
	var out []string
	for _, k := range st.Keys {
		out = append(out, k.Key)
	}
	sort.Strings(out)
	return out
}

// sample finds the sample with name and labels; ok is false if absent.
func sample(samples []sdk.Sample, name string, labels map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.Name == name && (len(labels) == 0 && len(s.Labels) == 0 || reflect.DeepEqual(s.Labels, labels)) {
			return s.Value, true
		}
	}
	return 0, false
}

func mustSample(t *testing.T, p *Plugin, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := sample(p.Metrics(context.Background()), name, labels)
	if !ok {
		t.Fatalf("no sample %s%v", name, labels)
	}
	return v
}

// eventually polls cond until it holds or 5s pass (test/poll).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, poll.Bool(cond))
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

func TestInfoAndSchema(t *testing.T) {
	p := New(nil)
	info := p.Info()
	if info.Name != "sysctl-tuner" || info.Kind != sdk.KindTuner || info.APIVersion != sdk.APIVersion ||
		!reflect.DeepEqual(info.Capabilities, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("info %+v", info)
	}
	want := map[string][2]string{ // name -> type, default
		"reconcile_interval": {sdk.TypeDuration, `"30s"`},
		"proc_sys_root":      {sdk.TypeString, `"/proc/sys"`},
		"set":                {sdk.TypeStringMap, ""},
		"drop":               {sdk.TypeStringList, ""},
	}
	s := p.ConfigSchema()
	if len(s.Attributes) != len(want) {
		t.Fatalf("schema %+v", s)
	}
	for _, a := range s.Attributes {
		w, ok := want[a.Name]
		if !ok || a.Type != w[0] || a.Default != w[1] || a.Required || a.Description == "" {
			t.Errorf("attribute %+v, want type %s default %s, optional, described", a, w[0], w[1])
		}
	}
}

// TestDefaultsApplied applies the six defaults to a tree like the initial
// namespace's and checks values, states and previous values.
func TestDefaultsApplied(t *testing.T) {
	root := mkTree(t, nil)
	p := newPlugin(t)
	mustConfigure(t, p, root, "", both)
	st := p.Status(context.Background())
	if got := statusKeys(st); len(got) != 6 {
		t.Fatalf("keys %v", got)
	}
	for key, v := range defaultKeys {
		k := statusKey(t, st, key)
		prev := strings.TrimSpace(initNS[keyPath(key)])
		if k.State != "applied" || k.Desired != v || k.Actual != v || k.Previous != prev || k.Error != "" {
			t.Errorf("%s: %+v, want applied %s (previous %s)", key, k, v, prev)
		}
		if got := readKey(t, root, keyPath(key)); got != v {
			t.Errorf("%s reads %q, want %q", key, got, v)
		}
	}
	if st.LastReconcile.IsZero() {
		t.Error("no last reconcile time")
	}
	if h := p.Health(context.Background()); h.State != sdk.HealthReady || h.Message != "" {
		t.Errorf("health %+v", h)
	}
}

// TestConfigureRejects: every bad block is an *sdk.ConfigError whose
// position is in the operator's file (the block starts at agent.hcl:20:3).
func TestConfigureRejects(t *testing.T) {
	root := mkTree(t, nil)
	file := filepath.Join(root, "net/ipv4/conf/all/rp_filter")
	tests := []struct {
		name, body string
		want       []string // substrings of the error
	}{
		{"unknown attribute", `sett = { "a.b" = "1" }`, []string{"agent.hcl:21:1:", `"sett"`, `Did you mean "set"?`}},
		{"interval not a duration", `reconcile_interval = "often"`, []string{"agent.hcl:21:22:", `"often" is not a duration`}},
		{"interval a list", `reconcile_interval = ["30s"]`, []string{"agent.hcl:21:22:", `Invalid value for "reconcile_interval"`}},
		{"interval too short", `reconcile_interval = "1ms"`, []string{"agent.hcl:21:22:", "shorter than 10ms"}},
		{"set a list", `set = ["net.ipv4.ip_forward"]`, []string{"agent.hcl:21:7:", `Invalid value for "set"`, "map(string)"}},
		{"drop a string", `drop = { a = "b" }`, []string{"agent.hcl:21:8:", `Invalid value for "drop"`, "list(string)"}},
		{"set bad key", "set = {\n  \"net.ipv4.conf.all.rp_filter\" = \"0\"\n  \"net..x\" = \"1\"\n}",
			[]string{"agent.hcl:23:3:", `Invalid value for "set"`, `sysctl key "net..x" contains ".."`}},
		{"set absolute key", `set = { "/etc/passwd" = "x" }`, []string{"agent.hcl:21:9:", `"/etc/passwd" is an absolute path`}},
		{"set empty value", "set = {\n  \"net.ipv4.ip_forward\" = \"  \"\n}", []string{"agent.hcl:22:27:", `sysctl key "net.ipv4.ip_forward": empty value`}},
		{"drop not a default", `drop = ["net.ipv4.conf.all.arp_notify", "net.ipv4.ip_forward"]`,
			[]string{"agent.hcl:21:41:", `Invalid value for "drop"`, `"net.ipv4.ip_forward" is not a default`}},
		{"set and drop", "drop = [\"net.ipv4.conf.all.rp_filter\"]\nset = { \"net.ipv4.conf.all.rp_filter\" = \"1\" }",
			[]string{"agent.hcl:22:9:", "both set and dropped"}},
		{"two spellings", `set = { "net.ipv4.conf.all.rp_filter" = "1", "net/ipv4/conf/all/rp_filter" = "2" }`,
			[]string{"agent.hcl:21:7:", "name the same parameter"}},
		{"relative root", `proc_sys_root = "proc/sys"`, []string{"agent.hcl:21:17:", `"proc/sys" is not an absolute path`}},
		{"missing root", fmt.Sprintf("proc_sys_root = %q", filepath.Join(root, "nope")), []string{"agent.hcl:21:17:", "no such file or directory"}},
		{"root is a file", fmt.Sprintf("proc_sys_root = %q", file), []string{"agent.hcl:21:17:", "is not a directory"}},
		{"host root refused by the test guard", `proc_sys_root = "/proc/sys"`, []string{"agent.hcl:21:17:", "test guard"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The tested attribute stands on line 21 (the block's second
			// line), proc_sys_root after it unless the test sets it.
			body := "\n" + tt.body + "\n"
			if !strings.HasPrefix(tt.body, "proc_sys_root") {
				body += fmt.Sprintf("proc_sys_root = %q\n", root)
			}
			p := newPlugin(t)
			err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: rawAt(body), Agent: both})
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Configure = %v (%T), want an *sdk.ConfigError", err, err)
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if st := p.Status(context.Background()); len(st.Keys) != 0 {
				t.Errorf("a rejected first Configure configured keys: %+v", st.Keys)
			}
		})
	}
}

// TestRejectedReloadKeepsPrevious: a reload with a bad set key changes
// nothing; the previous settings and loop stay in force.
func TestRejectedReloadKeepsPrevious(t *testing.T) {
	root := mkTree(t, map[string]string{"net/ipv4/ip_forward": "0\n"})
	p := newPlugin(t)
	mustConfigure(t, p, root, "reconcile_interval = \"50ms\"\nset = { \"net.ipv4.ip_forward\" = \"1\" }\n", both)
	before := p.Status(context.Background())

	err := configure(t, p, root, "reconcile_interval = \"1h\"\nset = {\n  \"net.ipv4.ip_forward\" = \"0\"\n  \"net..x\" = \"1\"\n}\n", both)
	if err == nil || !strings.Contains(err.Error(), `agent.hcl:24:3: Invalid value for "set": sysctl key "net..x"`) {
		t.Fatalf("Configure(bad set key) = %v", err)
	}
	after := p.Status(context.Background())
	if !reflect.DeepEqual(statusKeys(before), statusKeys(after)) || statusKey(t, after, "net.ipv4.ip_forward").Desired != "1" {
		t.Errorf("status changed by a rejected reload: %+v -> %+v", before.Keys, after.Keys)
	}
	if got := readKey(t, root, "net/ipv4/ip_forward"); got != "1" {
		t.Errorf("ip_forward = %q, want the previous setting 1", got)
	}
	// The old 50ms loop still runs: a drift is corrected.
	writeKey(t, root, "net/ipv4/ip_forward", "0")
	eventually(t, "old loop corrects drift", func() bool { return readKey(t, root, "net/ipv4/ip_forward") == "1" })
}

// TestReloadAppliesAtOnce: a reload with a changed value writes it before
// Configure returns, and restarts the loop with the new interval.
func TestReloadAppliesAtOnce(t *testing.T) {
	root := mkTree(t, map[string]string{"net/ipv4/ip_forward": "0\n"})
	p := newPlugin(t)
	mustConfigure(t, p, root, "reconcile_interval = \"1h\"\nset = { \"net.ipv4.ip_forward\" = \"1\" }\n", both)
	if got := readKey(t, root, "net/ipv4/ip_forward"); got != "1" {
		t.Fatalf("ip_forward = %q after Configure, want 1", got)
	}
	old := p.loop

	mustConfigure(t, p, root, "reconcile_interval = \"2h\"\nset = {\n \"net.ipv4.ip_forward\" = \"0\"\n \"net.ipv4.conf.all.rp_filter\" = \"1\"\n}\n", both)
	for rel, want := range map[string]string{"net/ipv4/ip_forward": "0", "net/ipv4/conf/all/rp_filter": "1"} {
		if got := readKey(t, root, rel); got != want {
			t.Errorf("%s = %q right after the reload, want %q", rel, got, want)
		}
	}
	st := p.Status(context.Background())
	if k := statusKey(t, st, "net.ipv4.ip_forward"); k.State != "applied" || k.Actual != "0" || k.Previous != "0" {
		t.Errorf("ip_forward after reload: %+v (previous is the value before the first write)", k)
	}
	select {
	case <-old.done:
	default:
		t.Error("the old loop still runs after the reload")
	}
	if p.loop == nil || p.loop == old || p.loop.interval != 2*time.Hour {
		t.Errorf("loop after reload: %+v", p.loop)
	}

	// The same block again is a no-op: nothing is written, states stay.
	mustConfigure(t, p, root, "reconcile_interval = \"2h\"\nset = {\n \"net.ipv4.ip_forward\" = \"0\"\n \"net.ipv4.conf.all.rp_filter\" = \"1\"\n}\n", both)
	if k := statusKey(t, p.Status(context.Background()), "net.ipv4.ip_forward"); k.State != "applied" {
		t.Errorf("ip_forward after an identical reload: %+v", k)
	}

	// reconcile_interval = "0s" turns the loop off.
	mustConfigure(t, p, root, "reconcile_interval = \"0s\"\n", both)
	if p.loop != nil {
		t.Errorf("loop with interval 0: %+v", p.loop)
	}
}

// TestDriftCorrectedByLoop: a value changed behind the plugin's back is set
// back within the interval, counted and reported.
func TestDriftCorrectedByLoop(t *testing.T) {
	root := mkTree(t, nil)
	p := newPlugin(t)
	mustConfigure(t, p, root, `reconcile_interval = "50ms"`, both)
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
	root := mkTree(t, map[string]string{"net/ipv4/conf/all/rp_filter": "", "net/ipv4/conf/all/rp_filter/x": "0\n"})
	p := newPlugin(t)
	mustConfigure(t, p, root, "", both)
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

// TestFamilySwitches: the agent's enable_ipv4/enable_ipv6 choose the
// defaults; rp_filter applies when either is on; an explicit set applies
// whatever the switches say.
func TestFamilySwitches(t *testing.T) {
	v4 := []string{"net.ipv4.conf.all.arp_notify", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.all.rp_filter", "net.ipv4.neigh.default.gc_thresh3"}
	v6 := []string{"net.ipv4.conf.all.rp_filter", "net.ipv6.conf.all.forwarding", "net.ipv6.neigh.default.gc_thresh3"}
	all := []string{"net.ipv4.conf.all.arp_notify", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.all.rp_filter",
		"net.ipv4.neigh.default.gc_thresh3", "net.ipv6.conf.all.forwarding", "net.ipv6.neigh.default.gc_thresh3"}
	tests := []struct {
		name     string
		v4, v6   bool
		body     string
		wantKeys []string
	}{
		{"both", true, true, "", all},
		{"ipv4 only", true, false, "", v4},
		{"ipv6 only", false, true, "", v6},
		{"neither", false, false, "", nil},
		{"ipv4 only, ipv6 forwarding set explicitly", true, false, `set = { "net.ipv6.conf.all.forwarding" = "1" }`,
			append(append([]string{}, v4...), "net.ipv6.conf.all.forwarding")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkTree(t, nil)
			p := newPlugin(t)
			mustConfigure(t, p, root, tt.body, sdk.AgentSettings{EnableIPv4: tt.v4, EnableIPv6: tt.v6})
			want := append([]string(nil), tt.wantKeys...)
			sort.Strings(want)
			if got := statusKeys(p.Status(context.Background())); !reflect.DeepEqual(got, want) {
				t.Errorf("keys %v, want %v", got, want)
			}
			tuned := map[string]bool{}
			for _, k := range want {
				tuned[k] = true
			}
			for key, v := range defaultKeys {
				want := strings.TrimSpace(initNS[keyPath(key)])
				if tuned[key] {
					want = v
				}
				if got := readKey(t, root, keyPath(key)); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
		})
	}
}

// TestSetDropAdd covers overrides, drops, additions, dotted interface
// names in both spellings, normalisation and unsupported keys.
func TestSetDropAdd(t *testing.T) {
	root := mkTree(t, map[string]string{
		"net/ipv4/conf/eth0.100/rp_filter":  "1\n",
		"net/ipv4/conf/eth0.100/arp_ignore": "0\n",
		"net/ipv4/tcp_rmem":                 "4096\t131072\t6291456\n",
		"net/core/somaxconn":                "4096\n",
	})
	p := newPlugin(t)
	body := `drop = ["net.ipv6.neigh.default.gc_thresh3"]
set = {
  "net.ipv4.neigh.default.gc_thresh3" = 65536
  "net/ipv4/conf/eth0.100/rp_filter"  = "0"
  "net.ipv4.conf.eth0.100.arp_ignore" = "1"
  "net.ipv4.tcp_rmem"                 = "4096  131072 6291456"
  "net.core.somaxconn"                = "8192"
  "net.ipv4.conf.eth9.7.rp_filter"    = "0"
}`
	mustConfigure(t, p, root, body, both)
	st := p.Status(context.Background())
	tests := []struct {
		key, path, state, actual, previous string
	}{
		{"net.ipv4.neigh.default.gc_thresh3", "net/ipv4/neigh/default/gc_thresh3", "applied", "65536", "1024"},
		{"net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0.100/rp_filter", "applied", "0", "1"},
		{"net.ipv4.conf.eth0.100.arp_ignore", "net/ipv4/conf/eth0.100/arp_ignore", "applied", "1", "0"},
		{"net.ipv4.tcp_rmem", "net/ipv4/tcp_rmem", "unchanged", "4096 131072 6291456", "4096 131072 6291456"},
		{"net.core.somaxconn", "net/core/somaxconn", "applied", "8192", "4096"},
		{"net.ipv4.conf.eth9.7.rp_filter", "", "unsupported", "", ""},
		{"net.ipv4.conf.all.rp_filter", "net/ipv4/conf/all/rp_filter", "applied", "0", "2"},
	}
	for _, tt := range tests {
		k := statusKey(t, st, tt.key)
		if k.State != tt.state || k.Actual != tt.actual || k.Previous != tt.previous || k.Error != "" {
			t.Errorf("%s: %+v, want %s actual %q previous %q", tt.key, k, tt.state, tt.actual, tt.previous)
		}
		if tt.path != "" && tt.state == "applied" {
			if got := readKey(t, root, tt.path); got != tt.actual {
				t.Errorf("%s reads %q, want %q", tt.path, got, tt.actual)
			}
		}
	}
	if got := readKey(t, root, "net/ipv6/neigh/default/gc_thresh3"); got != "1024" {
		t.Errorf("dropped default was written: %q", got)
	}
	for _, k := range st.Keys {
		if k.Key == "net.ipv6.neigh.default.gc_thresh3" {
			t.Errorf("dropped default reported: %+v", k)
		}
	}
	if got := readKey(t, root, "net/ipv4/tcp_rmem"); got != "4096\t131072\t6291456" {
		t.Errorf("tcp_rmem rewritten although equal after normalisation: %q", got)
	}
	if h := p.Health(context.Background()); h.State != sdk.HealthReady {
		t.Errorf("an unsupported key must not degrade: %+v", h)
	}
}

// TestChildNamespaceTree: in a tree like a child network namespace's
// (no neigh/default) both gc_thresh3 keys are unsupported and the plugin
// is ready.
func TestChildNamespaceTree(t *testing.T) {
	root := mkTree(t, map[string]string{"net/ipv4/neigh/default/gc_thresh3": "", "net/ipv6/neigh/default/gc_thresh3": ""})
	p := newPlugin(t)
	mustConfigure(t, p, root, "", both)
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
	root := mkTree(t, nil)
	p := newPlugin(t)
	mustConfigure(t, p, root, "", both)
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

// applyNow runs a pass now, as the reconcile loop would.
func (p *Plugin) applyNow(ctx context.Context) (sdk.TunerStatus, error) {
	rep, ok := p.pass(ctx)
	if !ok {
		return sdk.TunerStatus{}, ctx.Err()
	}
	return toSDK(rep), nil
}
