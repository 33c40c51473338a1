// How an agent's answer becomes a CNI error (code and message).

package cniplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

func describeKey(container, iface string) string {
	return fmt.Sprintf("container %s interface %s", input.Cut(container), input.Cut(iface))
}

// cniError maps an error of the agent onto a CNI error for what: the spec's
// code where one fits, else this plugin's; the agent's verdict as the
// message.
func cniError(what string, err error) error {
	e := agentError(err)
	e.Msg = "spiderpool IPAM: " + what + ": " + e.Msg
	return e
}

// agentError classifies an error of api.Client.
func agentError(err error) *types.Error {
	var (
		nr *api.NotRunningError
		up *api.UntrustedPeerError
		ae *api.APIError
		ne net.Error
	)
	switch {
	case errors.As(err, &nr):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf(
			"spiderpool-agent is not running: nothing answers on %s (start it: systemctl start spiderpool-agent)", nr.Path), "")
	case errors.As(err, &up):
		return types.NewError(CodeUntrustedAgent, up.Error(), "")
	case errors.As(err, &ae):
		return types.NewError(apiCode(ae), ae.ErrorBody.Error, skippedDetails(ae.Skipped))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		// No answer in time, or the connection broke: the agent may be
		// busy, restarting or stopping.
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// apiCode is the CNI code of an error answer of the agent.
func apiCode(ae *api.APIError) uint {
	switch ae.Code {
	case api.CodeBadRequest:
		if strings.HasPrefix(ae.Field, "pools") || strings.HasPrefix(ae.Field, "origin") {
			return types.ErrInvalidNetworkConfig
		}
		return types.ErrInvalidEnvironmentVariables
	case api.CodePoolFull:
		return CodePoolFull
	case api.CodeConflict:
		return CodeConflict
	case api.CodeGateway:
		return CodeGateway
	case api.CodeBlocked:
		return CodeBlocked
	case api.CodeCheckFailed:
		return CodeCheckFailed
	case api.CodeUnknownPool:
		return CodeUnknownPool
	case api.CodeDisabled:
		return CodeIPAMDisabled
	case api.CodeMismatch:
		return CodeMismatch
	case api.CodeNotFound:
		return types.ErrUnknownContainer
	}
	// try_again, not_ready or a 503: the agent is up but cannot serve yet
	// (ipamapi's one rule for what a caller may retry).
	if ae.TryAgain() {
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}

// skippedDetails lists the candidates the agent passed over, for the
// error's details.
func skippedDetails(sk []api.SkippedIP) string {
	if len(sk) == 0 {
		return ""
	}
	parts := make([]string, 0, len(sk))
	for _, s := range sk {
		q := ""
		if s.Quarantined {
			q = ", quarantined"
		}
		parts = append(parts, fmt.Sprintf("%s (pool %s): %s%s", s.Address, s.Pool, s.Reason, q))
	}
	return "skipped " + strings.Join(parts, "; ")
}
