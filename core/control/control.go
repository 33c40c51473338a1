// Package control is the agent's control API: HTTP over a unix socket
// (DefaultSocketPath, mode 0600) that the CLI's check, status, shutdown and
// reload commands talk to.
//
//	GET  /v1/status    200 api.Agent (always with the daemon's pid)
//	POST /v1/shutdown  202 {"pid": N}: a graceful stop has begun
//	POST /v1/reload    200 {"status": "reloaded"}, or 422 {"error": ...}
//	POST /v1/check     200 api.CheckResult; 400 {"error", "field"} for a bad
//	                   request; 503 when the agent is not ready
//	GET  /v1/debug/pprof/NAME[?seconds=N]  a Go profile (see Profiles)
//
// Only root, or the agent's own user, can open the socket (mode 0600 in a
// directory no one else can write), and the client believes only such a
// peer (SO_PEERCRED, see trustPeer).
//
// Errors are JSON bodies {"error": "...", "field": "..."} (ErrorBody).
//
// The server side is Listen and NewHandler over a Backend, served with
// httpserve.Serve (closing the listener removes the socket file); the
// client side is Client. A check request is validated here
// (CheckRequest.Validate) and the backend receives the parsed form
// (api.Check), so it never sees a malformed address.
package control

import (
	"context"
	"errors"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// DefaultSocketPath is where the daemon listens unless configured otherwise.
const DefaultSocketPath = "/var/run/spidernet/spiderpool.sock"

// Paths of the API.
const (
	StatusPath   = "/v1/status"
	ShutdownPath = "/v1/shutdown"
	ReloadPath   = "/v1/reload"
	CheckPath    = "/v1/check"
)

// Limits of a check request.
const (
	MaxBodyBytes     = 1 << 20 // 1 MiB
	MaxAddresses     = 256
	maxInterfaceName = 15 // IFNAMSIZ - 1
)

// ErrNotReady is what a Backend wraps when it cannot answer yet (plugins
// still starting, a reload in progress): the API answers 503.
var ErrNotReady = errors.New("spiderpool-agent is not ready")

// Backend is what the control API drives. The daemon implements it.
type Backend interface {
	// Status returns the agent's state at this moment.
	Status(ctx context.Context) api.Agent
	// Shutdown begins a graceful stop and returns at once.
	Shutdown(ctx context.Context) error
	// Reload re-reads and applies the configuration; on error the running
	// configuration stays.
	Reload(ctx context.Context) error
	// Check runs the detectors on a validated request.
	Check(ctx context.Context, req api.Check) (api.CheckResult, error)
}

// CheckRequest is the body of POST /v1/check.
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

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the offending request field, as in
	// "addresses[1].gateway", when a 400 is about one.
	Field string `json:"field,omitempty"`
}

// ShutdownResponse is the body of a 202 answer to POST /v1/shutdown.
type ShutdownResponse struct {
	PID int `json:"pid"`
}

// ReloadResponse is the body of a 200 answer to POST /v1/reload.
type ReloadResponse struct {
	Status string `json:"status"`
}
