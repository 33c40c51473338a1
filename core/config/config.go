// Package config loads and validates the agent's configuration.
//
// The effective configuration is built from layers, lowest precedence first:
//
//  1. built-in defaults (Default);
//  2. a Spiderpool conf.yml in the config directory (only when --config-dir
//     is a directory: DIR/conf.yml; when --config-dir names a file, a
//     conf.yml beside that file is not read);
//  3. the HCL files: every *.hcl file in the config directory, merged in
//     lexical order of their names (names beginning with "." are skipped),
//     or the one file --config-dir names;
//  4. environment variables (EnvVars lists them);
//  5. command-line flags (LoadOptions.Flags).
//
// Every effective value remembers which layer and which place (file:line:col,
// conf.yml line, variable or flag) it came from; Config.Settings lists them.
// Every problem, in any layer, is collected and reported together in one
// *Error, each naming its file:line:col, variable or flag: nothing starts on a
// bad config.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
)

// Built-in plugin names.
const (
	PluginSysctlTuner     = "sysctl-tuner"
	PluginIPConflict      = "ip-conflict"
	PluginGatewayDetector = "gateway-detector"
)

// BuiltinPlugins lists the plugins the agent knows without any config, in
// name order. They are always present in Config.Plugins.
var BuiltinPlugins = []string{PluginGatewayDetector, PluginIPConflict, PluginSysctlTuner}

// DefaultIPAMDetectors is IPAMConfig.Detectors: the built-in detector that
// runs each detection a pool can switch on. This file is the one place in
// the core that names the built-in detectors (test/layout checks it).
func DefaultIPAMDetectors() map[string]string {
	return map[string]string{
		api.DetectionConflict: PluginIPConflict,
		api.DetectionGateway:  PluginGatewayDetector,
	}
}

// PluginBinaryPrefix is the file name prefix of a plugin binary in the plugin
// directory: PLUGIN_DIR/spiderpool-plugin-NAME.
const PluginBinaryPrefix = "spiderpool-plugin-"

// PluginSetBinary is the built-ins' plugin set (an sdk.Set): one executable
// that serves each built-in as "spiderpool-plugins serve NAME" (as shipped,
// a symlink to the agent's executable, which serves the set when run by this
// name). The default resolution of a built-in falls back to it (see Binary).
const PluginSetBinary = "spiderpool-plugins"

// Defaults.
const (
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultPluginDir       = "/usr/lib/spiderpool/plugins"
	DefaultHealthPort      = 5710
	DefaultGopsPort        = 5712
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMetricsPort     = 5711
	DefaultMetricsAddress  = "0.0.0.0"
	DefaultMaxAllocatedIPs = 5000

	// The supervisor's settings default to the supervisor's own defaults,
	// defined there once.
	DefaultStartTimeout          = supervisor.DefaultStartTimeout
	DefaultHealthInterval        = supervisor.DefaultHealthInterval
	DefaultRestartInitialBackoff = supervisor.DefaultInitialBackoff
	DefaultRestartMaxBackoff     = supervisor.DefaultMaxBackoff
	DefaultRestartBudget         = supervisor.DefaultBudget
	DefaultStableAfter           = supervisor.DefaultStableAfter
	DefaultPluginMemoryMaxMB     = 1024
	DefaultPluginPidsMax         = 256
	DefaultPluginLogRate         = 100
	DefaultPluginLogBurst        = 500
	DefaultMaxHistoryRecords     = 100
	DefaultUpdateMaxRetries      = 3
	DefaultPluginTimeout         = 5 * time.Second
)

