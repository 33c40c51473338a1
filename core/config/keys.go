package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// valueKind is the Go type of a setting.
type valueKind int

const (
	kindString valueKind = iota
	kindInt
	kindBool
	kindDuration
)

// keySpec describes one setting: how to find it in a Config (or a
// PluginConfig), how to read it from text and what values it accepts.
type keySpec struct {
	name string // "health_port", "metrics.port"; for plugin keys the attribute name
	kind valueKind
	env  string // environment variable, or ""
	// confYML is the conf.yml key that sets it, for documentation.
	confYML string
	desc    string
	// want completes "not ..." in an error: "a port number (1-65535)".
	want string
	// check validates (and may normalise) a parsed value.
	check func(v any) (any, bool)
	// emptyEnv, when set, is the value of the variable set but empty;
	// otherwise an empty variable counts as unset.
	emptyEnv any
	ptr      func(c *Config) any       // global keys: pointer to the field
	pptr     func(p *PluginConfig) any // plugin keys: pointer to the field
}

var logLevels = []string{"debug", "info", "warn", "error", "fatal", "panic"}

func oneOf(allowed ...string) func(any) (any, bool) {
	return func(v any) (any, bool) {
		s := strings.ToLower(strings.TrimSpace(v.(string)))
		for _, a := range allowed {
			if s == a {
				return s, true
			}
		}
		return nil, false
	}
}

func intRange(lo, hi int) func(any) (any, bool) {
	return func(v any) (any, bool) {
		n := v.(int)
		return n, n >= lo && n <= hi
	}
}

// nodeName accepts what the etcd store can key a heartbeat by; "" means
// the hostname.
func nodeName(v any) (any, bool) {
	s := strings.TrimSpace(v.(string))
	return s, len(s) <= 253 && !strings.ContainsAny(s, "/\x00 \t\n")
}

func positiveDuration(v any) (any, bool) {
	d := v.(time.Duration)
	return d, d > 0
}

func durationRange(lo, hi time.Duration) func(any) (any, bool) {
	return func(v any) (any, bool) {
		d := v.(time.Duration)
		return d, d >= lo && d <= hi
	}
}

func anyBool(v any) (any, bool) { return v, true }

func ipAddress(v any) (any, bool) {
	s := strings.TrimSpace(v.(string))
	return s, net.ParseIP(s) != nil
}

// absPath accepts an absolute path only: a relative one would depend on the
// directory the daemon happens to start in (/ under systemd).
func absPath(v any) (any, bool) {
	s := v.(string)
	return s, strings.HasPrefix(s, "/") && !strings.ContainsRune(s, 0)
}

// absPathList accepts absolute paths separated by ":" (like $PATH).
func absPathList(v any) (any, bool) {
	s := v.(string)
	for _, p := range strings.Split(s, ":") {
		if _, ok := absPath(p); !ok {
			return nil, false
		}
	}
	return s, true
}

func absPathOrEmpty(v any) (any, bool) {
	s := v.(string)
	return s, s == "" || strings.HasPrefix(s, "/")
}

// componentName accepts "" (not a set) or a name a plugin set can serve.
func componentName(v any) (any, bool) {
	s := v.(string)
	return s, s == "" || PluginNameRE.MatchString(s)
}

var checksumRE = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)

func checksum(v any) (any, bool) {
	s := strings.TrimSpace(v.(string))
	if s == "" {
		return "", true
	}
	if !checksumRE.MatchString(s) {
		return nil, false
	}
	return strings.ToLower(s), true
}

const (
	wantPort        = "a port number (1-65535)"
	wantPortOrZero  = "a port number (1-65535) or 0 to disable"
	wantBool        = "a boolean (true/false, 1/0, yes/no)"
	wantDuration    = `a positive duration such as "10s" or "500ms"`
	wantAbsPath     = "an absolute path"
	wantAtLeastOne  = "a whole number >= 1"
	wantAtLeastZero = "a whole number >= 0"
)

