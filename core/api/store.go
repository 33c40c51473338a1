package api

import (
	"context"
	"path/filepath"
	"strings"
)

// Paths of the store's maintenance API.
const (
	BackupPath     = "/v1/ipam/backup"
	StoreCheckPath = "/v1/ipam/check"
)

// maxPathLen bounds a file path in a request (PATH_MAX).
const maxPathLen = 4096

// BackupRequest asks the agent to write a consistent copy of its embedded
// store to Path, a file on the agent's host.
type BackupRequest struct {
	// Path is absolute: the agent does not share the caller's directory.
	Path string `json:"path"`
	// Force replaces an existing file.
	Force bool `json:"force,omitempty"`
}

// Validate checks the request's fields.
func (r BackupRequest) Validate() error {
	switch {
	case r.Path == "":
		return fieldErr("path", "is required")
	case len(r.Path) > maxPathLen:
		return fieldErr("path", "is longer than %d bytes", maxPathLen)
	case strings.IndexByte(r.Path, 0) >= 0:
		return fieldErr("path", "contains a NUL byte")
	case !filepath.IsAbs(r.Path):
		return fieldErr("path", "%q is not absolute", r.Path)
	case strings.HasSuffix(r.Path, "/"):
		return fieldErr("path", "%q names a directory, not a file", r.Path)
	}
	return nil
}

// BackupResult is the answer to a backup.
type BackupResult struct {
	Path  string `json:"path"`
	Store string `json:"store"` // the store's own file (ipam.db_path)
	Bytes int64  `json:"bytes"`
	// Revision is the store's revision the copy holds.
	Revision   int64   `json:"revision"`
	DurationMs float64 `json:"duration_ms"`
}

// StoreCheckResult is the answer to a store check: OK, or the problems found.
type StoreCheckResult struct {
	Store    string   `json:"store"` // the file, or "etcd"
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
	// Records is how many keys the store holds.
	Records    int     `json:"records"`
	DurationMs float64 `json:"duration_ms"`
}

// Backup asks the agent to back up its store; see BackupRequest.
func (c *Client) Backup(ctx context.Context, req BackupRequest) (BackupResult, error) {
	var out BackupResult
	err := c.do(ctx, "POST", BackupPath, req, &out)
	return out, err
}

// StoreCheck asks the agent to check its store while it runs.
func (c *Client) StoreCheck(ctx context.Context) (StoreCheckResult, error) {
	var out StoreCheckResult
	err := c.do(ctx, "GET", StoreCheckPath, nil, &out)
	return out, err
}