// Defaults of the IPAM service's own settings.
const (
	DefaultIPAMDBPath        = "/var/lib/spiderpool/ipam.db"
	DefaultIPAMGCInterval    = time.Minute
	DefaultIPAMGCGracePeriod = 30 * time.Second
	// DefaultIPAMCNISpoolDir is where the CNI plugin spools the DELs it
	// could not deliver (core/ipam/cnispool's DefaultDir; the plugin's
	// ipam.spool_dir has the same default).
	DefaultIPAMCNISpoolDir = "/var/lib/spiderpool/cni-spool"
	// DefaultEtcdOutageWait is how long an allocation or release waits for
	// an etcd that is unreachable or electing a leader before it fails.
	DefaultEtcdOutageWait = 5 * time.Second
	// MaxEtcdOutageWait keeps the wait, with an allocation's own work,
	// inside the CNI plugin's 30 s allocation deadline.
	MaxEtcdOutageWait = 20 * time.Second
	// DefaultIPAMConfigDir is the packaged --ipam-config-dir.
	DefaultIPAMConfigDir = "/etc/spiderpool/ipam.d"
)

// Config is the agent's effective configuration.
type Config struct {
	// LogLevel is one of debug, info, warn, error, fatal, panic; fatal and
	// panic log errors only. HCL log_level, env SPIDERPOOL_LOG_LEVEL,
	// default "info".
	LogLevel string
	// LogFormat is "text" or "json". HCL log_format, env
	// SPIDERPOOL_LOG_FORMAT, default "text".
	LogFormat string
	// PluginDir is where the plugin binaries, named spiderpool-plugin-NAME,
	// are found: one directory or several separated by ":" (like $PATH),
	// searched in order, so that a vendor's folder can stand beside the
	// built-ins' (see PluginDirs). HCL plugin_dir, env
	// SPIDERPOOL_PLUGIN_DIR, default "/usr/lib/spiderpool/plugins".
	PluginDir string
	// SocketPath is the control API's unix socket. HCL socket_path, env
	// SPIDERPOOL_SOCKET_PATH, conf.yml ipamUnixSocketPath, default
	// "/var/run/spidernet/spiderpool.sock".
	SocketPath string
	// HealthPort is the health HTTP port (1-65535). HCL health_port, env
	// SPIDERPOOL_HEALTH_PORT, default 5710.
	HealthPort int
	// GopsPort is the gops agent's port on 127.0.0.1; 0 disables it. HCL
	// gops_port, env SPIDERPOOL_GOPS_LISTEN_PORT (set but empty disables),
	// default 5712.
	GopsPort int
	// EnableIPv4 enables IPv4 handling. HCL enable_ipv4, conf.yml
	// enableIPv4, default true.
	EnableIPv4 bool
	// EnableIPv6 enables IPv6 handling. HCL enable_ipv6, conf.yml
	// enableIPv6, default true.
	EnableIPv6 bool
	// ShutdownTimeout bounds a graceful stop. HCL shutdown_timeout (a
	// duration string such as "10s"), default 10s.
	ShutdownTimeout time.Duration
	// Metrics configures the metrics HTTP server (HCL block metrics).
	Metrics MetricsConfig
	// IPAM configures the IPAM service (HCL block ipam).
	IPAM IPAMConfig
	// NodeName is this agent's name in a shared IPAM store, recorded with
	// each allocation. HCL node_name, env SPIDERPOOL_NODE_NAME, default ""
	// = the hostname (ResolvedNodeName).
	NodeName string
	// Etcd is the etcd { } block: the shared store of the pools with
	// store = "etcd". Zero (no endpoints) when the block is absent.
	Etcd EtcdConfig
	// Supervisor says how plugins are started, watched and restarted (HCL
	// block supervisor).
	Supervisor SupervisorConfig
	// Plugins are the plugins, ordered by name. The built-in plugins are
	// always present.
	Plugins []*PluginConfig

	// ConfigDir is LoadOptions.ConfigDir: a directory or one HCL file.
	ConfigDir string
	// IPAMConfigDir is LoadOptions.IPAMConfigDir.
	IPAMConfigDir string
	// Files are the files read, in the order they were applied (conf.yml
	// first when present).
	Files []string
	// IgnoredConfYMLKeys are the top-level conf.yml keys this agent does not
	// use, in file order, for the caller to log at debug level.
	IgnoredConfYMLKeys []string

	// sources maps every key (see Settings) to where its value came from.
	sources map[string]Source
}

