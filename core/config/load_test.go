package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		key  string
		got  any
		want any
	}{
		{"log_level", c.LogLevel, "info"},
		{"log_format", c.LogFormat, "text"},
		{"plugin_dir", c.PluginDir, "/usr/lib/spiderpool/plugins"},
		{"socket_path", c.SocketPath, "/var/run/spidernet/spiderpool.sock"},
		{"health_port", c.HealthPort, 5710},
		{"gops_port", c.GopsPort, 5712},
		{"enable_ipv4", c.EnableIPv4, true},
		{"enable_ipv6", c.EnableIPv6, true},
		{"shutdown_timeout", c.ShutdownTimeout, 10 * time.Second},
		{"metrics.enabled", c.Metrics.Enabled, false},
		{"metrics.port", c.Metrics.Port, 5711},
		{"metrics.address", c.Metrics.Address, "0.0.0.0"},
		{"ipam.max_allocated_ips", c.IPAM.MaxAllocatedIPs, 5000},
		{"ipam.max_history_records", c.IPAM.MaxHistoryRecords, 100},
		{"ipam.update_max_retries", c.IPAM.UpdateMaxRetries, 3},
		{"ipam.workload_retention", c.IPAM.WorkloadRetention, 24 * time.Hour},
		{"ipam.allocation_timeout", c.IPAM.AllocationTimeout, 25 * time.Second},
		{"supervisor.restart_budget", c.Supervisor.RestartBudget, 10},
		{"supervisor.restart_initial_backoff", c.Supervisor.RestartInitialBackoff, 500 * time.Millisecond},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.key, ck.got, ck.want)
		}
	}
	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Name)
		if !p.Enabled || p.Timeout != 5*time.Second || p.FailurePolicy != state.FailClosed || p.Path != "" ||
			p.Checksum != "" || len(p.Config.Body) != 0 || p.DeclRange.Filename != "" {
			t.Errorf("built-in plugin %q has non-default settings: %+v", p.Name, p)
		}
	}
	if want := []string{"gateway-detector", "ip-conflict", "sysctl-tuner"}; !reflect.DeepEqual(names, want) {
		t.Errorf("plugins = %v, want %v", names, want)
	}
	for _, s := range c.Settings() {
		if s.Source != (Source{Kind: KindDefault}) {
			t.Errorf("%s: source %v, want default", s.Key, s.Source)
		}
	}
	// Load with nothing is Default.
	got := mustLoad(t, LoadOptions{})
	if !reflect.DeepEqual(got.Settings(), c.Settings()) {
		t.Errorf("Load(empty) differs from Default()")
	}
}

// TestEnvVarsTable pins the environment table of the design notes.
func TestEnvVarsTable(t *testing.T) {
	want := []EnvVar{
		{Name: "SPIDERPOOL_LOG_LEVEL", Key: "log_level", Default: "info"},
		{Name: "SPIDERPOOL_LOG_FORMAT", Key: "log_format", Default: "text"},
		{Name: "SPIDERPOOL_PLUGIN_DIR", Key: "plugin_dir", Default: "/usr/lib/spiderpool/plugins"},
		{Name: "SPIDERPOOL_SOCKET_PATH", Key: "socket_path", Default: "/var/run/spidernet/spiderpool.sock"},
		{Name: "SPIDERPOOL_HEALTH_PORT", Key: "health_port", Default: "5710"},
		{Name: "SPIDERPOOL_GOPS_LISTEN_PORT", Key: "gops_port", Default: "5712"},
		{Name: "SPIDERPOOL_NODE_NAME", Key: "node_name", Default: ""},
		{Name: "SPIDERPOOL_ENABLED_METRIC", Key: "metrics.enabled", Default: "false"},
		{Name: "SPIDERPOOL_METRIC_HTTP_PORT", Key: "metrics.port", Default: "5711"},
		{Name: "SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS", Key: "ipam.max_allocated_ips", Default: "5000"},
		{Name: "SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS", Key: "ipam.max_history_records", Default: "100"},
		{Name: "SPIDERPOOL_UPDATE_CR_MAX_RETRIES", Key: "ipam.update_max_retries", Default: "3"},
	}
	got := EnvVars()
	if len(got) != len(want) {
		t.Fatalf("EnvVars() has %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Key != want[i].Key || got[i].Default != want[i].Default {
			t.Errorf("EnvVars()[%d] = %+v, want %+v", i, got[i], want[i])
		}
		if got[i].Description == "" {
			t.Errorf("%s has no description", got[i].Name)
		}
	}
}

