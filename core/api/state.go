package api

// The agent's view of itself and its plugins, and a check's request and
// answer, as plain values: what the health endpoints, the control API,
// `status` and metrics all render. No behaviour, so every surface (and the
// CNI plugin) can depend on them.

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Failure policies of a detector plugin (its failure_policy, Plugin.Policy):
// what a check concludes when the plugin cannot answer. core/config checks
// the setting, core/check applies it.
const (
	// FailClosed: when the plugin cannot answer a check, the check fails
	// (the workload is blocked). The default.
	FailClosed = "fail-closed"
	// FailOpen: when the plugin cannot answer a check, the check passes.
	FailOpen = "fail-open"
)

// Verdict is a check's answer, for one detector, one address or a whole
// request: the one vocabulary of the control API, the CLI and metrics. (The
// plugin protocol has its own, sdk.Verdict, with the same words: the core
// maps one onto the other in core/check.)
type Verdict string

const (
	// VerdictPass: the address may be given out.
	VerdictPass Verdict = "pass"
	// VerdictBlock: a detector found a reason not to (a conflict, a silent
	// gateway); the address is not given out.
	VerdictBlock Verdict = "block"
	// VerdictSkip: a detector had nothing to say (no gateway given) or was
	// unavailable under failure_policy fail-open. Never blocks.
	VerdictSkip Verdict = "skip"
	// VerdictError: a detector could not decide; the address is not given
	// out (never a pass).
	VerdictError Verdict = "error"
)

// BlockKind says what a detector's block means for an allocation: the
// control API's word for sdk.BlockKind (core/check maps one onto the
// other). IPAM acts on it, never on which detector blocked.
type BlockKind string

const (
	// BlockInUse: someone holds the address; IPAM quarantines it and tries
	// the next candidate.
	BlockInUse BlockKind = "in_use"
	// BlockUnreachable: the pool's network is unusable now (a dead
	// gateway); the allocation fails at once.
	BlockUnreachable BlockKind = "unreachable"
	// BlockPolicy: the address must not be given out; IPAM skips it
	// without quarantine and tries the next candidate.
	BlockPolicy BlockKind = "policy"
	// BlockFail: the allocation fails. Also what a block that names no
	// kind means (a plugin older than API 1.2): every third-party block
	// meant that before kinds existed.
	BlockFail BlockKind = "fail"
)

// PluginState is where a plugin is in its life.
type PluginState string

const (
	Starting   PluginState = "starting"
	Ready      PluginState = "ready"
	Degraded   PluginState = "degraded"
	Failed     PluginState = "failed"
	Restarting PluginState = "restarting"
	Disabled   PluginState = "disabled"
)

// AllPluginStates lists every state, for metrics that emit one series each.
var AllPluginStates = []PluginState{Starting, Ready, Degraded, Failed, Restarting, Disabled}

// Plugin is one plugin as the supervisor sees it.
type Plugin struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Version   string          `json:"version,omitempty"`
	Path      string          `json:"path,omitempty"`
	Component string          `json:"component,omitempty"` // of the plugin set at Path
	State     PluginState     `json:"state"`
	PID       int             `json:"pid,omitempty"`
	Restarts  int             `json:"restarts"`
	LastError string          `json:"last_error,omitempty"`
	Since     time.Time       `json:"since"`
	Message   string          `json:"message,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	// Policy is the failure_policy of a detector plugin.
	Policy string `json:"failure_policy,omitempty"`
	// Limits says which resource and output limits the plugin runs under.
	Limits string `json:"limits,omitempty"`
	// Description and Capabilities are what the plugin says of itself.
	// Capabilities are informational: the agent does not grant or drop
	// any per plugin.
	Description  string   `json:"description,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	// ConfigGeneration is the agent configuration (Agent.ConfigGeneration)
	// whose block the plugin runs; lower than the agent's when a reload
	// could not reconfigure it. 0: never configured.
	ConfigGeneration uint64 `json:"config_generation"`
	// Tuned is what a tuner plugin manages, from its Status call; nil for
	// a detector.
	Tuned *Tuned `json:"tuned,omitempty"`
}

// Tuned is a tuner's report: every setting it manages.
type Tuned struct {
	Keys          []TunedKey `json:"keys"`
	LastReconcile time.Time  `json:"last_reconcile,omitzero"`
}

// TunedKey is one setting a tuner manages.
type TunedKey struct {
	Key     string `json:"key"`
	Desired string `json:"desired"`
	Actual  string `json:"actual"`
	// State is applied, unchanged, unsupported or failed.
	State     string    `json:"state"`
	Previous  string    `json:"previous,omitempty"`
	Error     string    `json:"error,omitempty"`
	LastDrift time.Time `json:"last_drift,omitzero"`
}

