//go:build linux

package probeplugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Error reasons: the values of the <prefix>_errors_total{reason} label.
const (
	ReasonInterface = "interface" // missing, down, no carrier, NOARP, no MAC, no IPv6 link-local
	ReasonSend      = "send"      // the first probe could not be sent after every retry
	ReasonNetns     = "netns"     // the network namespace could not be opened or entered
	ReasonUnproven  = "unproven"  // silence could not be proven: frames dropped or unread on this host (overload)
	ReasonTimeout   = "timeout"   // the agent's deadline ran out or the check was cancelled
	ReasonInvalid   = "invalid"   // the request itself is wrong (no address, family mismatch)
	ReasonOther     = "other"     // anything else (e.g. the plugin is shut down)
)

// Reasons lists every error reason, in the order metrics report them.
var Reasons = []string{ReasonInterface, ReasonSend, ReasonNetns, ReasonUnproven, ReasonTimeout, ReasonInvalid, ReasonOther}

// Classify maps a check's error to one of Reasons.
func Classify(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, probe.ErrInterface), errors.Is(err, probe.ErrNoLinkLocal):
		return ReasonInterface
	case errors.Is(err, probe.ErrSend):
		return ReasonSend
	case errors.Is(err, probe.ErrInvalid):
		return ReasonInvalid
	case errors.Is(err, probe.ErrNetns):
		return ReasonNetns
	case errors.Is(err, probe.ErrUnproven):
		return ReasonUnproven
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonTimeout
	}
	return ReasonOther
}

// Family is the metric label of an address's family: "ipv4", "ipv6", or
// "unknown" for an invalid address.
func Family(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Unmap().Is4():
		return "ipv4"
	}
	return "ipv6"
}

// FormatDuration renders d for a reason: whole microseconds ("120µs",
// "1.235ms", "100ms"), or as is below one.
func FormatDuration(d time.Duration) string {
	if d >= time.Microsecond {
		d = d.Round(time.Microsecond)
	}
	return d.String()
}

// Plural is "1 probe", "3 probes".
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// Names names one detector's metrics.
type Names struct {
	// Prefix starts every name: "ip_conflict" gives ip_conflict_checks_total
	// and so on.
	Prefix string
	// What the checks are, for help texts: "IP conflict checks".
	What string
	// Blocked names the counter of block verdicts by family, without the
	// prefix and _total: "conflicts" gives ip_conflict_conflicts_total.
	Blocked     string
	BlockedHelp string
	// RTT adds <prefix>_rtt_seconds, a summary of the round-trip times of
	// the answers.
	RTT bool
}

// Check describes one check for Kit.Check.
type Check struct {
	// Addr is the address to probe: the candidate, or the gateway. Its
	// family (or, when it is invalid, req.Address's) labels the metrics and
	// is held against the agent's enable_ipv4 / enable_ipv6.
	Addr netip.Addr
	// Skip, when not empty, answers VerdictSkip with this reason, unprobed.
	Skip string
	// Err, when not nil, answers VerdictError with its text, unprobed.
	// Wrap probe.ErrInvalid for a bad request.
	Err error
	// Run runs the engine check. The method expression
	// (*probe.Engine).CheckConflict fits.
	Run func(e *probe.Engine, ctx context.Context, t probe.Target, p probe.Params) (probe.Result, error)
	// Judge turns a completed result into the answer: its Verdict, Reason
	// and any evidence of its own. Kit adds "family", "probes_sent",
	// "window" and, when someone answered, "responder_mac", "rtt" and
	// "evidence" (the kind of frame).
	Judge func(res probe.Result, o Options) sdk.CheckResult
}

// engineRef is an engine and the checks running on it, so that a reload
// that replaces it closes the old one only after they end.
type engineRef struct {
	e       *probe.Engine
	running sync.WaitGroup
}