// TestEnvParsing covers each environment variable: a good value, a bad one
// and the error that names the variable.
func TestEnvParsing(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		get     func(*Config) any
		want    any
		wantErr string // substring; empty = success
	}{
		{"SPIDERPOOL_LOG_LEVEL", "debug", func(c *Config) any { return c.LogLevel }, "debug", ""},
		{"SPIDERPOOL_LOG_LEVEL", "WARN", func(c *Config) any { return c.LogLevel }, "warn", ""},
		{"SPIDERPOOL_LOG_LEVEL", "panic", func(c *Config) any { return c.LogLevel }, "panic", ""},
		{"SPIDERPOOL_LOG_LEVEL", "verbose", nil, nil, `SPIDERPOOL_LOG_LEVEL="verbose": not a log level (debug, info, warn, error, fatal, panic)`},
		{"SPIDERPOOL_LOG_FORMAT", "json", func(c *Config) any { return c.LogFormat }, "json", ""},
		{"SPIDERPOOL_LOG_FORMAT", "xml", nil, nil, `SPIDERPOOL_LOG_FORMAT="xml": not a log format`},
		{"SPIDERPOOL_PLUGIN_DIR", "/opt/p", func(c *Config) any { return c.PluginDir }, "/opt/p", ""},
		{"SPIDERPOOL_SOCKET_PATH", "/run/a.sock", func(c *Config) any { return c.SocketPath }, "/run/a.sock", ""},
		{"SPIDERPOOL_HEALTH_PORT", "8080", func(c *Config) any { return c.HealthPort }, 8080, ""},
		{"SPIDERPOOL_HEALTH_PORT", " 8080 ", func(c *Config) any { return c.HealthPort }, 8080, ""},
		{"SPIDERPOOL_HEALTH_PORT", "abc", nil, nil, `SPIDERPOOL_HEALTH_PORT="abc": not a port number (1-65535)`},
		{"SPIDERPOOL_HEALTH_PORT", "0", nil, nil, `SPIDERPOOL_HEALTH_PORT="0": not a port number (1-65535)`},
		{"SPIDERPOOL_HEALTH_PORT", "65536", nil, nil, `SPIDERPOOL_HEALTH_PORT="65536": not a port number (1-65535)`},
		{"SPIDERPOOL_GOPS_LISTEN_PORT", "6060", func(c *Config) any { return c.GopsPort }, 6060, ""},
		{"SPIDERPOOL_GOPS_LISTEN_PORT", "", func(c *Config) any { return c.GopsPort }, 0, ""},
		{"SPIDERPOOL_GOPS_LISTEN_PORT", "0", func(c *Config) any { return c.GopsPort }, 0, ""},
		{"SPIDERPOOL_GOPS_LISTEN_PORT", "-1", nil, nil, `SPIDERPOOL_GOPS_LISTEN_PORT="-1": not a port number (1-65535) or 0 to disable`},
		{"SPIDERPOOL_NODE_NAME", "rack1-n7", func(c *Config) any { return c.NodeName }, "rack1-n7", ""},
		{"SPIDERPOOL_NODE_NAME", "a/b", nil, nil, `SPIDERPOOL_NODE_NAME="a/b": not a node name`},
		{"SPIDERPOOL_ENABLED_METRIC", "true", func(c *Config) any { return c.Metrics.Enabled }, true, ""},
		{"SPIDERPOOL_ENABLED_METRIC", "maybe", nil, nil, `SPIDERPOOL_ENABLED_METRIC="maybe": not a boolean (true/false, 1/0, yes/no)`},
		{"SPIDERPOOL_METRIC_HTTP_PORT", "9100", func(c *Config) any { return c.Metrics.Port }, 9100, ""},
		{"SPIDERPOOL_METRIC_HTTP_PORT", "http", nil, nil, `SPIDERPOOL_METRIC_HTTP_PORT="http": not a port number (1-65535)`},
		{"SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS", "10", func(c *Config) any { return c.IPAM.MaxAllocatedIPs }, 10, ""},
		{"SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS", "0", nil, nil, `SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS="0": not a whole number >= 1`},
		{"SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS", "7", func(c *Config) any { return c.IPAM.MaxHistoryRecords }, 7, ""},
		{"SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS", "1.5", nil, nil, `SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS="1.5": not a whole number from 1 to 1000`},
		// Every allocation of a workload once rewrote its whole history:
		// the history per workload is capped.
		{"SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS", "1000", func(c *Config) any { return c.IPAM.MaxHistoryRecords }, 1000, ""},
		{"SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS", "100000000", nil, nil, `SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS="100000000": not a whole number from 1 to 1000`},
		{"SPIDERPOOL_UPDATE_CR_MAX_RETRIES", "0", func(c *Config) any { return c.IPAM.UpdateMaxRetries }, 0, ""},
		{"SPIDERPOOL_UPDATE_CR_MAX_RETRIES", "-1", nil, nil, `SPIDERPOOL_UPDATE_CR_MAX_RETRIES="-1": not a whole number >= 0`},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.name] = true
		t.Run(fmt.Sprintf("%s=%q", tt.name, tt.value), func(t *testing.T) {
			opts := LoadOptions{Lookup: env(map[string]string{tt.name: tt.value})}
			if tt.wantErr != "" {
				wantContains(t, loadErr(t, opts), tt.wantErr)
				return
			}
			c := mustLoad(t, opts)
			if got := tt.get(c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	for _, e := range EnvVars() {
		if !covered[e.Name] {
			t.Errorf("no test case for %s", e.Name)
		}
	}
}

func TestEnvBooleans(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{
		{"true", true}, {"TRUE", true}, {"True", true}, {"1", true}, {"yes", true}, {"YES", true},
		{"false", false}, {"False", false}, {"0", false}, {"no", false}, {"No", false},
	} {
		c := mustLoad(t, LoadOptions{Lookup: env(map[string]string{"SPIDERPOOL_ENABLED_METRIC": tt.v})})
		if c.Metrics.Enabled != tt.want {
			t.Errorf("SPIDERPOOL_ENABLED_METRIC=%q: enabled = %v, want %v", tt.v, c.Metrics.Enabled, tt.want)
		}
	}
}

// TestEnvEmpty: an empty variable counts as unset, except the gops port
// where empty disables.
func TestEnvEmpty(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.hcl": "health_port = 6000\n"})
	vars := map[string]string{"SPIDERPOOL_GOPS_LISTEN_PORT": ""}
	for _, e := range EnvVars() {
		if e.Name != "SPIDERPOOL_GOPS_LISTEN_PORT" {
			vars[e.Name] = ""
		}
	}
	c := mustLoad(t, LoadOptions{ConfigDir: dir, Lookup: env(vars)})
	if c.HealthPort != 6000 {
		t.Errorf("health_port = %d, want 6000 from the file", c.HealthPort)
	}
	if c.GopsPort != 0 {
		t.Errorf("gops_port = %d, want 0 (disabled)", c.GopsPort)
	}
	if s := setting(t, c, "gops_port").Source; s != (Source{Kind: KindEnv, Where: "SPIDERPOOL_GOPS_LISTEN_PORT"}) {
		t.Errorf("gops_port source = %v", s)
	}
	if c.LogLevel != "info" {
		t.Errorf("log_level = %q, want the default", c.LogLevel)
	}
}

// TestPrecedence sets socket_path (the one key every layer can set) in every
// pair of layers and checks that the higher layer wins, then other keys in
// the layers that can set them.
func TestPrecedence(t *testing.T) {
	type layer struct {
		kind  string
		value string
	}
	layers := []layer{
		{KindDefault, DefaultSocketPath},
		{KindConfYML, "/run/from-yml.sock"},
		{KindFile, "/run/from-hcl.sock"},
		{KindEnv, "/run/from-env.sock"},
		{KindFlag, "/run/from-flag.sock"},
	}
	build := func(t *testing.T, use map[string]bool) LoadOptions {
		files := map[string]string{}
		if use[KindConfYML] {
			files["conf.yml"] = "ipamUnixSocketPath: /run/from-yml.sock\n"
		}
		if use[KindFile] {
			files["a.hcl"] = "socket_path = \"/run/from-hcl.sock\"\n"
		}
		opts := LoadOptions{ConfigDir: writeDir(t, files), Lookup: env(nil)}
		if use[KindEnv] {
			opts.Lookup = env(map[string]string{"SPIDERPOOL_SOCKET_PATH": "/run/from-env.sock"})
		}
		if use[KindFlag] {
			opts.Flags = []Flag{{Key: "socket_path", Value: "/run/from-flag.sock", Name: "--socket-path"}}
		}
		return opts
	}
	for i := range layers {
		for j := i; j < len(layers); j++ {
			lo, hi := layers[i], layers[j]
			t.Run(lo.kind+"<"+hi.kind, func(t *testing.T) {
				c := mustLoad(t, build(t, map[string]bool{lo.kind: true, hi.kind: true}))
				if c.SocketPath != hi.value {
					t.Errorf("socket_path = %q, want %q", c.SocketPath, hi.value)
				}
				if s := setting(t, c, "socket_path").Source; s.Kind != hi.kind {
					t.Errorf("source = %v, want kind %s", s, hi.kind)
				}
			})
		}
	}

	// Other keys: each row sets a key in several layers; the last layer
	// listed is expected to win.
	type set struct {
		yml, hcl string
		env      map[string]string
		flags    []Flag
	}
	rows := []struct {
		name     string
		in       set
		key      string
		want     string
		wantKind string
	}{
		{"log_level file<env", set{hcl: `log_level = "warn"`, env: map[string]string{"SPIDERPOOL_LOG_LEVEL": "error"}},
			"log_level", "error", KindEnv},
		{"log_level env<flag", set{env: map[string]string{"SPIDERPOOL_LOG_LEVEL": "error"}, flags: []Flag{{Key: "log_level", Value: "debug"}}},
			"log_level", "debug", KindFlag},
		{"health_port default<file", set{hcl: "health_port = 7000"}, "health_port", "7000", KindFile},
		{"health_port file<env<flag", set{hcl: "health_port = 7000", env: map[string]string{"SPIDERPOOL_HEALTH_PORT": "7001"},
			flags: []Flag{{Key: "health_port", Value: "7002", Name: "--health-port"}}}, "health_port", "7002", KindFlag},
		{"enable_ipv6 conf.yml<file", set{yml: "enableIPv6: false", hcl: "enable_ipv6 = true"}, "enable_ipv6", "true", KindFile},
		{"enable_ipv6 default<conf.yml", set{yml: "enableIPv6: false"}, "enable_ipv6", "false", KindConfYML},
		{"enable_ipv6 conf.yml<flag", set{yml: "enableIPv6: false", flags: []Flag{{Key: "enable_ipv6", Value: "yes"}}}, "enable_ipv6", "true", KindFlag},
		{"plugin enabled conf.yml<file", set{yml: "enableGatewayDetection: false", hcl: "plugin \"gateway-detector\" {\n enabled = true\n}"},
			"plugin.gateway-detector.enabled", "true", KindFile},
		{"plugin enabled default<conf.yml", set{yml: "tuneSysctlConfig: false"}, "plugin.sysctl-tuner.enabled", "false", KindConfYML},
		{"plugin enabled file<flag", set{hcl: "plugin \"ip-conflict\" {\n enabled = false\n}", flags: []Flag{{Key: "plugin.ip-conflict.enabled", Value: "true"}}},
			"plugin.ip-conflict.enabled", "true", KindFlag},
		{"metrics.port file<env", set{hcl: "metrics {\n port = 9000\n}", env: map[string]string{"SPIDERPOOL_METRIC_HTTP_PORT": "9001"}},
			"metrics.port", "9001", KindEnv},
		{"ipam file<env<flag", set{hcl: "ipam {\n max_allocated_ips = 10\n}", env: map[string]string{"SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS": "20"},
			flags: []Flag{{Key: "ipam.max_allocated_ips", Value: "30"}}}, "ipam.max_allocated_ips", "30", KindFlag},
		{"gops env empty over file", set{hcl: "gops_port = 6000", env: map[string]string{"SPIDERPOOL_GOPS_LISTEN_PORT": ""}}, "gops_port", "0", KindEnv},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			files := map[string]string{}
			if r.in.yml != "" {
				files["conf.yml"] = r.in.yml + "\n"
			}
			if r.in.hcl != "" {
				files["a.hcl"] = r.in.hcl + "\n"
			}
			c := mustLoad(t, LoadOptions{ConfigDir: writeDir(t, files), Lookup: env(r.in.env), Flags: r.in.flags})
			s := setting(t, c, r.key)
			if s.Value != r.want || s.Source.Kind != r.wantKind {
				t.Errorf("%s = %q from %v, want %q from %s", r.key, s.Value, s.Source, r.want, r.wantKind)
			}
		})
	}
}

