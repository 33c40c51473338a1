package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The agent's own calls: status, shutdown, reload, check and profiles.

// Status returns the agent's state.
func (c *Client) Status(ctx context.Context) (Agent, error) {
	var a Agent
	if err := c.do(ctx, "GET", StatusPath, nil, &a); err != nil {
		return Agent{}, fmt.Errorf("status: %w", err)
	}
	return a, nil
}

// Shutdown asks the agent to stop gracefully and returns its pid, so that
// the caller can wait for the process to exit.
func (c *Client) Shutdown(ctx context.Context) (int, error) {
	var r ShutdownResponse
	if err := c.do(ctx, "POST", ShutdownPath, nil, &r); err != nil {
		return 0, fmt.Errorf("shutdown: %w", err)
	}
	return r.PID, nil
}

// Reload asks the agent to reload its configuration. A configuration the
// agent refused is an *APIError with Status 422 and the reason.
func (c *Client) Reload(ctx context.Context) error {
	if err := c.do(ctx, "POST", ReloadPath, nil, nil); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	return nil
}

// Check asks the agent to check addresses. It returns the HTTP status with
// the answer: 200 with the result; 400 (a malformed request, with
// APIError.Field), 503 (not ready) or another status with an *APIError; 0
// when no answer came.
func (c *Client) Check(ctx context.Context, req CheckRequest) (CheckResult, int, error) {
	var resp CheckResult
	if err := c.do(ctx, "POST", CheckPath, req, &resp); err != nil {
		code := 0
		var ae *APIError
		if errors.As(err, &ae) {
			code = ae.Status
		}
		return CheckResult{}, code, fmt.Errorf("check: %w", err)
	}
	return resp, statusOK, nil
}

// Profile fetches profile name over the control socket into out, as it
// comes (at most MaxProfileBytes), and returns the bytes written. seconds 0
// means the default (DefaultProfileSeconds for cpu and trace, a snapshot
// for the others). The agent takes seconds to answer: ctx's deadline must
// leave room for them. An error answer is an *APIError.
func (c *Client) Profile(ctx context.Context, name string, seconds int, out io.Writer) (int64, error) {
	if !KnownProfile(name) {
		return 0, fmt.Errorf("profile: no profile %q: want one of %v", name, Profiles)
	}
	path := PprofPath + name
	if seconds > 0 {
		path += "?seconds=" + strconv.Itoa(seconds)
	}
	var n int64
	err := c.exchange(ctx, c.path(), "GET", path, nil, func(r io.Reader) error {
		status, body, err := readHead(r, maxHeaderBytes)
		if err != nil {
			return err
		}
		if status != statusOK {
			raw, err := io.ReadAll(io.LimitReader(body, maxErrorBody))
			if err != nil {
				return fmt.Errorf("body: %w", err)
			}
			return apiError(status, raw)
		}
		n, err = io.Copy(out, io.LimitReader(body, MaxProfileBytes+1))
		switch {
		case err != nil:
			return fmt.Errorf("body: %w", err)
		case n > MaxProfileBytes:
			return fmt.Errorf("the answer exceeds %d bytes", int64(MaxProfileBytes))
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("profile %s: %w", name, err)
	}
	return n, nil
}

// maxErrorBody bounds what the client reads of an error answer to a
// streamed request.
const maxErrorBody = 1 << 20
