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
	valueType
	env string // environment variable, or ""
	// confYML is the conf.yml key that sets it, for documentation.
	confYML string
	desc    string
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

// valueType is what a setting holds and accepts.
type valueType struct {
	kind valueKind
	// want completes "not ..." in an error: "a port number (1-65535)".
	want string
	// check validates (and may normalise) a parsed value.
	check func(v any) (any, bool)
}

// The value types several settings share.
var (
	aPort       = valueType{kindInt, "a port number (1-65535)", intRange(1, 65535)}
	aPortOrZero = valueType{kindInt, "a port number (1-65535) or 0 to disable", intRange(0, 65535)}
	aBool       = valueType{kindBool, "a boolean (true/false, 1/0, yes/no)", anyBool}
	aDuration   = valueType{kindDuration, `a positive duration such as "10s" or "500ms"`, positiveDuration}
	anAbsPath   = valueType{kindString, "an absolute path", absPath}
	atLeastOne  = valueType{kindInt, "a whole number >= 1", intRange(1, maxInt)}
	atLeastZero = valueType{kindInt, "a whole number >= 0", intRange(0, maxInt)}
)

// globalKeys are the top-level and block settings, in Settings order.
var globalKeys = []*keySpec{
	{name: "log_level", env: "SPIDERPOOL_LOG_LEVEL",
		valueType: valueType{kindString, "a log level (debug, info, warn, error, fatal, panic)", oneOf(logLevels...)},
		desc:      `log level: debug, info, warn, error, fatal, panic (fatal and panic log errors only)`,
		ptr:       func(c *Config) any { return &c.LogLevel }},
	{name: "log_format", env: "SPIDERPOOL_LOG_FORMAT",
		valueType: valueType{kindString, `a log format ("text" or "json")`, oneOf("text", "json")},
		desc:      `log format: text or json`,
		ptr:       func(c *Config) any { return &c.LogFormat }},
	{name: "plugin_dir", env: "SPIDERPOOL_PLUGIN_DIR",
		valueType: valueType{kindString, "absolute paths separated by \":\"", absPathList},
		desc:      `directories of the plugin binaries (spiderpool-plugin-NAME), separated by ":" and searched in order`,
		ptr:       func(c *Config) any { return &c.PluginDir }},
	{name: "socket_path", valueType: anAbsPath, env: "SPIDERPOOL_SOCKET_PATH", confYML: "ipamUnixSocketPath",
		desc: "unix socket of the control API",
		ptr:  func(c *Config) any { return &c.SocketPath }},
	{name: "health_port", valueType: aPort, env: "SPIDERPOOL_HEALTH_PORT",
		desc: "health HTTP port",
		ptr:  func(c *Config) any { return &c.HealthPort }},
	{name: "gops_port", valueType: aPortOrZero, env: "SPIDERPOOL_GOPS_LISTEN_PORT", emptyEnv: 0,
		desc: "port of the gops agent on 127.0.0.1; 0 (or the variable set but empty) disables it",
		ptr:  func(c *Config) any { return &c.GopsPort }},
	{name: "node_name", env: "SPIDERPOOL_NODE_NAME",
		valueType: valueType{kindString, "a node name (no '/', at most 253 characters)", nodeName},
		desc:      "this agent's name in a shared (etcd) IPAM store, recorded with each allocation; empty: the hostname",
		ptr:       func(c *Config) any { return &c.NodeName }},
	{name: "enable_ipv4", valueType: aBool, confYML: "enableIPv4",
		desc: "handle IPv4",
		ptr:  func(c *Config) any { return &c.EnableIPv4 }},
	{name: "enable_ipv6", valueType: aBool, confYML: "enableIPv6",
		desc: "handle IPv6",
		ptr:  func(c *Config) any { return &c.EnableIPv6 }},
	{name: "shutdown_timeout", valueType: aDuration,
		desc: "bound of a graceful stop",
		ptr:  func(c *Config) any { return &c.ShutdownTimeout }},
	{name: "metrics.enabled", valueType: aBool, env: "SPIDERPOOL_ENABLED_METRIC",
		desc: "serve metrics",
		ptr:  func(c *Config) any { return &c.Metrics.Enabled }},
	{name: "metrics.port", valueType: aPort, env: "SPIDERPOOL_METRIC_HTTP_PORT",
		desc: "metrics HTTP port",
		ptr:  func(c *Config) any { return &c.Metrics.Port }},
	{name: "metrics.address",
		valueType: valueType{kindString, "an IP address", ipAddress},
		desc:      "IP address the metrics server listens on",
		ptr:       func(c *Config) any { return &c.Metrics.Address }},
	{name: "ipam.max_allocated_ips", valueType: atLeastOne, env: "SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS",
		desc: "most addresses one pool may hand out",
		ptr:  func(c *Config) any { return &c.IPAM.MaxAllocatedIPs }},
	{name: "ipam.max_history_records", env: "SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS",
		valueType: valueType{kindInt, fmt.Sprintf("a whole number from 1 to %d", ipam.MaxHistoryCap), intRange(1, ipam.MaxHistoryCap)},
		desc:      fmt.Sprintf("allocation history kept per workload (at most %d)", ipam.MaxHistoryCap),
		ptr:       func(c *Config) any { return &c.IPAM.MaxHistoryRecords }},
	{name: "ipam.update_max_retries", valueType: atLeastZero, env: "SPIDERPOOL_UPDATE_CR_MAX_RETRIES",
		desc: "retries of optimistic updates of shared IPAM records",
		ptr:  func(c *Config) any { return &c.IPAM.UpdateMaxRetries }},
	{name: "ipam.workload_retention",
		valueType: valueType{kindDuration, fmt.Sprintf("a duration from %v to %v", ipam.MinWorkloadRetention, ipam.MaxWorkloadRetention), durationRange(ipam.MinWorkloadRetention, ipam.MaxWorkloadRetention)},
		desc:      "how long the endpoint and history of a workload that holds no address are kept after its last release",
		ptr:       func(c *Config) any { return &c.IPAM.WorkloadRetention }},
	{name: "ipam.db_path", valueType: anAbsPath,
		desc: "file of the embedded IPAM store (bbolt)",
		ptr:  func(c *Config) any { return &c.IPAM.DBPath }},
	{name: "ipam.gc_interval", valueType: aDuration,
		desc: "how often IPAM looks for allocations whose network namespace is gone",
		ptr:  func(c *Config) any { return &c.IPAM.GCInterval }},
	{name: "ipam.gc_grace_period", valueType: aDuration,
		desc: "wait between IPAM GC's two looks at a namespace before its allocation is released",
		ptr:  func(c *Config) any { return &c.IPAM.GCGracePeriod }},
	{name: "ipam.allocation_timeout",
		valueType: valueType{kindDuration, fmt.Sprintf("a duration between %s and %s", api.MinAllocationTimeout, api.MaxAllocationTimeout), durationRange(api.MinAllocationTimeout, api.MaxAllocationTimeout)},
		desc:      "deadline of one allocation, after which what it reserved is released and it fails with \"try again\"; below the CNI plugin's wait for the answer",
		ptr:       func(c *Config) any { return &c.IPAM.AllocationTimeout }},
	{name: "ipam.cni_spool_dir", valueType: anAbsPath,
		desc: "directory of the CNI DELs the plugin could not deliver (the network configuration's ipam.spool_dir)",
		ptr:  func(c *Config) any { return &c.IPAM.CNISpoolDir }},
	{name: "supervisor.start_timeout", valueType: aDuration,
		desc: "bound of a plugin's start and handshake",
		ptr:  func(c *Config) any { return &c.Supervisor.StartTimeout }},
	{name: "supervisor.health_interval", valueType: aDuration,
		desc: "how often plugin health and metrics are collected; 3 misses in a row restart the plugin",
		ptr:  func(c *Config) any { return &c.Supervisor.HealthInterval }},
	{name: "supervisor.restart_initial_backoff", valueType: aDuration,
		desc: "wait before the first restart of a plugin that died; doubles with each restart in a row",
		ptr:  func(c *Config) any { return &c.Supervisor.RestartInitialBackoff }},
	{name: "supervisor.restart_max_backoff", valueType: aDuration,
		desc: "cap of the restart backoff",
		ptr:  func(c *Config) any { return &c.Supervisor.RestartMaxBackoff }},
	{name: "supervisor.restart_budget", valueType: atLeastOne,
		desc: "restarts in a row before a plugin is disabled",
		ptr:  func(c *Config) any { return &c.Supervisor.RestartBudget }},
	{name: "supervisor.stable_after", valueType: aDuration,
		desc: "run time after which the restart backoff and budget start over",
		ptr:  func(c *Config) any { return &c.Supervisor.StableAfter }},
	{name: "supervisor.plugin_memory_max_mb",
		valueType: valueType{kindInt, "0 (unlimited) or a whole number of MiB >= 128", memoryMB},
		desc:      "memory limit of each plugin in MiB (its cgroup's, children included, where cgroups are available; RLIMIT_DATA per process; GOMEMLIMIT at 90%); 0 is unlimited",
		ptr:       func(c *Config) any { return &c.Supervisor.PluginMemoryMaxMB }},
	{name: "supervisor.plugin_pids_max",
		valueType: valueType{kindInt, "0 (no limit) or a number of processes >= 32", pidsMax},
		desc:      "processes and threads each plugin may have, children included (its cgroup's pids.max; needs cgroups); 0 is no limit",
		ptr:       func(c *Config) any { return &c.Supervisor.PluginPidsMax }},
	{name: "supervisor.plugin_log_rate", valueType: atLeastOne,
		desc: "log lines a second each plugin may write to the agent's log; more are dropped and counted",
		ptr:  func(c *Config) any { return &c.Supervisor.PluginLogRate }},
	{name: "supervisor.plugin_log_burst", valueType: atLeastOne,
		desc: "log lines each plugin may write at once above plugin_log_rate",
		ptr:  func(c *Config) any { return &c.Supervisor.PluginLogBurst }},
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
	{name: "enabled", valueType: aBool, pptr: func(p *PluginConfig) any { return &p.Enabled }},
	{name: "path",
		valueType: valueType{kindString, "an absolute path", absPathOrEmpty},
		pptr:      func(p *PluginConfig) any { return &p.Path }},
	{name: "checksum",
		valueType: valueType{kindString, `a checksum "sha256:" followed by 64 hex digits`, checksum},
		pptr:      func(p *PluginConfig) any { return &p.Checksum }},
	{name: "timeout", valueType: aDuration, pptr: func(p *PluginConfig) any { return &p.Timeout }},
	{name: "failure_policy",
		valueType: valueType{kindString, `a failure policy ("fail-closed" or "fail-open")`, oneOf(api.FailClosed, api.FailOpen)},
		pptr:      func(p *PluginConfig) any { return &p.FailurePolicy }},
	{name: "component",
		valueType: valueType{kindString, "a component name (lowercase letters, digits and dashes)", componentName},
		pptr:      func(p *PluginConfig) any { return &p.Component }},
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
