// Package control is the server side of the agent's control API: HTTP over
// a unix socket (api.DefaultSocketPath, mode 0600) that the CLI and the CNI
// plugin talk to through api.Client. The paths, the bodies, the error
// codes and the client are core/api's; this package listens, decodes,
// validates and hands the parsed request to a Backend.
//
// Only root, or the agent's own user, can open the socket (mode 0600 in a
// directory no one else can write), and the client believes only such a
// peer (SO_PEERCRED, core/peercred).
//
// Errors are JSON bodies api.ErrorBody {"error", "field", "code"}.
//
// The server side is Listen and NewHandler over a Backend, served with
// httpserve.Serve (closing the listener removes the socket file). A check
// request is validated here (api.CheckRequest.Validate) and the backend
// receives the parsed form (api.Check), so it never sees a malformed
// address.
package control

import (
	"context"
	"errors"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
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
