package sysctltuner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

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
	p, root := configuredPlugin(t, nil, "", both)
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
	p, root := configuredPlugin(t, map[string]string{"net/ipv4/ip_forward": "0\n"},
		"reconcile_interval = \"50ms\"\nset = { \"net.ipv4.ip_forward\" = \"1\" }\n", both)
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
	p, root := configuredPlugin(t, map[string]string{"net/ipv4/ip_forward": "0\n"},
		"reconcile_interval = \"1h\"\nset = { \"net.ipv4.ip_forward\" = \"1\" }\n", both)
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
			p, root := configuredPlugin(t, nil, tt.body, sdk.AgentSettings{EnableIPv4: tt.v4, EnableIPv6: tt.v6})
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