func TestConfYML(t *testing.T) {
	// A Spiderpool conf.yml as the Helm chart renders it.
	yml := `ipamUnixSocketPath: /var/run/spidernet/other.sock
enableIPv4: true
enableIPv6: false
enableStatefulSet: true
enableKubevirtStaticIP: true
enableSpiderSubnet: false
clusterSubnetDefaultFlexibleIPNumber: 1
tuneSysctlConfig: false
enableIPConflictDetection: true
enableGatewayDetection: no
clusterDefaultIPv4IPPool: [default-v4-ippool]
clusterDefaultIPv6IPPool: []
`
	dir := writeDir(t, map[string]string{"conf.yml": yml})
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	path := filepath.Join(dir, "conf.yml")
	if c.SocketPath != "/var/run/spidernet/other.sock" || !c.EnableIPv4 || c.EnableIPv6 {
		t.Errorf("socket %q ipv4 %v ipv6 %v", c.SocketPath, c.EnableIPv4, c.EnableIPv6)
	}
	for name, want := range map[string]bool{"sysctl-tuner": false, "ip-conflict": true, "gateway-detector": false} {
		if got := c.Plugin(name).Enabled; got != want {
			t.Errorf("plugin %s enabled = %v, want %v", name, got, want)
		}
	}
	for key, line := range map[string]int{"socket_path": 1, "enable_ipv6": 3, "plugin.sysctl-tuner.enabled": 8, "plugin.gateway-detector.enabled": 10} {
		want := Source{Kind: KindConfYML, Where: fmt.Sprintf("%s:%d", path, line)}
		if s := setting(t, c, key).Source; s != want {
			t.Errorf("%s source = %v, want %v", key, s, want)
		}
	}
	wantIgnored := []string{"enableStatefulSet", "enableKubevirtStaticIP", "enableSpiderSubnet",
		"clusterSubnetDefaultFlexibleIPNumber", "clusterDefaultIPv4IPPool", "clusterDefaultIPv6IPPool"}
	if !reflect.DeepEqual(c.IgnoredConfYMLKeys, wantIgnored) {
		t.Errorf("ignored = %v, want %v", c.IgnoredConfYMLKeys, wantIgnored)
	}
	if !reflect.DeepEqual(c.Files, []string{path}) {
		t.Errorf("Files = %v", c.Files)
	}

	errs := []struct {
		name, yml string
		want      []string
	}{
		{"bad bool", "enableIPv4: true\nenableIPv6: maybe\n", []string{"conf.yml:2: enableIPv6: want a boolean"}},
		{"bad plugin bool", "\n\ntuneSysctlConfig: [a]\n", []string{"conf.yml:3: tuneSysctlConfig: want a boolean"}},
		{"empty socket", "ipamUnixSocketPath: \"\"\n", []string{"conf.yml:1: ipamUnixSocketPath: not an absolute path"}},
		{"relative socket", "ipamUnixSocketPath: run/x.sock\n", []string{"conf.yml:1: ipamUnixSocketPath: not an absolute path"}},
		{"syntax", "enableIPv4: true\n  enableIPv6: [\n", []string{"conf.yml:2: "}},
		{"not a mapping", "- a\n- b\n", []string{"conf.yml:1: want a mapping"}},
		{"both bad", "enableIPv4: x\nenableIPv6: perhaps\n", []string{"conf.yml:1: enableIPv4", "conf.yml:2: enableIPv6"}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"conf.yml": tt.yml})})
			wantContains(t, msg, tt.want...)
		})
	}

	t.Run("empty file", func(t *testing.T) {
		mustLoad(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"conf.yml": ""})})
	})
	t.Run("not read beside a named file", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"conf.yml": "enableIPv6: false\n", "agent.hcl": "log_level = \"debug\"\n"})
		c := mustLoad(t, LoadOptions{ConfigDir: filepath.Join(dir, "agent.hcl")})
		if !c.EnableIPv6 || c.LogLevel != "debug" {
			t.Errorf("ipv6 %v log_level %q: conf.yml beside a named file was read or the file was not", c.EnableIPv6, c.LogLevel)
		}
		if !reflect.DeepEqual(c.Files, []string{filepath.Join(dir, "agent.hcl")}) {
			t.Errorf("Files = %v", c.Files)
		}
	})
}

