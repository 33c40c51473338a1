package cniplugin

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
	"net/url"
	"os"
	"syscall"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// maxAnswerBytes bounds an answer of the agent. A list of allocations of
// two pools of 5000 addresses each is about 4 MiB.
const maxAnswerBytes = 16 << 20

// client is a thin client of the agent's IPAM API over its unix socket.
// Every call is bounded by the context the caller gives it.
type client struct {
	socket string
}

// UnreachableError says that no agent answered on the socket: it is not
// running, or did not answer in time. A runtime should try again later.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string {
	switch {
	case errors.Is(e.Err, fs.ErrNotExist), errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("spiderpool-agent is not running: nothing listens on %s (start it: systemctl start spiderpool-agent)", e.Path)
	case errors.Is(e.Err, context.DeadlineExceeded), errors.Is(e.Err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("spiderpool-agent on %s did not answer in time: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("cannot reach spiderpool-agent on %s: %v", e.Path, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is an error answer of the agent.
type APIError struct {
	Status int
	Body   ipamapi.ErrorBody
}

func (e *APIError) Error() string {
	msg := e.Body.Error
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return "spiderpool-agent: " + msg
}

func (c *client) allocate(ctx context.Context, req ipamapi.AllocateRequest) (ipamapi.Attachment, error) {
	var a ipamapi.Attachment
	err := c.do(ctx, http.MethodPost, ipamapi.AllocatePath, req, &a)
	return a, err
}

func (c *client) release(ctx context.Context, req ipamapi.ReleaseRequest) (ipamapi.ReleaseResponse, error) {
	var r ipamapi.ReleaseResponse
	err := c.do(ctx, http.MethodPost, ipamapi.ReleasePath, req, &r)
	return r, err
}

func (c *client) allocation(ctx context.Context, key ipamapi.AttachmentKey) (ipamapi.Attachment, error) {
	var a ipamapi.Attachment
	q := url.Values{"container_id": {key.ContainerID}, "interface": {key.Interface}}
	err := c.do(ctx, http.MethodGet, ipamapi.AllocationPath+"?"+q.Encode(), nil, &a)
	return a, err
}

func (c *client) allocations(ctx context.Context, pool string) ([]ipamapi.Attachment, error) {
	var as []ipamapi.Attachment
	q := url.Values{"pool": {pool}}
	err := c.do(ctx, http.MethodGet, ipamapi.AllocationsPath+"?"+q.Encode(), nil, &as)
	return as, err
}

func (c *client) pools(ctx context.Context) ([]ipamapi.PoolUsage, error) {
	var ps []ipamapi.PoolUsage
	err := c.do(ctx, http.MethodGet, ipamapi.PoolsPath, nil, &ps)
	return ps, err
}

// do sends one request and decodes a 200 answer into out, or an error
// answer into an *APIError.
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode the request: %w", err)
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
	hc := &http.Client{Transport: &http.Transport{
		DialContext:       c.dial,
		DisableKeepAlives: true,
		// The plugin makes one or two requests and exits: no pool, no
		// proxy from the environment, no HTTP/2.
		Proxy: nil,
	}}
	res, err := hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		var pe *UntrustedPeerError
		switch {
		case errors.As(err, &pe):
			return pe
		case errors.As(err, &ue):
			return ue
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cannot open %s (mode 0600): the plugin must run as root, as container runtimes run it: %w", c.socket, err)
		}
		return &UnreachableError{Path: c.socket, Err: err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes+1))
	if err != nil {
		return &UnreachableError{Path: c.socket, Err: fmt.Errorf("read the answer: %w", err)}
	}
	if len(raw) > maxAnswerBytes {
		return fmt.Errorf("the answer of spiderpool-agent on %s to %s is larger than %d bytes", c.socket, path, maxAnswerBytes)
	}
	if res.StatusCode != http.StatusOK {
		ae := &APIError{Status: res.StatusCode}
		if json.Unmarshal(raw, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body = ipamapi.ErrorBody{Error: fmt.Sprintf("%d %s: %s", res.StatusCode, http.StatusText(res.StatusCode), bytes.TrimSpace(raw))}
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode the answer of spiderpool-agent on %s to %s: %w", c.socket, path, err)
		}
	}
	return nil
}

// dial connects to the socket and checks who answers on it (trustPeer).
func (c *client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, err
		}
		return nil, &UnreachableError{Path: c.socket, Err: err}
	}
	if err := trustPeer(conn.(*net.UnixConn), c.socket); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