// globalKeys are the top-level and block settings, in Settings order.
var globalKeys = []*keySpec{
	{name: "log_level", kind: kindString, env: "SPIDERPOOL_LOG_LEVEL",
		desc: `log level: debug, info, warn, error, fatal, panic (fatal and panic log errors only)`,
		want: "a log level (debug, info, warn, error, fatal, panic)", check: oneOf(logLevels...),
		ptr: func(c *Config) any { return &c.LogLevel }},
	{name: "log_format", kind: kindString, env: "SPIDERPOOL_LOG_FORMAT",
		desc: `log format: text or json`,
		want: `a log format ("text" or "json")`, check: oneOf("text", "json"),
		ptr: func(c *Config) any { return &c.LogFormat }},
	{name: "plugin_dir", kind: kindString, env: "SPIDERPOOL_PLUGIN_DIR",
		desc: `directories of the plugin binaries (spiderpool-plugin-NAME), separated by ":" and searched in order`,
		want: "absolute paths separated by \":\"", check: absPathList,
		ptr: func(c *Config) any { return &c.PluginDir }},
	{name: "socket_path", kind: kindString, env: "SPIDERPOOL_SOCKET_PATH", confYML: "ipamUnixSocketPath",
		desc: "unix socket of the control API",
		want: wantAbsPath, check: absPath,
		ptr: func(c *Config) any { return &c.SocketPath }},
	{name: "health_port", kind: kindInt, env: "SPIDERPOOL_HEALTH_PORT",
		desc: "health HTTP port",
		want: wantPort, check: intRange(1, 65535),
		ptr: func(c *Config) any { return &c.HealthPort }},
	{name: "gops_port", kind: kindInt, env: "SPIDERPOOL_GOPS_LISTEN_PORT", emptyEnv: 0,
		desc: "port of the gops agent on 127.0.0.1; 0 (or the variable set but empty) disables it",
		want: wantPortOrZero, check: intRange(0, 65535),
		ptr: func(c *Config) any { return &c.GopsPort }},
	{name: "node_name", kind: kindString, env: "SPIDERPOOL_NODE_NAME",
		desc: "this agent's name in a shared (etcd) IPAM store, recorded with each allocation; empty: the hostname",
		want: "a node name (no '/', at most 253 characters)", check: nodeName,
		ptr: func(c *Config) any { return &c.NodeName }},
	{name: "enable_ipv4", kind: kindBool, confYML: "enableIPv4",
		desc: "handle IPv4",
		want: wantBool, check: anyBool,
		ptr: func(c *Config) any { return &c.EnableIPv4 }},
	{name: "enable_ipv6", kind: kindBool, confYML: "enableIPv6",
		desc: "handle IPv6",
		want: wantBool, check: anyBool,
		ptr: func(c *Config) any { return &c.EnableIPv6 }},
	{name: "shutdown_timeout", kind: kindDuration,
		desc: "bound of a graceful stop",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.ShutdownTimeout }},
	{name: "metrics.enabled", kind: kindBool, env: "SPIDERPOOL_ENABLED_METRIC",
		desc: "serve metrics",
		want: wantBool, check: anyBool,
		ptr: func(c *Config) any { return &c.Metrics.Enabled }},
	{name: "metrics.port", kind: kindInt, env: "SPIDERPOOL_METRIC_HTTP_PORT",
		desc: "metrics HTTP port",
		want: wantPort, check: intRange(1, 65535),
		ptr: func(c *Config) any { return &c.Metrics.Port }},
	{name: "metrics.address", kind: kindString,
		desc: "IP address the metrics server listens on",
		want: "an IP address", check: ipAddress,
		ptr: func(c *Config) any { return &c.Metrics.Address }},
	{name: "ipam.max_allocated_ips", kind: kindInt, env: "SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS",
		desc: "most addresses one pool may hand out",
		want: wantAtLeastOne, check: intRange(1, maxInt),
		ptr: func(c *Config) any { return &c.IPAM.MaxAllocatedIPs }},
	{name: "ipam.max_history_records", kind: kindInt, env: "SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS",
		desc: fmt.Sprintf("allocation history kept per workload (at most %d)", ipam.MaxHistoryCap),
		want: fmt.Sprintf("a whole number from 1 to %d", ipam.MaxHistoryCap), check: intRange(1, ipam.MaxHistoryCap),
		ptr: func(c *Config) any { return &c.IPAM.MaxHistoryRecords }},
	{name: "ipam.update_max_retries", kind: kindInt, env: "SPIDERPOOL_UPDATE_CR_MAX_RETRIES",
		desc: "retries of optimistic updates of shared IPAM records",
		want: wantAtLeastZero, check: intRange(0, maxInt),
		ptr: func(c *Config) any { return &c.IPAM.UpdateMaxRetries }},
	{name: "ipam.workload_retention", kind: kindDuration,
		desc:  "how long the endpoint and history of a workload that holds no address are kept after its last release",
		want:  fmt.Sprintf("a duration from %v to %v", ipam.MinWorkloadRetention, ipam.MaxWorkloadRetention),
		check: durationRange(ipam.MinWorkloadRetention, ipam.MaxWorkloadRetention),
		ptr:   func(c *Config) any { return &c.IPAM.WorkloadRetention }},
	{name: "ipam.db_path", kind: kindString,
		desc: "file of the embedded IPAM store (bbolt)",
		want: wantAbsPath, check: absPath,
		ptr: func(c *Config) any { return &c.IPAM.DBPath }},
	{name: "ipam.gc_interval", kind: kindDuration,
		desc: "how often IPAM looks for allocations whose network namespace is gone",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.IPAM.GCInterval }},
	{name: "ipam.gc_grace_period", kind: kindDuration,
		desc: "wait between IPAM GC's two looks at a namespace before its allocation is released",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.IPAM.GCGracePeriod }},
	{name: "ipam.allocation_timeout", kind: kindDuration,
		desc:  "deadline of one allocation, after which what it reserved is released and it fails with \"try again\"; below the CNI plugin's wait for the answer",
		want:  fmt.Sprintf("a duration between %s and %s", api.MinAllocationTimeout, api.MaxAllocationTimeout),
		check: durationRange(api.MinAllocationTimeout, api.MaxAllocationTimeout),
		ptr:   func(c *Config) any { return &c.IPAM.AllocationTimeout }},
	{name: "ipam.cni_spool_dir", kind: kindString,
		desc: "directory of the CNI DELs the plugin could not deliver (the network configuration's ipam.spool_dir)",
		want: wantAbsPath, check: absPath,
		ptr: func(c *Config) any { return &c.IPAM.CNISpoolDir }},
	{name: "supervisor.start_timeout", kind: kindDuration,
		desc: "bound of a plugin's start and handshake",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.Supervisor.StartTimeout }},
	{name: "supervisor.health_interval", kind: kindDuration,
		desc: "how often plugin health and metrics are collected; 3 misses in a row restart the plugin",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.Supervisor.HealthInterval }},
	{name: "supervisor.restart_initial_backoff", kind: kindDuration,
		desc: "wait before the first restart of a plugin that died; doubles with each restart in a row",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.Supervisor.RestartInitialBackoff }},
	{name: "supervisor.restart_max_backoff", kind: kindDuration,
		desc: "cap of the restart backoff",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.Supervisor.RestartMaxBackoff }},
	{name: "supervisor.restart_budget", kind: kindInt,
		desc: "restarts in a row before a plugin is disabled",
		want: wantAtLeastOne, check: intRange(1, maxInt),
		ptr: func(c *Config) any { return &c.Supervisor.RestartBudget }},
	{name: "supervisor.stable_after", kind: kindDuration,
		desc: "run time after which the restart backoff and budget start over",
		want: wantDuration, check: positiveDuration,
		ptr: func(c *Config) any { return &c.Supervisor.StableAfter }},
	{name: "supervisor.plugin_memory_max_mb", kind: kindInt,
		desc: "memory limit of each plugin in MiB (its cgroup's, children included, where cgroups are available; RLIMIT_DATA per process; GOMEMLIMIT at 90%); 0 is unlimited",
		want: "0 (unlimited) or a whole number of MiB >= 128", check: memoryMB,
		ptr: func(c *Config) any { return &c.Supervisor.PluginMemoryMaxMB }},
	{name: "supervisor.plugin_pids_max", kind: kindInt,
		desc: "processes and threads each plugin may have, children included (its cgroup's pids.max; needs cgroups); 0 is no limit",
		want: "0 (no limit) or a number of processes >= 32", check: pidsMax,
		ptr: func(c *Config) any { return &c.Supervisor.PluginPidsMax }},
	{name: "supervisor.plugin_log_rate", kind: kindInt,
		desc: "log lines a second each plugin may write to the agent's log; more are dropped and counted",
		want: wantAtLeastOne, check: intRange(1, maxInt),
		ptr: func(c *Config) any { return &c.Supervisor.PluginLogRate }},
	{name: "supervisor.plugin_log_burst", kind: kindInt,
		desc: "log lines each plugin may write at once above plugin_log_rate",
		want: wantAtLeastOne, check: intRange(1, maxInt),
		ptr: func(c *Config) any { return &c.Supervisor.PluginLogBurst }},
}