func TestDidYouMean(t *testing.T) {
	tests := []struct {
		name, hcl string
		want      []string
	}{
		{"top-level attribute", "log_level = \"info\"\nhelth_port = 5710\n",
			[]string{`a.hcl:2:1: Unsupported argument: An argument named "helth_port" is not expected here. Did you mean "health_port"?`}},
		{"block attribute", "metrics {\n  enabeld = true\n}\n",
			[]string{`a.hcl:2:3: Unsupported argument: An argument named "enabeld" is not expected here. Did you mean "enabled"?`}},
		{"ipam attribute", "ipam {\n  max_allocated_ip = 1\n}\n",
			[]string{`a.hcl:2:3: Unsupported argument`, `Did you mean "max_allocated_ips"?`}},
		{"plugin attribute", "plugin \"ip-conflict\" {\n  timout = \"1s\"\n}\n",
			[]string{`a.hcl:2:3: Unsupported argument`, `Did you mean "timeout"?`}},
		{"block type", "metric {\n}\n",
			[]string{`a.hcl:1:1: Unsupported block type`, `Did you mean "metrics"?`}},
		{"plugin block type", "plugin \"x\" {\n  conf {\n  }\n}\n",
			[]string{`a.hcl:2:3: Unsupported block type`, `Did you mean "config"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"a.hcl": tt.hcl})})
			wantContains(t, msg, tt.want...)
		})
	}
}

// TestHCLErrors checks that every value error names file:line:col of the
// value, and that all problems are reported at once.
func TestHCLErrors(t *testing.T) {
	tests := []struct {
		name, hcl string
		want      []string
	}{
		{"port range", "health_port = 0\n", []string{`a.hcl:1:15: Invalid value for "health_port": 0 is not a port number (1-65535).`}},
		{"port type", "\nhealth_port = \"x\"\n", []string{`a.hcl:2:15: Invalid value for "health_port": A whole number is required, not string.`}},
		{"port fraction", "health_port = 80.5\n", []string{`a.hcl:1:15: Invalid value for "health_port": 80.5 is not a port number`}},
		{"gops negative", "gops_port = -1\n", []string{`a.hcl:1:13: Invalid value for "gops_port"`}},
		{"bool type", "enable_ipv4 = \"maybe\"\n", []string{`a.hcl:1:15: Invalid value for "enable_ipv4": A boolean is required, not string.`}},
		{"list for string", "log_level = [\"info\"]\n", []string{`a.hcl:1:13: Invalid value for "log_level": A string is required`}},
		{"log level", "log_level = \"verbose\"\n", []string{`a.hcl:1:13: Invalid value for "log_level": "verbose" is not a log level`}},
		{"log format", "log_format = \"xml\"\n", []string{`a.hcl:1:14: Invalid value for "log_format"`}},
		{"duration", "shutdown_timeout = \"10\"\n", []string{`a.hcl:1:20: Invalid value for "shutdown_timeout": "10" is not a positive duration`}},
		{"zero duration", "shutdown_timeout = \"0s\"\n", []string{`a.hcl:1:20: Invalid value for "shutdown_timeout"`}},
		{"duration number", "shutdown_timeout = 10\n", []string{`a.hcl:1:20: Invalid value for "shutdown_timeout"`}},
		{"metrics port", "metrics {\n  port = 70000\n}\n", []string{`a.hcl:2:10: Invalid value for "metrics.port": 70000 is not a port number (1-65535).`}},
		{"metrics address", "metrics {\n  address = \"everywhere\"\n}\n", []string{`a.hcl:2:13: Invalid value for "metrics.address"`}},
		{"ipam", "ipam {\n  max_allocated_ips = 0\n  max_history_records = 0\n  update_max_retries = -1\n}\n", []string{
			`a.hcl:2:23: Invalid value for "ipam.max_allocated_ips": 0 is not a whole number >= 1.`,
			`a.hcl:3:25: Invalid value for "ipam.max_history_records"`,
			`a.hcl:4:24: Invalid value for "ipam.update_max_retries": -1 is not a whole number >= 0.`}},
		{"ipam history cap", "ipam {\n  max_history_records = 100000000\n}\n", []string{
			`a.hcl:2:25: Invalid value for "ipam.max_history_records": 100000000 is not a whole number from 1 to 1000.`}},
		{"ipam retention short", "ipam {\n  workload_retention = \"500ms\"\n}\n", []string{
			`a.hcl:2:24: Invalid value for "ipam.workload_retention": "500ms" is not a duration from 1s to 8760h0m0s.`}},
		{"ipam retention long", "ipam {\n  workload_retention = \"9000h\"\n}\n", []string{
			`a.hcl:2:24: Invalid value for "ipam.workload_retention": "9000h" is not a duration from 1s to 8760h0m0s.`}},
		{"allocation timeout", "ipam {\n  allocation_timeout = \"500ms\"\n}\n", []string{
			`a.hcl:2:24: Invalid value for "ipam.allocation_timeout": "500ms" is not a duration between 1s and 27s.`}},
		{"allocation timeout above the CNI wait", "ipam {\n  allocation_timeout = \"30s\"\n}\n", []string{
			`a.hcl:2:24: Invalid value for "ipam.allocation_timeout": "30s" is not a duration between 1s and 27s.`}},
		{"plugin limits", "supervisor {\n  plugin_memory_max_mb = 64\n  plugin_log_rate = 0\n  plugin_log_burst = -1\n}\n", []string{
			`a.hcl:2:26: Invalid value for "supervisor.plugin_memory_max_mb": 64 is not 0 (unlimited) or a whole number of MiB >= 128.`,
			`a.hcl:3:21: Invalid value for "supervisor.plugin_log_rate": 0 is not a whole number >= 1.`,
			`a.hcl:4:22: Invalid value for "supervisor.plugin_log_burst"`}},
		{"plugin pids", "supervisor {\n  plugin_pids_max = 8\n}\n", []string{
			`a.hcl:2:21: Invalid value for "supervisor.plugin_pids_max": 8 is not 0 (no limit) or a number of processes >= 32.`}},
		{"plugin values", "plugin \"ip-conflict\" {\n  timeout = \"-1s\"\n  failure_policy = \"ignore\"\n  path = \"bin/x\"\n}\n", []string{
			`a.hcl:2:13: Invalid value for "plugin.ip-conflict.timeout"`,
			`a.hcl:3:20: Invalid value for "plugin.ip-conflict.failure_policy": "ignore" is not a failure policy`,
			`a.hcl:4:10: Invalid value for "plugin.ip-conflict.path": "bin/x" is not an absolute path.`}},
		{"plugin name", "plugin \"My_Plugin\" {\n}\n", []string{`a.hcl:1:8: Invalid plugin name: "My_Plugin" must match`}},
		{"plugin name dash", "plugin \"-x\" {\n}\n", []string{`a.hcl:1:8: Invalid plugin name`}},
		{"syntax", "log_level = \n", []string{`a.hcl:1:`}},
		{"variables", "log_level = var.x\n", []string{`a.hcl:1:13: Variables not allowed`}},
		{"duplicate block", "metrics {\n}\nmetrics {\n}\n", []string{`a.hcl:3:1: Duplicate metrics block`, `a.hcl:1:1`}},
		{"duplicate plugin", "plugin \"x\" {\n}\nplugin \"x\" {\n}\n", []string{`a.hcl:3:1: Duplicate plugin block`}},
		{"duplicate config", "plugin \"x\" {\n  config {\n  }\n  config {\n  }\n}\n", []string{`a.hcl:4:3: Duplicate config block`}},
		{"etcd", "etcd {\n  endpoints = [\"10.0.0.1:2379\"]\n  request_timeout = \"0s\"\n  password_file = \"pw\"\n  tls {\n    cert_file = \"/c.pem\"\n  }\n}\n", []string{
			`a.hcl:2:15: Invalid value for "etcd.endpoints": "10.0.0.1:2379" is not a client URL`,
			`a.hcl:3:21: Invalid value for "etcd.request_timeout": "0s" is not a positive duration`,
			`a.hcl:4:19: Invalid value for "etcd.password_file": "pw" is not an absolute path.`,
			`a.hcl:5:3: Incomplete etcd client certificate`}},
		{"etcd no endpoints", "etcd {\n  prefix = \"/x/\"\n}\n", []string{`a.hcl:1:6: Missing required argument`}},
		{"etcd outage_wait", "etcd {\n  endpoints = [\"http://10.0.0.1:2379\"]\n  outage_wait = \"21s\"\n}\n", []string{
			`a.hcl:3:17: Invalid value for "etcd.outage_wait": "21s" is not a duration from "0s" to 20s`}},
		{"etcd types", "etcd {\n  endpoints = \"http://10.0.0.1:2379\"\n  dial_timeout = \"soon\"\n  prefx = \"/x/\"\n}\n", []string{
			`a.hcl:2:15: Invalid value for "etcd.endpoints": a list(string) is required, not string`,
			`a.hcl:3:18: Invalid value for "etcd.dial_timeout": "soon" is not a duration`,
			`a.hcl:4:3: Unsupported argument`, `Did you mean "prefix"?`}},
		{"etcd empty endpoints", "etcd {\n  endpoints = []\n}\n", []string{
			`a.hcl:2:15: Invalid value for "etcd.endpoints": A non-empty list of client URLs is required`}},
		{"etcd tls", "etcd {\n  endpoints = [\"https://e:2379\"]\n  tls {\n    ca_file = \"/ca.pem\"\n    certfile = \"/c\"\n  }\n  tls {\n  }\n  tsl {\n  }\n}\n", []string{
			`a.hcl:5:5: Unsupported argument`, `Did you mean "cert_file"?`,
			`a.hcl:7:3: Duplicate tls block`,
			`a.hcl:9:3: Unsupported block type`, `Did you mean "tls"?`}},
		{"etcd tls values", "etcd {\n  endpoints = 1\n  tls {\n    ca_file = \"ca.pem\"\n    key_file = [\"/k\"]\n  }\n}\n", []string{
			`a.hcl:2:15: Invalid value for "etcd.endpoints": a list(string) is required, not number`,
			`a.hcl:5:16: Invalid value for "etcd.tls.key_file": a string is required, not tuple`}},
		{"etcd tls path", "etcd {\n  endpoints = [\"https://e:2379\"]\n  tls {\n    ca_file = \"ca.pem\"\n  }\n}\n", []string{
			`a.hcl:4:15: Invalid value for "etcd.tls.ca_file": "ca.pem" is not an absolute path.`}},
		{"ipam cni_spool_dir", "ipam {\n  cni_spool_dir = \"spool\"\n}\n", []string{`a.hcl:2:19: Invalid value for "ipam.cni_spool_dir"`}},
		{"node name", "node_name = \"a/b\"\n", []string{`a.hcl:1:13: Invalid value for "node_name"`}},
		{"many at once", "health_port = 0\nlog_level = \"x\"\nhelth = 1\n", []string{`a.hcl:1:15`, `a.hcl:2:13`, `a.hcl:3:1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"a.hcl": tt.hcl})
			msg := loadErr(t, LoadOptions{ConfigDir: dir})
			wantContains(t, msg, tt.want...)
			// Positions are full paths.
			wantContains(t, msg, filepath.Join(dir, "a.hcl")+":")
		})
	}

	t.Run("problems from every layer", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.hcl": "health_port = 0\n", "conf.yml": "enableIPv4: x\n"})
		_, err := Load(LoadOptions{ConfigDir: dir,
			Lookup: env(map[string]string{"SPIDERPOOL_METRIC_HTTP_PORT": "x"}),
			Flags:  []Flag{{Key: "log_level", Value: "loud", Name: "--log-level"}}})
		ce, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %T %v", err, err)
		}
		var kinds []string
		for _, p := range ce.Problems {
			kinds = append(kinds, p.Source.Kind)
		}
		if want := []string{KindConfYML, KindFile, KindEnv, KindFlag}; !reflect.DeepEqual(kinds, want) {
			t.Errorf("problem kinds = %v, want %v:\n%v", kinds, want, err)
		}
		if len(ce.Diagnostics) != 1 {
			t.Errorf("%d diagnostics, want 1", len(ce.Diagnostics))
		}
		wantContains(t, err.Error(), `--log-level="loud": not a log level`)
		if ce.Problems[1].Source.Where != filepath.Join(dir, "a.hcl")+":1:15" {
			t.Errorf("HCL problem source = %v", ce.Problems[1].Source)
		}
	})
}

