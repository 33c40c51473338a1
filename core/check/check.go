// Package check runs a check (a api.Check, which the control API validates
// and hands over): every address against every enabled detector, all at
// once, each detector bounded by its own timeout, with the plugin's
// failure_policy deciding what a detector that cannot answer means.
package check

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Detectors is what a check needs from the supervisor.
type Detectors interface {
	Detectors() []supervisor.Detector
	Check(ctx context.Context, name string, req sdk.CheckRequest) (sdk.CheckResult, error)
}

// Metrics records what checks conclude. Implementations must not block.
type Metrics interface {
	Check(verdict string, seconds float64)
	IncrCounter(name string, v float64, labels map[string]string)
}

// Run checks every address of req with every detector, in parallel: the
// families and the detectors do not wait for each other, so a dual-stack
// address with conflict and gateway detection costs about one reply window.
// (So no gateway probe can use the candidate as its sender: it would write
// an address not yet checked for conflicts into the gateway's cache.)
func Run(ctx context.Context, d Detectors, m Metrics, req api.Check) api.CheckResult {
	start := time.Now()
	detectors := d.Detectors()
	resp := api.CheckResult{Verdict: api.VerdictPass, Addresses: make([]api.AddressResult, len(req.Addresses))}
	var wg sync.WaitGroup
	for i, addr := range req.Addresses {
		res := &resp.Addresses[i]
		res.Address = addr.Address.String()
		if addr.Gateway.IsValid() {
			res.Gateway = addr.Gateway.String()
		}
		res.Detectors = make([]api.DetectorResult, len(detectors))
		creq := sdk.CheckRequest{Interface: req.Interface, Netns: req.Netns, Address: addr.Address, Gateway: addr.Gateway}
		for j, det := range detectors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res.Detectors[j] = runOne(ctx, d, m, det, creq)
			}()
		}
	}
	wg.Wait()
	for i := range resp.Addresses {
		a := &resp.Addresses[i]
		a.Verdict = addressVerdict(a.Detectors)
		if a.Verdict != api.VerdictPass {
			resp.Verdict = api.VerdictBlock
		}
	}
	took := time.Since(start)
	resp.DurationMs = ms(took)
	m.Check(string(resp.Verdict), took.Seconds())
	return resp
}

func runOne(ctx context.Context, d Detectors, m Metrics, det supervisor.Detector, req sdk.CheckRequest) api.DetectorResult {
	start := time.Now()
	out := api.DetectorResult{Name: det.Name}
	var (
		res sdk.CheckResult
		err error
	)
	// The error is worded only when it is the answer: formatting it for
	// every call cost each check an allocation and a trip through fmt.
	if det.Available {
		res, err = d.Check(ctx, det.Name, req)
	} else {
		err = fmt.Errorf("%w: %s is not running", supervisor.ErrUnavailable, det.Name)
	}
	out.DurationMs = ms(time.Since(start))
	switch {
	case err != nil && det.FailurePolicy == api.FailOpen && errors.Is(err, supervisor.ErrUnavailable):
		out.Verdict = api.VerdictSkip
		out.Reason = fmt.Sprintf("skipped (failure_policy fail-open): %v", err)
		m.IncrCounter("check_detector_skipped_total", 1, map[string]string{"detector": det.Name})
	case err != nil:
		out.Verdict, out.Reason = api.VerdictError, err.Error()
		m.IncrCounter("check_errors_total", 1, map[string]string{"detector": det.Name, "reason": errorReason(err)})
	default:
		out.Reason, out.Evidence, out.PluginMs = res.Reason, res.Evidence, ms(res.Duration)
		switch res.Verdict {
		case sdk.VerdictPass:
			out.Verdict = api.VerdictPass
		case sdk.VerdictBlock:
			out.Verdict, out.BlockKind = api.VerdictBlock, blockKind(res.BlockKind)
		case sdk.VerdictSkip:
			out.Verdict = api.VerdictSkip
		default:
			// The detector ran but could not decide (an interface that is
			// down, a send that kept failing): never a pass, whatever the
			// failure policy, which is about detectors that are unavailable.
			out.Verdict = api.VerdictError
			m.IncrCounter("check_errors_total", 1, map[string]string{"detector": det.Name, "reason": "detector"})
		}
	}
	m.IncrCounter("check_detector_results_total", 1, map[string]string{"detector": det.Name, "verdict": string(out.Verdict)})
	return out
}

// blockKind maps a detector's block kind onto the core's. A block that
// names no kind (every block of a plugin older than API 1.2) fails the
// allocation, as every third-party block did before kinds existed; the
// sdk client refuses a kind it does not know, so none arrives here.
func blockKind(k sdk.BlockKind) api.BlockKind {
	switch k {
	case sdk.BlockInUse:
		return api.BlockInUse
	case sdk.BlockUnreachable:
		return api.BlockUnreachable
	case sdk.BlockPolicy:
		return api.BlockPolicy
	}
	return api.BlockFail
}

func errorReason(err error) string {
	switch {
	case errors.Is(err, supervisor.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, sdk.ErrDeadline):
		return "timeout"
	case errors.Is(err, supervisor.ErrUnavailable):
		return "unavailable"
	}
	return "call"
}

// addressVerdict is block when any detector blocked, else error when any
// could not decide, else pass: a skip says nothing either way.
func addressVerdict(rs []api.DetectorResult) api.Verdict {
	v := api.VerdictPass
	for _, r := range rs {
		switch r.Verdict {
		case api.VerdictBlock:
			return api.VerdictBlock
		case api.VerdictError:
			v = api.VerdictError
		}
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
