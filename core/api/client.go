package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"time"
)

// DefaultSocketPath is the agent's control socket unless configured
// otherwise (config socket_path): where the daemon listens and where the
// CLI and the CNI plugin call.
const DefaultSocketPath = "/var/run/spidernet/spiderpool.sock"

// maxAnswer bounds an answer read from the agent.
const maxAnswer = 64 << 20

// Client calls the control API over the agent's control socket: the CLI's
// commands and the CNI plugin use it alike. The zero value uses
// DefaultSocketPath; deadlines come from the contexts given. Every call is
// one request on a connection of its own (wire.go).
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

// APIError is an error answer of the agent: its HTTP status and body (the
// message, the field at fault on a 400, the code to act on).
type APIError struct {
	Status int
	ErrorBody
}

func (e *APIError) Error() string { return e.ErrorBody.Error }

// TryAgain reports whether the caller may retry later (CNI error 11): a
// 503, or a code that StatusOf answers with 503 (try_again, not_ready)
// whatever status carried it.
func (e *APIError) TryAgain() bool {
	return e.Status == statusServiceUnavailable || e.Code != "" && StatusOf(e.Code) == statusServiceUnavailable
}

func (c *Client) path() string {
	if c.SocketPath == "" {
		return DefaultSocketPath
	}
	return c.SocketPath
}

// Allocate asks for addresses; see AllocateRequest.
func (c *Client) Allocate(ctx context.Context, req AllocateRequest) (Attachment, error) {
	var out Attachment
	err := c.do(ctx, "POST", AllocatePath, req, &out)
	return out, err
}

// Release releases what (container id, interface) holds.
func (c *Client) Release(ctx context.Context, req ReleaseRequest) (ReleaseResponse, error) {
	var out ReleaseResponse
	err := c.do(ctx, "POST", ReleasePath, req, &out)
	return out, err
}

// ReleaseWorkload releases every allocation of a workload.
func (c *Client) ReleaseWorkload(ctx context.Context, workload string) (ReleaseResponse, error) {
	var out ReleaseResponse
	err := c.do(ctx, "POST", ReleaseWorkloadPath, ReleaseWorkloadRequest{Workload: workload}, &out)
	return out, err
}

// Get returns the allocation of (container id, interface); ok is false
// when there is none.
func (c *Client) Get(ctx context.Context, key AttachmentKey) (att Attachment, ok bool, err error) {
	q := url.Values{"container_id": {key.ContainerID}, "interface": {key.Interface}}
	err = c.do(ctx, "GET", AllocationPath+"?"+q.Encode(), nil, &att)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == statusNotFound {
		return Attachment{}, false, nil
	}
	return att, err == nil, err
}

// List returns the allocations, filtered by pool and workload when given.
func (c *Client) List(ctx context.Context, pool, workload string) ([]Attachment, error) {
	var out []Attachment
	err := c.ListAs(ctx, pool, workload, &out)
	return out, err
}

// ListAs is List decoded into out, a pointer to a slice of a struct with
// the Attachment fields a caller needs: decoding thousands of allocations
// whole (routes, times, addresses parsed) is most of a listing's cost in
// the caller.
func (c *Client) ListAs(ctx context.Context, pool, workload string, out any) error {
	q := url.Values{}
	if pool != "" {
		q.Set("pool", pool)
	}
	if workload != "" {
		q.Set("workload", workload)
	}
	p := AllocationsPath
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return c.do(ctx, "GET", p, nil, out)
}

// GC runs a garbage collection pass now.
func (c *Client) GC(ctx context.Context) (GCResult, error) {
	var out GCResult
	err := c.do(ctx, "POST", GCPath, nil, &out)
	return out, err
}

// Pools returns every pool's usage.
func (c *Client) Pools(ctx context.Context) ([]PoolUsage, error) {
	var out []PoolUsage
	err := c.do(ctx, "GET", PoolsPath, nil, &out)
	return out, err
}

// HistoryOfWorkload returns a workload's history, newest first.
func (c *Client) HistoryOfWorkload(ctx context.Context, workload string) ([]HistoryRecord, error) {
	var out []HistoryRecord
	err := c.do(ctx, "GET", HistoryPath+"?"+url.Values{"workload": {workload}}.Encode(), nil, &out)
	return out, err
}

// HistoryOfAddress answers "who had this address, and when?".
func (c *Client) HistoryOfAddress(ctx context.Context, addr netip.Addr) ([]HistoryRecord, error) {
	var out []HistoryRecord
	err := c.do(ctx, "GET", HistoryPath+"?"+url.Values{"address": {addr.String()}}.Encode(), nil, &out)
	return out, err
}

// Address returns what the agent knows of addr: its state in the pools
// (a quarantine with its cause, the MAC that answered and its end) and who
// held it.
func (c *Client) Address(ctx context.Context, addr netip.Addr) (AddressInfo, error) {
	var out AddressInfo
	err := c.do(ctx, "GET", AddressPath+"?"+url.Values{"address": {addr.String()}}.Encode(), nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = b
	}
	sock := c.path()
	status, raw, err := c.roundTrip(ctx, sock, method, path, body)
	if err != nil {
		return err
	}
	if status < statusOK || status > 299 {
		return apiError(status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode the answer from %s: %w", sock, err)
		}
	}
	return nil
}

// apiError is an error answer as an *APIError.
func apiError(status int, raw []byte) *APIError {
	ae := &APIError{Status: status}
	if json.Unmarshal(raw, &ae.ErrorBody) != nil || ae.ErrorBody.Error == "" {
		ae.ErrorBody.Error = fmt.Sprintf("spiderpool-agent answered %d: %s", status, clip(bytes.TrimSpace(raw)))
	}
	return ae
}

// roundTrip makes one request and returns the answer's status and body,
// at most maxAnswer bytes.
func (c *Client) roundTrip(ctx context.Context, sock, method, path string, body []byte) (int, []byte, error) {
	var (
		status int
		raw    []byte
	)
	err := c.exchange(ctx, sock, method, path, body, func(r io.Reader) error {
		var err error
		status, raw, err = readResponse(r, maxHeaderBytes, maxAnswer)
		return err
	})
	return status, raw, err
}

// exchange makes one request on a connection of its own (see wire.go) and
// hands the connection to read for the answer. ctx bounds all of it: its
// deadline becomes the connection's, and its cancellation cuts the
// connection short; an error after either wraps ctx.Err().
func (c *Client) exchange(ctx context.Context, sock, method, path string, body []byte, read func(io.Reader) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
			return &NotRunningError{Path: sock, Err: err}
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cannot open %s (mode 0600): run as the agent's user (root): %w", sock, err)
		}
		return fmt.Errorf("talk to spiderpool-agent on %s: %w", sock, err)
	}
	defer conn.Close()
	if err := trustPeer(conn.(*net.UnixConn), sock); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fmt.Errorf("talk to spiderpool-agent on %s: %w", sock, err)
		}
	}
	// A cancellation without a deadline still unblocks the read: a deadline
	// in the past fails it at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The connection's deadline can fire a moment before ctx's own timer
	// marks ctx done: a timeout at or after ctx's deadline is ctx's.
	ctxErr := func(err error) error {
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); cerr == nil && ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			return fmt.Errorf("%w (%v)", cerr, err)
		}
		return err
	}
	if err := writeRequest(conn, method, path, body); err != nil {
		return fmt.Errorf("send %s %s to spiderpool-agent on %s: %w", method, path, sock, ctxErr(err))
	}
	if err := read(conn); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae
		}
		return fmt.Errorf("read the answer to %s %s from %s: %w", method, path, sock, ctxErr(err))
	}
	return nil
}