// TestLexicalMerge: files apply in lexical order of their names, later
// overriding earlier; other files are ignored. (A directory named *.hcl is
// an error: TestConfigFilesAreReadWithBounds.)
func TestLexicalMerge(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"10-a.hcl":    "log_level = \"debug\"\nhealth_port = 6001\ngops_port = 6100\n",
		"2-b.hcl":     "health_port = 6002\n",
		"20-c.hcl":    "log_level = \"warn\"\n",
		"notes.txt":   "not = hcl = at all",
		"x.hcl.bak":   "garbage {",
		".hidden.hcl": "garbage {",
	})
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	wantFiles := []string{filepath.Join(dir, "10-a.hcl"), filepath.Join(dir, "2-b.hcl"), filepath.Join(dir, "20-c.hcl")}
	if !reflect.DeepEqual(c.Files, wantFiles) {
		t.Errorf("Files = %v, want %v", c.Files, wantFiles)
	}
	if c.LogLevel != "warn" || c.HealthPort != 6002 || c.GopsPort != 6100 {
		t.Errorf("log_level %q health_port %d gops_port %d", c.LogLevel, c.HealthPort, c.GopsPort)
	}
	for key, where := range map[string]string{
		"log_level":   filepath.Join(dir, "20-c.hcl") + ":1:1",
		"health_port": filepath.Join(dir, "2-b.hcl") + ":1:1",
		"gops_port":   filepath.Join(dir, "10-a.hcl") + ":3:1",
	} {
		if s := setting(t, c, key).Source; s != (Source{Kind: KindFile, Where: where}) {
			t.Errorf("%s source = %v, want %s", key, s, where)
		}
	}
}

