package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

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
	if p.Timeout != 2*time.Second || p.FailurePolicy != api.FailOpen || !p.Enabled {
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
	if !zz.Enabled || zz.Path != "/opt/zz" || zz.Timeout != DefaultPluginTimeout || zz.FailurePolicy != api.FailClosed {
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
