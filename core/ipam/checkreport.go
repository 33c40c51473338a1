package ipam

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// CheckReport turns the outcome of a store check (a damaged file, or
// Consistent's findings) into the answer of `ipam check`; an error that
// says nothing about the records (the store unreachable, the deadline) is
// returned instead.
func CheckReport(store string, records int, err error, took time.Duration) (api.StoreCheckResult, error) {
	res := api.StoreCheckResult{Store: store, OK: err == nil, Records: records, DurationMs: float64(took.Microseconds()) / 1000}
	if err == nil {
		return res, nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStoreClosed) || errors.Is(err, ErrOutcomeUnknown) {
		return res, err
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			res.Problems = append(res.Problems, line)
		}
	}
	return res, nil
}
