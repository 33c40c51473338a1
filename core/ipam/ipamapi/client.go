package ipamapi

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
	"net/netip"
	"net/url"
	"syscall"
)

// DefaultSocketPath is the agent's control socket unless configured
// otherwise (the same as core/control's).
const DefaultSocketPath = "/var/run/spidernet/spiderpool.sock"

// maxAnswer bounds an answer read from the agent.
const maxAnswer = 64 << 20

// Client calls the IPAM API over the agent's control socket. The zero
// value uses DefaultSocketPath; deadlines come from the contexts given.
type Client struct {
	SocketPath string
}

// NotRunningError: nothing answers on the socket.
type NotRunningError struct {
	Path string
	Err  error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no spiderpool-agent answers on %s: is it running?", e.Path)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// APIError is an error answer of the agent.
type APIError struct {
	Status int
	ErrorBody
}

func (e *APIError) Error() string { return e.ErrorBody.Error }

// TryAgain reports whether the caller may retry later (CNI error 11).
func (e *APIError) TryAgain() bool {
	return e.Code == CodeTryAgain || e.Code == CodeNotReady || e.Status == http.StatusServiceUnavailable
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
	err := c.do(ctx, http.MethodPost, AllocatePath, req, &out)
	return out, err
}

// Release releases what (container id, interface) holds.
func (c *Client) Release(ctx context.Context, req ReleaseRequest) (ReleaseResponse, error) {
	var out ReleaseResponse
	err := c.do(ctx, http.MethodPost, ReleasePath, req, &out)
	return out, err
}

// ReleaseWorkload releases every allocation of a workload.
func (c *Client) ReleaseWorkload(ctx context.Context, workload string) (ReleaseResponse, error) {
	var out ReleaseResponse
	err := c.do(ctx, http.MethodPost, ReleaseWorkloadPath, ReleaseWorkloadRequest{Workload: workload}, &out)
	return out, err
}

// Get returns the allocation of (container id, interface); ok is false
// when there is none.
func (c *Client) Get(ctx context.Context, key AttachmentKey) (att Attachment, ok bool, err error) {
	q := url.Values{"container_id": {key.ContainerID}, "interface": {key.Interface}}
	err = c.do(ctx, http.MethodGet, AllocationPath+"?"+q.Encode(), nil, &att)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return Attachment{}, false, nil
	}
	return att, err == nil, err
}

// List returns the allocations, filtered by pool and workload when given.
func (c *Client) List(ctx context.Context, pool, workload string) ([]Attachment, error) {
	q := url.Values{}
	if pool != "" {
		q.Set("pool", pool)
	}
	if workload != "" {
		q.Set("workload", workload)
	}
	var out []Attachment
	p := AllocationsPath
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// GC runs a garbage collection pass now.
func (c *Client) GC(ctx context.Context) (GCResult, error) {
	var out GCResult
	err := c.do(ctx, http.MethodPost, GCPath, nil, &out)
	return out, err
}

// Pools returns every pool's usage.
func (c *Client) Pools(ctx context.Context) ([]PoolUsage, error) {
	var out []PoolUsage
	err := c.do(ctx, http.MethodGet, PoolsPath, nil, &out)
	return out, err
}

// HistoryOfWorkload returns a workload's history, newest first.
func (c *Client) HistoryOfWorkload(ctx context.Context, workload string) ([]HistoryRecord, error) {
	var out []HistoryRecord
	err := c.do(ctx, http.MethodGet, HistoryPath+"?"+url.Values{"workload": {workload}}.Encode(), nil, &out)
	return out, err
}

// HistoryOfAddress answers "who had this address, and when?".
func (c *Client) HistoryOfAddress(ctx context.Context, addr netip.Addr) ([]HistoryRecord, error) {
	var out []HistoryRecord
	err := c.do(ctx, http.MethodGet, HistoryPath+"?"+url.Values{"address": {addr.String()}}.Encode(), nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://spiderpool-agent"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
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
		var up *UntrustedPeerError
		switch {
		case errors.As(err, &up):
			return up
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
			return &NotRunningError{Path: sock, Err: err}
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cannot open %s: run as the agent's user (root): %w", sock, err)
		}
		return fmt.Errorf("talk to spiderpool-agent on %s: %w", sock, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("read the answer from %s: %w", sock, err)
	}
	if res.StatusCode != http.StatusOK {
		ae := &APIError{Status: res.StatusCode}
		if json.Unmarshal(raw, &ae.ErrorBody) != nil || ae.ErrorBody.Error == "" {
			ae.ErrorBody.Error = fmt.Sprintf("spiderpool-agent answered %d: %s", res.StatusCode, bytes.TrimSpace(raw))
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode the answer from %s: %w", sock, err)
		}
	}
	return nil
}