// MetricsConfig is the metrics { } block.
type MetricsConfig struct {
	// Enabled serves metrics. HCL enabled, env SPIDERPOOL_ENABLED_METRIC,
	// default false.
	Enabled bool
	// Port is the metrics HTTP port (1-65535). HCL port, env
	// SPIDERPOOL_METRIC_HTTP_PORT, default 5711.
	Port int
	// Address is the IP address the metrics server listens on. HCL address,
	// default "0.0.0.0": like Spiderpool, metrics are served on every
	// address so that Prometheus can scrape the node.
	Address string
}

// IPAMConfig is the ipam { } block: settings of the IPAM service.
// SupervisorConfig says how plugins are started, watched and restarted.
type SupervisorConfig struct {
	// StartTimeout bounds a plugin's start and handshake. HCL
	// start_timeout, default 10s.
	StartTimeout time.Duration
	// HealthInterval is how often each plugin's health and metrics are
	// collected; three missed in a row restart it. HCL health_interval,
	// default 2s.
	HealthInterval time.Duration
	// RestartInitialBackoff is the wait before the first restart; it
	// doubles with each restart in a row. HCL restart_initial_backoff,
	// default 500ms.
	RestartInitialBackoff time.Duration
	// RestartMaxBackoff caps the doubling. HCL restart_max_backoff,
	// default 30s.
	RestartMaxBackoff time.Duration
	// RestartBudget is how many restarts in a row are allowed before the
	// plugin is disabled. HCL restart_budget, default 10.
	RestartBudget int
	// StableAfter is how long a run must last for the backoff and budget
	// to start over. HCL stable_after, default 1m.
	StableAfter time.Duration
	// PluginMemoryMaxMB limits each plugin's memory, in MiB: its cgroup's
	// (the whole tree, where the agent can make cgroups), RLIMIT_DATA per
	// process and GOMEMLIMIT at 90%; 0 is unlimited. HCL
	// plugin_memory_max_mb, default 1024.
	PluginMemoryMaxMB int
	// PluginPidsMax limits the processes and threads of each plugin's
	// tree (its cgroup's pids.max); 0 is no limit. HCL plugin_pids_max,
	// default 256.
	PluginPidsMax int
	// PluginLogRate and PluginLogBurst bound the log lines of each plugin
	// (a token bucket). HCL plugin_log_rate, default 100 a second, and
	// plugin_log_burst, default 500.
	PluginLogRate  int
	PluginLogBurst int
}

type IPAMConfig struct {
	// MaxAllocatedIPs is the most addresses one pool may hand out (>= 1).
	// HCL max_allocated_ips, env SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS,
	// default 5000.
	MaxAllocatedIPs int
	// MaxHistoryRecords is the allocation history kept per workload (1 to
	// ipam.MaxHistoryCap). HCL max_history_records, env
	// SPIDERPOOL_WORKLOADENDPOINT_MAX_HISTORY_RECORDS, default 100.
	MaxHistoryRecords int
	// WorkloadRetention is how long the endpoint and history of a workload
	// that holds no address are kept after its last release
	// (ipam.MinWorkloadRetention to ipam.MaxWorkloadRetention). HCL
	// workload_retention, default 24h.
	WorkloadRetention time.Duration
	// UpdateMaxRetries is how often an optimistic update of a shared IPAM
	// record is retried (>= 0). HCL update_max_retries, env
	// SPIDERPOOL_UPDATE_CR_MAX_RETRIES, default 3.
	UpdateMaxRetries int
	// DBPath is the embedded store's file. HCL db_path, default
	// /var/lib/spiderpool/ipam.db (the unit's StateDirectory).
	DBPath string
	// GCInterval is how often allocations whose namespace is gone are
	// looked for. HCL gc_interval, default 1m.
	GCInterval time.Duration
	// GCGracePeriod is the wait between GC's two looks. HCL
	// gc_grace_period, default 30s.
	GCGracePeriod time.Duration
	// AllocationTimeout is the deadline of one allocation: past it, what
	// the allocation reserved is released and it fails with "try again".
	// HCL allocation_timeout, default 25s, between 1s and 27s (below the
	// CNI plugin's 30s wait for the answer, api.AllocateWait).
	AllocationTimeout time.Duration

	// CNISpoolDir is the spool of CNI DELs the plugin could not deliver,
	// applied at start before allocations are served, and every few
	// seconds after. HCL cni_spool_dir, default
	// /var/lib/spiderpool/cni-spool.
	CNISpoolDir string

	// Detectors names the plugin behind each detection a pool switches on
	// (api.DetectionConflict for conflict_detection,
	// api.DetectionGateway for gateway_detection): a pool that enables
	// a detection whose plugin is not enabled gets no address, and a check
	// that asks for neither leaves that plugin out. Not an HCL setting:
	// DefaultIPAMDetectors. What a detector's block does to an allocation
	// is the kind the block carries, never read from this or any name.
	Detectors map[string]string
}