// Kit is the state a probe-engine detector shares: its options, the agent's
// settings, the engine and the metrics. It implements Health, Metrics and
// Shutdown of sdk.Plugin; embed it. Until Configure it uses DefaultOptions
// with both families enabled.
type Kit struct {
	log   hclog.Logger
	names Names

	mu     sync.RWMutex
	opts   Options
	agent  sdk.AgentSettings
	eng    *engineRef
	closed bool

	m *metrics
}

// NewKit returns a Kit with the default options and an engine that opens no
// socket before the first check.
func NewKit(log hclog.Logger, names Names) *Kit {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	o := DefaultOptions()
	return &Kit{
		log:   log,
		names: names,
		opts:  o,
		agent: sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true},
		eng:   &engineRef{e: probe.NewEngine(o.EngineOptions())},
		m:     newMetrics(),
	}
}

// Configure decodes and validates the block (see Decode; extra is the
// plugin's own config struct or nil) and applies it with the agent's
// settings. It is idempotent: the engine and its sockets are kept unless
// idle_timeout or probe_rate changes (both are the engine's own options). On an error nothing changes.
func (k *Kit) Configure(req sdk.ConfigureRequest, extra any) error {
	opts := DefaultOptions()
	if err := Decode(req.Config, &opts, extra); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("the plugin is shut down")
	}
	if opts.IdleTimeout != k.opts.IdleTimeout || opts.ProbeRate != k.opts.ProbeRate {
		old := k.eng
		k.eng = &engineRef{e: probe.NewEngine(opts.EngineOptions())}
		go func() {
			old.running.Wait()
			_ = old.e.Close()
		}()
		k.log.Info("new probe engine", "idle_timeout", opts.IdleTimeout, "probe_rate", opts.ProbeRate)
	}
	k.opts, k.agent = opts, req.Agent
	k.log.Info("configured", "window", opts.Window.String(), "retries", opts.Retries, "probes", opts.Probes,
		"idle_timeout", opts.IdleTimeout.String(), "probe_rate", opts.ProbeRate, "ipv4", req.Agent.EnableIPv4, "ipv6", req.Agent.EnableIPv6)
	return nil
}

// Validate decodes and validates the block as Configure does (extra as
// there) and applies nothing: the body of a detector's ValidateConfig, so
// that a block it accepts Configure accepts too.
func (k *Kit) Validate(req sdk.ConfigureRequest, extra any) error {
	opts := DefaultOptions()
	return Decode(req.Config, &opts, extra)
}

// Options returns the options in force.
func (k *Kit) Options() Options {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.opts
}

// Check answers one check on req's interface and namespace and records it.
// An engine error is VerdictError with the error's text as reason, never a
// pass. The answer's Duration is set.
func (k *Kit) Check(ctx context.Context, req sdk.CheckRequest, c Check) sdk.CheckResult {
	start := time.Now()
	fam := Family(c.Addr)
	if !c.Addr.IsValid() { // no gateway given: label with the candidate's family
		fam = Family(req.Address.Addr())
	}
	var (
		out sdk.CheckResult
		res probe.Result
	)
	switch {
	case c.Skip != "":
		out = sdk.CheckResult{Verdict: sdk.VerdictSkip, Reason: c.Skip}
	case c.Err != nil:
		out = k.fail(c.Err)
	case !c.Addr.IsValid():
		out = k.fail(fmt.Errorf("%w: no address given", probe.ErrInvalid))
	default:
		out, res = k.probe(ctx, req, c, fam)
	}
	if out.Evidence == nil {
		out.Evidence = map[string]string{}
	}
	out.Evidence["family"] = fam
	out.Duration = time.Since(start)
	var rtt time.Duration = -1
	if k.names.RTT && res.Responder != nil {
		rtt = res.RTT
	}
	k.m.record(fam, out.Verdict, out.Duration, rtt, res)
	return out
}

