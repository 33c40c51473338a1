package api

import "time"

// The agent's own part of the control API (the IPAM part is in types.go):
//
//	GET  /v1/status    200 Agent (always with the daemon's pid)
//	POST /v1/shutdown  202 ShutdownResponse: a graceful stop has begun
//	POST /v1/reload    200 ReloadResponse, or 422 ErrorBody
//	POST /v1/check     200 CheckResult; 400 ErrorBody naming the field for a
//	                   bad request; 503 when the agent is not ready
//	GET  /v1/debug/pprof/NAME[?seconds=N]  a Go profile (see Profiles)
const (
	StatusPath   = "/v1/status"
	ShutdownPath = "/v1/shutdown"
	ReloadPath   = "/v1/reload"
	CheckPath    = "/v1/check"
)

// Limits of a request body.
const (
	// MaxBodyBytes bounds every request body the control API reads.
	MaxBodyBytes = 1 << 20 // 1 MiB
	// MaxAddresses bounds the addresses of one CheckRequest.
	MaxAddresses = 256
	// maxInterfaceName is IFNAMSIZ - 1.
	maxInterfaceName = 15
)

// CheckRequest is the body of POST /v1/check; Validate parses it into a
// Check.
type CheckRequest struct {
	// Interface is the workload's interface as seen in Netns.
	Interface string `json:"interface"`
	// Netns is the workload's network namespace as a path
	// (/var/run/netns/NAME, /proc/PID/ns/net); empty is the agent's own.
	Netns     string           `json:"netns,omitempty"`
	Addresses []AddressRequest `json:"addresses"`
}

// AddressRequest is one address to check.
type AddressRequest struct {
	// Address is a CIDR: the address and its prefix length (10.0.0.7/24).
	Address string `json:"address"`
	// Gateway is an optional IP of the same family.
	Gateway string `json:"gateway,omitempty"`
}

// ShutdownResponse is the body of a 202 answer to POST /v1/shutdown.
type ShutdownResponse struct {
	PID int `json:"pid"`
}

// ReloadResponse is the body of a 200 answer to POST /v1/reload.
type ReloadResponse struct {
	Status string `json:"status"`
}

// Profiles over the control socket. gops on TCP lets any local user read
// them (and change the GC); the 0600 control socket lets only root:
//
//	GET /v1/debug/pprof/NAME[?seconds=N]
//
// NAME is one of Profiles. cpu and trace run for N seconds (default
// DefaultProfileSeconds); the others are snapshots, or with seconds a delta
// over N seconds as net/http/pprof serves them. N is at most
// MaxProfileDuration and the answer at most MaxProfileBytes.
const (
	PprofPath             = "/v1/debug/pprof/"
	DefaultProfileSeconds = 5
	MaxProfileDuration    = 60 * time.Second
	MaxProfileBytes       = 256 << 20 // 256 MiB
)

// Profiles are the profiles the control API serves: "cpu" is
// net/http/pprof's /profile, "trace" its /trace, the others runtime/pprof's
// named profiles. block and mutex stay empty unless the rates are set.
var Profiles = []string{"heap", "goroutine", "cpu", "allocs", "block", "mutex", "threadcreate", "trace"}

// KnownProfile reports whether name is one of Profiles.
func KnownProfile(name string) bool {
	for _, p := range Profiles {
		if p == name {
			return true
		}
	}
	return false
}
