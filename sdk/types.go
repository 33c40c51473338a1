package sdk

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Kind says which service a plugin serves besides the base one.
type Kind string

const (
	// KindDetector plugins answer checks about an address (sdk.Detector).
	KindDetector Kind = "detector"
	// KindTuner plugins keep node settings in a desired state (sdk.Tuner).
	KindTuner Kind = "tuner"
)

// Info names a plugin and says what it needs.
type Info struct {
	Name        string
	Kind        Kind
	Version     string
	APIVersion  string // "MAJOR.MINOR"; use sdk.APIVersion
	Description string
	// Capabilities the plugin needs from the host, e.g. "CAP_NET_RAW".
	Capabilities []string
}

// AgentSettings are agent-wide settings every plugin receives with its config.
type AgentSettings struct {
	EnableIPv4 bool
	EnableIPv6 bool
	LogLevel   string
}

// ConfigureRequest carries a plugin's config { } block and the agent settings.
type ConfigureRequest struct {
	Config RawConfig
	Agent  AgentSettings
}

// HealthState is a plugin's own health, separate from any check result.
type HealthState string

const (
	HealthReady    HealthState = "ready"
	HealthDegraded HealthState = "degraded"
	HealthFailed   HealthState = "failed"
)

// Health is what a plugin reports about itself.
type Health struct {
	State   HealthState
	Message string
	// Detail is plugin-defined and travels as JSON. On the agent side it is a
	// json.RawMessage.
	Detail any
}

// SampleType says how the agent re-emits a Sample.
type SampleType string

const (
	// Counter values are cumulative since the plugin started; the agent
	// turns them into increments.
	Counter SampleType = "counter"
	Gauge   SampleType = "gauge"
	// Summary carries observations made since the previous collection.
	Summary SampleType = "summary"
)

// Sample is one metric reading. Name is snake_case without the spiderpool_
// prefix; counters end in _total, durations are in seconds.
type Sample struct {
	Name         string
	Type         SampleType
	Labels       map[string]string
	Value        float64
	Observations []float64
	Help         string
}

// CheckRequest asks a detector about one address on one interface.
type CheckRequest struct {
	Interface string
	// Netns is a path such as /var/run/netns/x or /proc/PID/ns/net; empty is
	// the agent's own namespace.
	Netns   string
	Address netip.Prefix
	// Gateway is invalid (the zero Addr) when the address has none.
	Gateway netip.Addr
}

// Verdict is a detector's answer.
type Verdict string

const (
	VerdictPass  Verdict = "pass"
	VerdictBlock Verdict = "block"
	// VerdictSkip: the detector has nothing to say (e.g. no gateway given).
	VerdictSkip Verdict = "skip"
	// VerdictError: the detector could not decide; never treated as a pass.
	VerdictError Verdict = "error"
)

// EvidenceResponderMAC is the CheckResult.Evidence key naming the hardware
// address that answered for the checked address (or gateway): the agent
// records it with the quarantine of an address in use.
const EvidenceResponderMAC = "responder_mac"

// BlockKind says what a VerdictBlock means for the allocation that asked:
// the agent's IPAM acts on it, never on the detector's name, so a
// third-party detector takes part in allocation as the built-ins do. Set it
// on every block (sdktest checks); it is meaningless on other verdicts.
//
// A block without a kind (BlockUnspecified: every block of a plugin built
// before API 1.2, or one that leaves the field empty) is taken as
// BlockFail, which is what every third-party block meant before kinds.
type BlockKind string

const (
	// BlockUnspecified: no kind given; the agent treats it as BlockFail.
	BlockUnspecified BlockKind = ""
	// BlockInUse: someone holds the address (it answers ARP, a DHCP lease
	// names it). IPAM quarantines it for the pool's quarantine period and
	// tries the next candidate.
	BlockInUse BlockKind = "in_use"
	// BlockUnreachable: the pool's network is unusable now (the gateway is
	// dead, the VLAN is not trunked here): no other address of the pool
	// would do, so the allocation fails at once.
	BlockUnreachable BlockKind = "unreachable"
	// BlockPolicy: this address must not be given out (a denylist, a CMDB
	// reservation). IPAM skips it without quarantine (nothing is recorded
	// against the address) and tries the next candidate.
	BlockPolicy BlockKind = "policy"
	// BlockFail: the address is refused and no other candidate is tried:
	// the allocation fails.
	BlockFail BlockKind = "fail"
)

// BlockKinds lists the kinds a block may carry, BlockUnspecified excepted.
var BlockKinds = []BlockKind{BlockInUse, BlockUnreachable, BlockPolicy, BlockFail}

// CheckResult is a detector's answer with its reasons.
type CheckResult struct {
	Verdict Verdict
	// BlockKind says what a VerdictBlock means for an allocation (see
	// BlockKind); leave it empty with any other verdict.
	BlockKind BlockKind
	Reason    string
	Evidence  map[string]string
	Duration  time.Duration
}

// TunedKey is the state of one setting a tuner manages.
type TunedKey struct {
	Key       string    `json:"key"`
	Desired   string    `json:"desired"`
	Actual    string    `json:"actual"`
	State     string    `json:"state"` // applied, unchanged, unsupported, failed
	Previous  string    `json:"previous,omitempty"`
	Error     string    `json:"error,omitempty"`
	LastDrift time.Time `json:"last_drift,omitzero"`
}

// TunerStatus is a tuner's report.
type TunerStatus struct {
	Keys          []TunedKey `json:"keys"`
	LastReconcile time.Time  `json:"last_reconcile,omitzero"`
}

// rawDetail is how Health.Detail arrives on the agent side.
type rawDetail = json.RawMessage
