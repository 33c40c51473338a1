package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// MetricsPath is where the metrics server serves Handler.
const MetricsPath = "/metrics"

// maxScrape bounds how much Fetch reads.
const maxScrape = 64 << 20

// NotServingError is Fetch's error when nothing listens on the metrics
// address: the usual cause is that metrics are disabled.
type NotServingError struct {
	Addr string // host:port
	Err  error
}

func (e *NotServingError) Error() string {
	return fmt.Sprintf("nothing answers on %s: metrics may be disabled (set SPIDERPOOL_ENABLED_METRIC=true or metrics { enabled = true })", e.Addr)
}

func (e *NotServingError) Unwrap() error { return e.Err }

// Fetch GETs http://address:port/metrics in the Prometheus text format and
// returns the body: the client side of the `metric` command. When the
// connection is refused the error is a *NotServingError.
func Fetch(ctx context.Context, address string, port int) ([]byte, error) {
	hostport := net.JoinHostPort(address, strconv.Itoa(port))
	url := "http://" + hostport + MetricsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch metrics: %w", err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	// A client of its own: no proxy from the environment for a local
	// scrape, and no connections kept in a shared pool.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &NotServingError{Addr: hostport, Err: err}
		}
		return nil, fmt.Errorf("fetch metrics from %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape))
	if err != nil {
		return nil, fmt.Errorf("read metrics from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return nil, fmt.Errorf("fetch metrics from %s: %s: %s", url, resp.Status, msg)
	}
	return body, nil
}