// PluginConfig is one plugin "NAME" { } block merged over the plugin's
// defaults: the supervisor's Spec, as the operator wrote it, and where.
//
// Of the Spec, the configuration sets Name (^[a-z0-9][a-z0-9-]*$),
// Enabled (default true; for the built-ins conf.yml tuneSysctlConfig,
// enableIPConflictDetection and enableGatewayDetection set it), Path (an
// explicit absolute path of the binary; empty means a search of plugin_dir,
// see Binary), Component (the component of a plugin set that Path is, run
// as "PATH serve COMPONENT"; without Path, a component of the built-ins'
// set PluginDir/spiderpool-plugins; HCL component, default ""), Checksum ("sha256:" and 64 lowercase hex digits, or
// empty), Timeout (default 5s), FailurePolicy (api.FailClosed by default,
// or api.FailOpen) and Config (the raw config { } block with its start
// position, so that decoding errors name the operator's file, line and
// column; of several blocks for one plugin the last replaces the others).
// Kind and Generation are the agent's to fill in.
type PluginConfig struct {
	supervisor.Spec
	// DeclRange is where the plugin block that first declared the plugin
	// is; zero for a plugin that has only its built-in defaults.
	DeclRange hcl.Range
}

// PluginDirs splits PluginDir into its directories, in search order.
func (c *Config) PluginDirs() []string {
	var out []string
	for _, d := range strings.Split(c.PluginDir, ":") {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// BinaryPath is Binary without the component, for callers that only need
// to know where the file is.
func (p *PluginConfig) BinaryPath(dirs []string) (path string, found bool) {
	path, _, found = p.Binary(dirs)
	return path, found
}

// Binary is the executable to run for the plugin and, when it is a plugin
// set, the component to serve from it:
//   - Path when set, with Component (which may be empty);
//   - a Component without Path: the built-ins' set, spiderpool-plugins, in
//     the first of dirs that has it;
//   - otherwise, for each of dirs in order, DIR/spiderpool-plugin-NAME and,
//     for a built-in, DIR/spiderpool-plugins serving NAME: so a separately
//     installed binary (an old layout, or an operator's own build) still
//     wins over the set in the same directory, and an earlier directory
//     still wins over a later one.
//
// found is false when no directory has it; the path is then the one the
// first directory would have had.
func (p *PluginConfig) Binary(dirs []string) (path, component string, found bool) {
	if p.Path != "" {
		return p.Path, p.Component, true
	}
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	if p.Component != "" {
		for _, d := range dirs {
			if path := filepath.Join(d, PluginSetBinary); exists(path) {
				return path, p.Component, true
			}
		}
		if len(dirs) == 0 {
			return PluginSetBinary, p.Component, false
		}
		return filepath.Join(dirs[0], PluginSetBinary), p.Component, false
	}
	builtin := slices.Contains(BuiltinPlugins, p.Name)
	for _, d := range dirs {
		if path := filepath.Join(d, PluginBinaryPrefix+p.Name); exists(path) {
			return path, "", true
		}
		if path := filepath.Join(d, PluginSetBinary); builtin && exists(path) {
			return path, p.Name, true
		}
	}
	if len(dirs) == 0 {
		return PluginBinaryPrefix + p.Name, "", false
	}
	return filepath.Join(dirs[0], PluginBinaryPrefix+p.Name), "", false
}

// Plugin returns the named plugin, or nil.
func (c *Config) Plugin(name string) *PluginConfig {
	for _, p := range c.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Source is where an effective value came from.
type Source struct {
	// Kind is one of the Kind* constants.
	Kind string
	// Where names the place: "/etc/spiderpool-agent/conf.yml:3",
	// "/etc/spiderpool-agent/10-a.hcl:12:3", "SPIDERPOOL_HEALTH_PORT",
	// "--health-port"; empty for defaults.
	Where string
}

// Source kinds, lowest precedence first.
const (
	KindDefault  = "default"
	KindConfYML  = "conf.yml"
	KindFile     = "file"
	KindEnv      = "env"
	KindFlag     = "flag"
	KindOption   = "option" // a LoadOptions field such as ConfigDir (problems only)
	KindConflict = "config" // a problem between several settings (problems only)
)

// String renders the source as "kind" or "kind (where)".
func (s Source) String() string {
	if s.Where == "" {
		return s.Kind
	}
	return s.Kind + " (" + s.Where + ")"
}

// Setting is one effective value and where it came from.
type Setting struct {
	// Key is the config key: "health_port", "metrics.port",
	// "plugin.ip-conflict.enabled", ...
	Key string
	// Value is the value rendered as text (durations as "10s").
	Value string
	// Source is where the value came from.
	Source Source
}

// Source returns where the value of key came from.
func (c *Config) Source(key string) (Source, bool) {
	s, ok := c.sources[key]
	return s, ok
}

// Settings lists every key with its effective value and source: the global
// keys in a fixed order, then each plugin's keys (plugin.NAME.enabled, .path,
// .checksum, .timeout, .failure_policy, .config) with plugins in name order.
// plugin.NAME.config renders as "<N bytes>" ("" when there is no block);
// plugin.NAME.path is "" when the binary is found in plugin_dir.
func (c *Config) Settings() []Setting {
	var out []Setting
	for _, k := range globalKeys {
		out = append(out, Setting{Key: k.name, Value: render(k.ptr(c)), Source: c.sourceOf(k.name)})
	}
	plugins := append([]*PluginConfig(nil), c.Plugins...)
	sort.SliceStable(plugins, func(i, j int) bool { return plugins[i].Name < plugins[j].Name })
	for _, p := range plugins {
		for _, k := range pluginKeys {
			key := pluginKey(p.Name, k.name)
			out = append(out, Setting{Key: key, Value: render(k.pptr(p)), Source: c.sourceOf(key)})
		}
		key := pluginKey(p.Name, "config")
		out = append(out, Setting{Key: key, Value: renderRaw(p.Config), Source: c.sourceOf(key)})
	}
	return out
}

func (c *Config) sourceOf(key string) Source {
	if s, ok := c.sources[key]; ok {
		return s
	}
	return Source{Kind: KindDefault}
}

func (c *Config) setSource(key string, s Source) {
	if c.sources == nil {
		c.sources = map[string]Source{}
	}
	c.sources[key] = s
}

func pluginKey(name, attr string) string { return "plugin." + name + "." + attr }

// Default returns the built-in defaults, every value sourced "default".
func Default() *Config {
	c := &Config{
		LogLevel:        DefaultLogLevel,
		LogFormat:       DefaultLogFormat,
		PluginDir:       DefaultPluginDir,
		SocketPath:      api.DefaultSocketPath,
		HealthPort:      DefaultHealthPort,
		GopsPort:        DefaultGopsPort,
		EnableIPv4:      true,
		EnableIPv6:      true,
		ShutdownTimeout: DefaultShutdownTimeout,
		Metrics: MetricsConfig{
			Enabled: false,
			Port:    DefaultMetricsPort,
			Address: DefaultMetricsAddress,
		},
		Supervisor: SupervisorConfig{
			StartTimeout:          DefaultStartTimeout,
			HealthInterval:        DefaultHealthInterval,
			RestartInitialBackoff: DefaultRestartInitialBackoff,
			RestartMaxBackoff:     DefaultRestartMaxBackoff,
			RestartBudget:         DefaultRestartBudget,
			StableAfter:           DefaultStableAfter,
			PluginMemoryMaxMB:     DefaultPluginMemoryMaxMB,
			PluginPidsMax:         DefaultPluginPidsMax,
			PluginLogRate:         DefaultPluginLogRate,
			PluginLogBurst:        DefaultPluginLogBurst,
		},
		IPAM: IPAMConfig{
			MaxAllocatedIPs:   DefaultMaxAllocatedIPs,
			MaxHistoryRecords: DefaultMaxHistoryRecords,
			WorkloadRetention: ipam.DefaultWorkloadRetention,
			UpdateMaxRetries:  DefaultUpdateMaxRetries,
			DBPath:            DefaultIPAMDBPath,
			GCInterval:        DefaultIPAMGCInterval,
			GCGracePeriod:     DefaultIPAMGCGracePeriod,
			AllocationTimeout: api.DefaultAllocationTimeout,
			CNISpoolDir:       DefaultIPAMCNISpoolDir,
			Detectors:         DefaultIPAMDetectors(),
		},
		sources: map[string]Source{},
	}
	for _, k := range globalKeys {
		c.sources[k.name] = Source{Kind: KindDefault}
	}
	for _, name := range BuiltinPlugins {
		c.addPlugin(name)
	}
	return c
}

// addPlugin adds a plugin with its defaults, keeping Plugins in name order.
func (c *Config) addPlugin(name string) *PluginConfig {
	p := &PluginConfig{Spec: supervisor.Spec{
		Name:          name,
		Enabled:       true,
		Timeout:       DefaultPluginTimeout,
		FailurePolicy: api.FailClosed,
	}}
	for _, k := range pluginKeys {
		c.setSource(pluginKey(name, k.name), Source{Kind: KindDefault})
	}
	c.setSource(pluginKey(name, "config"), Source{Kind: KindDefault})
	i := sort.Search(len(c.Plugins), func(i int) bool { return c.Plugins[i].Name >= name })
	c.Plugins = append(c.Plugins, nil)
	copy(c.Plugins[i+1:], c.Plugins[i:])
	c.Plugins[i] = p
	return p
}

// EtcdConfig is the top-level etcd { } block (see core/ipam/etcdstore's
// Config, which it is turned into). Every field has the position it was
// set at in DeclRange's file for errors raised later.
type EtcdConfig struct {
	Endpoints      []string
	Prefix         string
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	CAFile         string
	CertFile       string
	KeyFile        string
	Username       string
	PasswordFile   string
	// DeclRange is where the block was declared; zero when absent.
	DeclRange hcl.Range
	// OutageWait is how long an allocation or release rides through an
	// unreachable etcd or an election before failing (HCL outage_wait,
	// default DefaultEtcdOutageWait, at most MaxEtcdOutageWait; "0s"
	// fails at once).
	OutageWait time.Duration
}

// ResolvedNodeName is NodeName, or the hostname when it is empty.
func (c *Config) ResolvedNodeName() (string, error) {
	if c.NodeName != "" {
		return c.NodeName, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("node_name is not set and the hostname is unknown (%v): set node_name or SPIDERPOOL_NODE_NAME", err)
	}
	return h, nil
}