func TestPluginMerge(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"10-a.hcl": `plugin "ip-conflict" {
  timeout = "2s"
  enabled = false
  config {
    window = "50ms"
    probes = 5
  }
}
plugin "zz-third" {
  path = "/opt/zz"
}
`,
		"20-b.hcl": `plugin "ip-conflict" {
  failure_policy = "fail-open"
  enabled        = true
  config {
    retries = 1
  }
}
plugin "aa-third" {
  enabled = false
}
plugin "zz-third" {
  checksum = "sha256:` + strings.Repeat("ab", 32) + `"
}
`,
	})
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	a, b := filepath.Join(dir, "10-a.hcl"), filepath.Join(dir, "20-b.hcl")

	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Name)
	}
	if want := []string{"aa-third", "gateway-detector", "ip-conflict", "sysctl-tuner", "zz-third"}; !reflect.DeepEqual(names, want) {
		t.Errorf("plugins = %v, want %v", names, want)
	}

	p := c.Plugin("ip-conflict")
	if p.Timeout != 2*time.Second || p.FailurePolicy != state.FailOpen || !p.Enabled {
		t.Errorf("ip-conflict = %+v", p)
	}
	if got := strings.TrimSpace(string(p.Config.Body)); got != "retries = 1" {
		t.Errorf("config body = %q, want the later block whole", got)
	}
	if p.Config.Filename != b {
		t.Errorf("config filename = %q", p.Config.Filename)
	}
	if p.DeclRange.Filename != a || p.DeclRange.Start.Line != 1 {
		t.Errorf("DeclRange = %v, want the first declaration in %s", p.DeclRange, a)
	}
	for key, where := range map[string]string{
		"plugin.ip-conflict.timeout":        a + ":2:3",
		"plugin.ip-conflict.enabled":        b + ":3:3",
		"plugin.ip-conflict.failure_policy": b + ":2:3",
		"plugin.ip-conflict.config":         b + ":4:3",
		"plugin.zz-third.path":              a + ":10:3",
		"plugin.zz-third.checksum":          b + ":12:3",
	} {
		if s := setting(t, c, key).Source; s != (Source{Kind: KindFile, Where: where}) {
			t.Errorf("%s source = %v, want %s", key, s, where)
		}
	}
	zz := c.Plugin("zz-third")
	if !zz.Enabled || zz.Path != "/opt/zz" || zz.Timeout != DefaultPluginTimeout || zz.FailurePolicy != state.FailClosed {
		t.Errorf("zz-third = %+v", zz)
	}
	if got, _ := zz.BinaryPath(c.PluginDirs()); got != "/opt/zz" {
		t.Errorf("BinaryPath = %q", got)
	}
	if got, found := c.Plugin("aa-third").BinaryPath([]string{"/p"}); got != "/p/spiderpool-plugin-aa-third" || found {
		t.Errorf("BinaryPath = %q, %v", got, found)
	}
	if s := setting(t, c, "plugin.gateway-detector.enabled").Source; s.Kind != KindDefault {
		t.Errorf("untouched built-in source = %v", s)
	}
	if c.Plugin("gateway-detector").DeclRange.Filename != "" {
		t.Errorf("untouched built-in has a DeclRange")
	}
}