// memoryMB accepts 0 (no limit) or 128 MiB and more: the Go runtime alone
// needs about 64 MiB of data segment to start.
func memoryMB(v any) (any, bool) {
	n := v.(int)
	return n, n == 0 || n >= 128 && n <= 1<<30
}

// pidsMax allows 0 or room for a Go plugin's own threads (a dozen or so)
// and some children.
func pidsMax(v any) (any, bool) {
	n := v.(int)
	return n, n == 0 || n >= 32 && n <= 1<<22
}

const maxInt = int(^uint(0) >> 1)

// pluginKeys are the attributes of a plugin block (config is a block and
// handled apart), in Settings order.
var pluginKeys = []*keySpec{
	{name: "enabled", kind: kindBool, want: wantBool, check: anyBool,
		pptr: func(p *PluginConfig) any { return &p.Enabled }},
	{name: "path", kind: kindString, want: wantAbsPath, check: absPathOrEmpty,
		pptr: func(p *PluginConfig) any { return &p.Path }},
	{name: "checksum", kind: kindString, want: `a checksum "sha256:" followed by 64 hex digits`, check: checksum,
		pptr: func(p *PluginConfig) any { return &p.Checksum }},
	{name: "timeout", kind: kindDuration, want: wantDuration, check: positiveDuration,
		pptr: func(p *PluginConfig) any { return &p.Timeout }},
	{name: "failure_policy", kind: kindString, want: `a failure policy ("fail-closed" or "fail-open")`,
		check: oneOf(api.FailClosed, api.FailOpen),
		pptr:  func(p *PluginConfig) any { return &p.FailurePolicy }},
	{name: "component", kind: kindString, want: "a component name (lowercase letters, digits and dashes)", check: componentName,
		pptr: func(p *PluginConfig) any { return &p.Component }},
}

