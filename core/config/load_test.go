package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
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
		if !p.Enabled || p.Timeout != 5*time.Second || p.FailurePolicy != api.FailClosed || p.Path != "" ||
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

// TestPrecedence sets socket_path (the one key every layer can set) in every
// pair of layers and checks that the higher layer wins, then other keys in
// the layers that can set them.
func TestPrecedence(t *testing.T) {
	type layer struct {
		kind  string
		value string
	}
	layers := []layer{
		{KindDefault, api.DefaultSocketPath},
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