func TestChecksum(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		value, want string
		ok          bool
	}{
		{"sha256:" + hex, "sha256:" + hex, true},
		{"sha256:" + strings.ToUpper(hex), "sha256:" + hex, true},
		{"", "", true},
		{hex, "", false},
		{"sha256:" + hex[:63], "", false},
		{"sha256:" + hex + "0", "", false},
		{"sha512:" + hex, "", false},
		{"sha256:" + hex[:63] + "g", "", false},
		{"SHA256:" + hex, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"a.hcl": "plugin \"ip-conflict\" {\n  checksum = \"" + tt.value + "\"\n}\n"})
			if !tt.ok {
				wantContains(t, loadErr(t, LoadOptions{ConfigDir: dir}),
					`a.hcl:2:14: Invalid value for "plugin.ip-conflict.checksum"`, `is not a checksum "sha256:" followed by 64 hex digits`)
				return
			}
			c := mustLoad(t, LoadOptions{ConfigDir: dir})
			if got := c.Plugin("ip-conflict").Checksum; got != tt.want {
				t.Errorf("checksum = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("flag", func(t *testing.T) {
		wantContains(t, loadErr(t, LoadOptions{Flags: []Flag{{Key: "plugin.ip-conflict.checksum", Value: "md5:x", Name: "--checksum"}}}),
			`--checksum="md5:x": not a checksum`)
	})
}

func TestFlags(t *testing.T) {
	c := mustLoad(t, LoadOptions{Flags: []Flag{
		{Key: "health_port", Value: "7000", Name: "--health-port"},
		{Key: "metrics.enabled", Value: "1"},
		{Key: "gops_port", Value: ""},
		{Key: "shutdown_timeout", Value: "1m"},
		{Key: "plugin.sysctl-tuner.timeout", Value: "9s"},
	}})
	if c.HealthPort != 7000 || !c.Metrics.Enabled || c.GopsPort != 0 || c.ShutdownTimeout != time.Minute ||
		c.Plugin("sysctl-tuner").Timeout != 9*time.Second {
		t.Errorf("flags not applied: %+v", c.Settings())
	}
	if s := setting(t, c, "health_port").Source; s != (Source{Kind: KindFlag, Where: "--health-port"}) {
		t.Errorf("source = %v", s)
	}
	if s := setting(t, c, "metrics.enabled").Source; s != (Source{Kind: KindFlag, Where: "--metrics.enabled"}) {
		t.Errorf("source = %v", s)
	}

	tests := []struct {
		flag Flag
		want string
	}{
		{Flag{Key: "health_port", Value: "abc", Name: "--health-port"}, `--health-port="abc": not a port number (1-65535)`},
		{Flag{Key: "health_prot", Value: "1"}, `--health_prot: unknown configuration key "health_prot"`},
		{Flag{Key: "plugin.nope.enabled", Value: "true"}, `unknown plugin "nope"`},
		{Flag{Key: "plugin.ip-conflict.config", Value: "x"}, `cannot be set by a flag`},
		{Flag{Key: "plugin.x", Value: "x"}, `unknown configuration key`},
		{Flag{Key: "log_level", Value: ""}, `--log_level="": not a log level`},
	}
	for _, tt := range tests {
		wantContains(t, loadErr(t, LoadOptions{Flags: []Flag{tt.flag}}), tt.want)
	}
}

func TestCrossChecks(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) LoadOptions
		want []string
	}{
		{"no IP family", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigDir: writeDir(t, map[string]string{"conf.yml": "enableIPv4: false\n"}),
				Flags: []Flag{{Key: "enable_ipv6", Value: "false", Name: "--enable-ipv6"}}}
		}, []string{"enable_ipv4 (conf.yml (", "conf.yml:1)) and enable_ipv6 (flag (--enable-ipv6)) are both false"}},
		{"health and metrics port", func(t *testing.T) LoadOptions {
			return LoadOptions{Lookup: env(map[string]string{"SPIDERPOOL_ENABLED_METRIC": "true", "SPIDERPOOL_METRIC_HTTP_PORT": "5710"})}
		}, []string{"health_port (default) and metrics.port (env (SPIDERPOOL_METRIC_HTTP_PORT)) are both 5710"}},
		{"gops and health port", func(t *testing.T) LoadOptions {
			return LoadOptions{Flags: []Flag{{Key: "gops_port", Value: "5710"}}}
		}, []string{"health_port (default) and gops_port (flag (--gops_port)) are both 5710"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantContains(t, loadErr(t, tt.opts(t)), tt.want...)
		})
	}
	// The metrics port may equal the health port while metrics are off.
	mustLoad(t, LoadOptions{Lookup: env(map[string]string{"SPIDERPOOL_METRIC_HTTP_PORT": "5710"})})
}

func TestConfigDirs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	wantContains(t, loadErr(t, LoadOptions{ConfigDir: missing}), `--config-dir "`+missing+`": no such file or directory`)
	wantContains(t, loadErr(t, LoadOptions{IPAMConfigDir: missing}), `--ipam-config-dir "`+missing+`": no such directory`)
	file := filepath.Join(writeDir(t, map[string]string{"f": ""}), "f")
	wantContains(t, loadErr(t, LoadOptions{IPAMConfigDir: file}), `--ipam-config-dir "`+file+`": not a directory`)

	empty := t.TempDir()
	c := mustLoad(t, LoadOptions{ConfigDir: empty, IPAMConfigDir: empty})
	if len(c.Files) != 0 || c.ConfigDir != empty || c.IPAMConfigDir != empty {
		t.Errorf("Files %v ConfigDir %q IPAMConfigDir %q", c.Files, c.ConfigDir, c.IPAMConfigDir)
	}
	if !reflect.DeepEqual(c.Settings(), Default().Settings()) {
		t.Errorf("an empty directory does not give the defaults")
	}

	// A named file is read whatever its extension.
	named := filepath.Join(writeDir(t, map[string]string{"agent.conf": "log_level = \"error\"\n"}), "agent.conf")
	if c := mustLoad(t, LoadOptions{ConfigDir: named}); c.LogLevel != "error" {
		t.Errorf("log_level = %q", c.LogLevel)
	}

	if os.Geteuid() != 0 { // root reads anything
		dir := writeDir(t, map[string]string{"a.hcl": "log_level = \"debug\"\n"})
		if err := os.Chmod(filepath.Join(dir, "a.hcl"), 0); err != nil {
			t.Fatal(err)
		}
		wantContains(t, loadErr(t, LoadOptions{ConfigDir: dir}), filepath.Join(dir, "a.hcl")+": ")
	}
}