// keysIn returns the specs of the keys under prefix ("" for top level,
// "metrics.", "ipam."), by their attribute names.
func keysIn(prefix string) map[string]*keySpec {
	out := map[string]*keySpec{}
	for _, k := range globalKeys {
		rest, ok := strings.CutPrefix(k.name, prefix)
		if ok && !strings.Contains(rest, ".") {
			out[rest] = k
		}
	}
	return out
}

func globalKey(name string) *keySpec {
	for _, k := range globalKeys {
		if k.name == name {
			return k
		}
	}
	return nil
}

func pluginKeySpec(attr string) *keySpec {
	for _, k := range pluginKeys {
		if k.name == attr {
			return k
		}
	}
	return nil
}

// parseText reads a value of k from an environment variable or a flag.
// ok is false when the text is not acceptable.
func (k *keySpec) parseText(s string) (any, bool) {
	var v any
	switch k.kind {
	case kindString:
		v = s
	case kindInt:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, false
		}
		v = n
	case kindBool:
		b, ok := parseBool(s)
		if !ok {
			return nil, false
		}
		v = b
	case kindDuration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, false
		}
		v = d
	}
	return k.check(v)
}

// parseBool accepts true/false/1/0/yes/no in any case.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes":
		return true, true
	case "false", "0", "no":
		return false, true
	}
	return false, false
}

// set stores v, of k's kind, through the pointer dst.
func set(dst any, v any) {
	switch p := dst.(type) {
	case *string:
		*p = v.(string)
	case *int:
		*p = v.(int)
	case *bool:
		*p = v.(bool)
	case *time.Duration:
		*p = v.(time.Duration)
	default:
		panic(fmt.Sprintf("config: unsupported field type %T", dst))
	}
}

// render renders the value behind the pointer p.
func render(p any) string {
	switch v := p.(type) {
	case *string:
		return *v
	case *int:
		return strconv.Itoa(*v)
	case *bool:
		return strconv.FormatBool(*v)
	case *time.Duration:
		return v.String()
	}
	return fmt.Sprint(p)
}

func renderRaw(r sdk.RawConfig) string {
	if len(r.Body) == 0 {
		return ""
	}
	return fmt.Sprintf("<%d bytes>", len(r.Body))
}

// EnvVar is one environment variable the agent reads.
type EnvVar struct {
	// Name is the variable: "SPIDERPOOL_HEALTH_PORT".
	Name string
	// Key is the config key it sets: "health_port".
	Key string
	// Default is the built-in default, rendered as text.
	Default string
	// Description says what it does.
	Description string
}

// EnvVars lists the environment variables the agent reads, in a fixed order.
func EnvVars() []EnvVar {
	d := Default()
	var out []EnvVar
	for _, k := range globalKeys {
		if k.env == "" {
			continue
		}
		out = append(out, EnvVar{Name: k.env, Key: k.name, Default: render(k.ptr(d)), Description: k.desc})
	}
	return out
}
