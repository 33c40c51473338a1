package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"syscall"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Client talks to a running agent over its control socket. The zero value
// uses DefaultSocketPath. Deadlines come from the contexts given.
type Client struct {
	SocketPath string
}

// NotRunningError says that no agent answers on the socket (the path does
// not exist, or nothing listens on it).
type NotRunningError struct {
	Path string
	Err  error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no spiderpool-agent answers on %s: is it running?", e.Path)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// APIError is an error answer from the agent.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the body's "error"
	Field   string // the body's "field", for a 400 about one
}

func (e *APIError) Error() string {
	return fmt.Sprintf("spiderpool-agent answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

func (c *Client) path() string {
	if c.SocketPath == "" {
		return DefaultSocketPath
	}
	return c.SocketPath
}

// Status returns the agent's state.
func (c *Client) Status(ctx context.Context) (api.Agent, error) {
	var a api.Agent
	if _, err := c.do(ctx, http.MethodGet, StatusPath, nil, http.StatusOK, &a); err != nil {
		return api.Agent{}, fmt.Errorf("status: %w", err)
	}
	return a, nil
}

// Shutdown asks the agent to stop gracefully and returns its pid, so that
// the caller can wait for the process to exit.
func (c *Client) Shutdown(ctx context.Context) (int, error) {
	var r ShutdownResponse
	if _, err := c.do(ctx, http.MethodPost, ShutdownPath, nil, http.StatusAccepted, &r); err != nil {
		return 0, fmt.Errorf("shutdown: %w", err)
	}
	return r.PID, nil
}

// Reload asks the agent to reload its configuration. A configuration the
// agent refused is an *APIError with Status 422 and the reason.
func (c *Client) Reload(ctx context.Context) error {
	if _, err := c.do(ctx, http.MethodPost, ReloadPath, nil, http.StatusOK, nil); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	return nil
}

// Check asks the agent to check addresses. It returns the HTTP status with
// the answer: 200 with the response; 400 (a malformed request, with
// APIError.Field), 503 (not ready) or another code with an *APIError; 0 when
// no answer came.
func (c *Client) Check(ctx context.Context, req CheckRequest) (api.CheckResult, int, error) {
	var resp api.CheckResult
	code, err := c.do(ctx, http.MethodPost, CheckPath, req, http.StatusOK, &resp)
	if err != nil {
		return api.CheckResult{}, code, fmt.Errorf("check: %w", err)
	}
	return resp, code, nil
}

// do sends one request and decodes a want answer into out, or an error
// answer into an *APIError.
func (c *Client) do(ctx context.Context, method, path string, in any, want int, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	res, err := c.send(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		return res.StatusCode, apiError(res)
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return res.StatusCode, fmt.Errorf("read the answer from %s: %w", c.path(), err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode the answer from %s: %w", c.path(), err)
		}
	}
	return res.StatusCode, nil
}

// maxAnswerBytes bounds what the client reads of a JSON answer.
const maxAnswerBytes = 64 << 20

// send sends one request over the socket, to a peer that passed
// trustPeer, and returns the answer for the caller to read and close.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://spiderpool-agent"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	sock := c.path()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, err
			}
			if err := trustPeer(conn.(*net.UnixConn), sock); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}}
	res, err := hc.Do(req)
	if err != nil {
		var untrusted *UntrustedPeerError
		switch {
		case errors.As(err, &untrusted):
			return nil, untrusted
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
			return nil, &NotRunningError{Path: sock, Err: err}
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("cannot open %s (mode 0600): run as the agent's user (root): %w", sock, err)
		}
		return nil, fmt.Errorf("talk to spiderpool-agent on %s: %w", sock, err)
	}
	return res, nil
}

// apiError reads an error answer into an *APIError.
func apiError(res *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	apiErr := &APIError{Status: res.StatusCode}
	var eb ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
		apiErr.Message, apiErr.Field = eb.Error, eb.Field
	} else {
		apiErr.Message = string(bytes.TrimSpace(raw))
	}
	return apiErr
}