// Agent is the whole agent at one moment.
type Agent struct {
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	// Started is true once initialisation has finished.
	Started bool `json:"started"`
	// ConfigGeneration counts the configurations the agent has loaded: 1
	// at start, one more for every reload that was accepted.
	ConfigGeneration uint64 `json:"config_generation"`
	// ConfigLoadedAt is when the running configuration was loaded.
	ConfigLoadedAt time.Time `json:"config_loaded_at"`
	Plugins        []Plugin  `json:"plugins"`
	// Gops is the address of the gops agent when it listens: any local
	// user can reach it (see gopsagent). Empty when it is off.
	Gops string `json:"gops,omitempty"`
	// IPAM is the IPAM service's state; nil from a backend without one.
	IPAM *Status `json:"ipam,omitempty"`
	// ControlSocket says whether the control socket answers the agent's
	// own status requests over the real socket; nil from a backend that
	// does not ask.
	ControlSocket *Component `json:"control_socket,omitempty"`
}

// Component is the state of a part of the agent other than a plugin.
type Component struct {
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

// Ready reports whether the agent can serve, and the names of the plugins
// that hold readiness back. A degraded plugin answers calls and a disabled
// one was turned off on purpose (or by a failed checksum), so neither holds
// the node back: one plugin never bricks the node.
func (a Agent) Ready() (bool, []string) {
	var waiting []string
	for _, p := range a.Plugins {
		switch p.State {
		case Ready, Degraded, Disabled:
		default:
			waiting = append(waiting, p.Name)
		}
	}
	if a.IPAM != nil && a.IPAM.Store != nil && !a.IPAM.Store.Up {
		// A shared IPAM store that is down holds readiness back: a
		// scheduler should not place workloads whose addresses it cannot
		// allocate. The detectors and the tuner keep working.
		waiting = append(waiting, IPAMStoreComponent)
	}
	if a.ControlSocket != nil && !a.ControlSocket.Up {
		// The CLI and the CNI plugin reach the agent only through it.
		waiting = append(waiting, ControlSocketComponent)
	}
	return a.Started && len(waiting) == 0, waiting
}

// Names of the components in readiness.
const (
	// IPAMStoreComponent is the shared IPAM store.
	IPAMStoreComponent = "ipam-store"
	// ControlSocketComponent is the control socket.
	ControlSocketComponent = "control-socket"
)

// Check is what one check asks, parsed and validated: a CheckRequest after
// CheckRequest.Validate, or what IPAM asks of its Checker for candidate
// addresses. It is the request core/check runs, so the orchestrator never
// sees a malformed address.
type Check struct {
	Interface string
	Netns     string
	Addresses []CheckAddress
}

// CheckAddress is one parsed address of a Check.
type CheckAddress struct {
	Address netip.Prefix
	// Gateway is the zero netip.Addr (IsValid false) when none was given.
	Gateway netip.Addr
	// Conflict asks for conflict detection on Address: IPAM sets it when
	// the address's pool enables it. A POST /v1/check runs every detector
	// and leaves it unset.
	Conflict bool
}

// CheckResult is what core/check concludes for a Check, and the body of a
// 200 answer to the control API's POST /v1/check.
type CheckResult struct {
	// Verdict is pass when no address was blocked or in error, else block.
	Verdict    Verdict         `json:"verdict"`
	Addresses  []AddressResult `json:"addresses"`
	DurationMs float64         `json:"duration_ms"`
}

// AddressResult is the answer for one address.
type AddressResult struct {
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
	// Verdict is block when a detector blocked, else error when one could
	// not decide, else pass.
	Verdict   Verdict          `json:"verdict"`
	Detectors []DetectorResult `json:"detectors"`
}

// DetectorResult is one detector's answer for one address.
type DetectorResult struct {
	Name string `json:"name"`
	// Verdict is pass, block, skip or error (see Verdict).
	Verdict Verdict `json:"verdict"`
	// BlockKind is set on a block only: what it means for an allocation.
	BlockKind BlockKind         `json:"block_kind,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Evidence  map[string]string `json:"evidence,omitempty"`
	// DurationMs is the call as the agent timed it; PluginMs is the
	// detector's own time inside the plugin (0 when it did not answer).
	DurationMs float64 `json:"duration_ms"`
	PluginMs   float64 `json:"plugin_ms,omitempty"`
}
