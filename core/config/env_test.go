package config

import (
	"fmt"
	"testing"
)

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