func TestSettings(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"conf.yml": "enableIPv6: false\n",
		"a.hcl":    "log_level = \"debug\"\n\nplugin \"ip-conflict\" {\n  config {\n    window = \"1s\"\n  }\n}\n",
	})
	c := mustLoad(t, LoadOptions{ConfigDir: dir,
		Lookup: env(map[string]string{"SPIDERPOOL_HEALTH_PORT": "6000"}),
		Flags:  []Flag{{Key: "metrics.port", Value: "6001", Name: "--port"}},
	})
	got := c.Settings()
	var keys []string
	for _, s := range got {
		keys = append(keys, s.Key)
	}
	wantKeys := []string{"log_level", "log_format", "plugin_dir", "socket_path", "health_port", "gops_port", "node_name",
		"enable_ipv4", "enable_ipv6", "shutdown_timeout", "metrics.enabled", "metrics.port", "metrics.address",
		"ipam.max_allocated_ips", "ipam.max_history_records", "ipam.update_max_retries", "ipam.workload_retention",
		"ipam.db_path", "ipam.gc_interval", "ipam.gc_grace_period", "ipam.allocation_timeout", "ipam.cni_spool_dir",
		"supervisor.start_timeout", "supervisor.health_interval", "supervisor.restart_initial_backoff",
		"supervisor.restart_max_backoff", "supervisor.restart_budget", "supervisor.stable_after",
		"supervisor.plugin_memory_max_mb", "supervisor.plugin_pids_max", "supervisor.plugin_log_rate", "supervisor.plugin_log_burst"}
	for _, name := range []string{"gateway-detector", "ip-conflict", "sysctl-tuner"} {
		for _, a := range []string{"enabled", "path", "checksum", "timeout", "failure_policy", "component", "config"} {
			wantKeys = append(wantKeys, "plugin."+name+"."+a)
		}
	}
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Fatalf("keys =\n%v\nwant\n%v", keys, wantKeys)
	}
	hcl := filepath.Join(dir, "a.hcl")
	want := map[string]Setting{
		"log_level":                   {"log_level", "debug", Source{KindFile, hcl + ":1:1"}},
		"enable_ipv6":                 {"enable_ipv6", "false", Source{KindConfYML, filepath.Join(dir, "conf.yml") + ":1"}},
		"health_port":                 {"health_port", "6000", Source{KindEnv, "SPIDERPOOL_HEALTH_PORT"}},
		"metrics.port":                {"metrics.port", "6001", Source{KindFlag, "--port"}},
		"shutdown_timeout":            {"shutdown_timeout", "10s", Source{KindDefault, ""}},
		"plugin.ip-conflict.timeout":  {"plugin.ip-conflict.timeout", "5s", Source{KindDefault, ""}},
		"plugin.ip-conflict.config":   {"plugin.ip-conflict.config", "<21 bytes>", Source{KindFile, hcl + ":4:3"}},
		"plugin.sysctl-tuner.config":  {"plugin.sysctl-tuner.config", "", Source{KindDefault, ""}},
		"plugin.sysctl-tuner.enabled": {"plugin.sysctl-tuner.enabled", "true", Source{KindDefault, ""}},
	}
	for _, s := range got {
		if w, ok := want[s.Key]; ok && s != w {
			t.Errorf("setting %+v, want %+v", s, w)
		}
	}
	if src, ok := c.Source("health_port"); !ok || src.String() != "env (SPIDERPOOL_HEALTH_PORT)" {
		t.Errorf("Source(health_port) = %v %v", src, ok)
	}
	if _, ok := c.Source("nope"); ok {
		t.Errorf("Source(nope) found")
	}
	// Stable: same input, same output.
	c2 := mustLoad(t, LoadOptions{ConfigDir: dir,
		Lookup: env(map[string]string{"SPIDERPOOL_HEALTH_PORT": "6000"}),
		Flags:  []Flag{{Key: "metrics.port", Value: "6001", Name: "--port"}},
	})
	if !reflect.DeepEqual(c2.Settings(), got) {
		t.Errorf("Settings not stable")
	}
}

// TestHugeNumber: a huge literal is rejected quickly.
func TestHugeNumber(t *testing.T) {
	for _, n := range []string{"1e9999999", "-1e9999999", "1e-9999999", "123456789012345678901234567890"} {
		start := time.Now()
		msg := loadErr(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"a.hcl": "health_port = " + n + "\n"})})
		wantContains(t, msg, `a.hcl:1:15: Invalid value for "health_port"`)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v", n, d)
		}
	}
}

// make faults found that 100,000 nested brackets overflow the parser's
// stack and kill the daemon; they are an error with a position instead.
func TestDeepNestingIsAnError(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.hcl": "log_level = \"info\"\nplugin_dir = " + strings.Repeat("[", 100000) + "\n"})
	got := loadErr(t, LoadOptions{ConfigDir: dir})
	if !strings.Contains(got, "a.hcl:2:") || !strings.Contains(got, "Nesting too deep") {
		t.Errorf("Load = %q", got)
	}
}

// TestEtcdBlock checks that the etcd block reaches the Config whole.
func TestEtcdBlock(t *testing.T) {
	dir := t.TempDir()
	src := `node_name = "n1"
etcd {
  endpoints       = ["http://10.0.0.1:2379", "https://10.0.0.2:2379"]
  prefix          = "/rack1/"
  dial_timeout    = "3s"
  request_timeout = "1s"
  outage_wait     = "0s"
  username        = "sp"
  password_file   = "/etc/pw"
  tls {
    ca_file   = "/ca.pem"
    cert_file = "/c.pem"
    key_file  = "/k.pem"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "a.hcl"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	e := c.Etcd
	if c.NodeName != "n1" || len(e.Endpoints) != 2 || e.Endpoints[1] != "https://10.0.0.2:2379" || e.Prefix != "/rack1/" ||
		e.DialTimeout != 3*time.Second || e.RequestTimeout != time.Second || e.Username != "sp" || e.PasswordFile != "/etc/pw" ||
		e.CAFile != "/ca.pem" || e.CertFile != "/c.pem" || e.KeyFile != "/k.pem" || e.OutageWait != 0 {
		t.Fatalf("node %q etcd %+v", c.NodeName, e)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := (&Config{}).ResolvedNodeName(); err != nil || n != host {
		t.Fatalf("default node name %q, %v; want the hostname %q", n, err, host)
	}
	if n, err := c.ResolvedNodeName(); err != nil || n != "n1" {
		t.Fatalf("node name %q, %v; want node_name's n1", n, err)
	}
}