func (k *Kit) probe(ctx context.Context, req sdk.CheckRequest, c Check, fam string) (sdk.CheckResult, probe.Result) {
	k.mu.RLock()
	opts, agent, ref, closed := k.opts, k.agent, k.eng, k.closed
	if !closed {
		ref.running.Add(1)
	}
	k.mu.RUnlock()
	if closed {
		return k.fail(fmt.Errorf("cannot probe %s: %w", req.Interface, probe.ErrClosed)), probe.Result{}
	}
	defer ref.running.Done()

	if fam == "ipv4" && !agent.EnableIPv4 {
		return sdk.CheckResult{Verdict: sdk.VerdictSkip, Reason: "IPv4 is disabled on this node (enable_ipv4 = false)"}, probe.Result{}
	}
	if fam == "ipv6" && !agent.EnableIPv6 {
		return sdk.CheckResult{Verdict: sdk.VerdictSkip, Reason: "IPv6 is disabled on this node (enable_ipv6 = false)"}, probe.Result{}
	}
	t := probe.Target{Netns: req.Netns, Interface: req.Interface, Addr: c.Addr}
	res, err := c.Run(ref.e, ctx, t, opts.Params())
	if err != nil {
		out := k.fail(err)
		if res.ProbesSent > 0 {
			out.Evidence["probes_sent"] = strconv.Itoa(res.ProbesSent)
		}
		return out, res
	}
	out := c.Judge(res, opts)
	ev := map[string]string{
		"probes_sent": strconv.Itoa(res.ProbesSent),
		"window":      opts.Window.String(),
	}
	if res.SendErrors > 0 {
		ev["send_errors"] = strconv.Itoa(res.SendErrors)
	}
	if res.Rounds > 1 {
		ev["rounds"] = strconv.Itoa(res.Rounds)
	}
	if res.Responder != nil {
		ev[sdk.EvidenceResponderMAC] = res.Responder.String()
		ev["rtt"] = FormatDuration(res.RTT)
		ev["evidence"] = res.Evidence
	}
	for key, v := range out.Evidence {
		ev[key] = v
	}
	out.Evidence = ev
	return out, res
}

// fail is the answer to a check that could not run.
func (k *Kit) fail(err error) sdk.CheckResult {
	reason := Classify(err)
	k.m.failed(reason)
	k.log.Debug("check failed", "reason", reason, "error", err)
	return sdk.CheckResult{Verdict: sdk.VerdictError, Reason: err.Error(), Evidence: map[string]string{"error": reason}}
}

// HealthDetail is the Detail of Kit.Health.
type HealthDetail struct {
	SocketsOpen int    `json:"sockets_open"`
	Checks      uint64 `json:"checks"`
	Window      string `json:"window"`
	Retries     int    `json:"retries"`
	Probes      int    `json:"probes"`
	ProbeRate   int    `json:"probe_rate"`
	IPv4        bool   `json:"ipv4"`
	IPv6        bool   `json:"ipv6"`
}

// Health implements sdk.Plugin: ready until Shutdown, with the sockets open
// and the checks answered so far.
func (k *Kit) Health(context.Context) sdk.Health {
	k.mu.RLock()
	opts, agent, ref, closed := k.opts, k.agent, k.eng, k.closed
	k.mu.RUnlock()
	if closed {
		return sdk.Health{State: sdk.HealthFailed, Message: "shut down"}
	}
	return sdk.Health{State: sdk.HealthReady, Detail: HealthDetail{
		SocketsOpen: ref.e.Stats().SocketsOpen,
		Checks:      k.m.checksTotal(),
		Window:      opts.Window.String(),
		Retries:     opts.Retries,
		Probes:      opts.Probes,
		ProbeRate:   opts.ProbeRate,
		IPv4:        agent.EnableIPv4,
		IPv6:        agent.EnableIPv6,
	}}
}

// Metrics implements sdk.Plugin; see Names for what it reports.
func (k *Kit) Metrics(context.Context) []sdk.Sample {
	k.mu.RLock()
	ref := k.eng
	k.mu.RUnlock()
	return k.m.samples(k.names, ref.e.Stats())
}

// Shutdown implements sdk.Plugin: it closes the engine; checks still running
// end with an error, later ones too.
func (k *Kit) Shutdown(context.Context) error {
	k.mu.Lock()
	k.closed = true
	ref := k.eng
	k.mu.Unlock()
	return ref.e.Close()
}
