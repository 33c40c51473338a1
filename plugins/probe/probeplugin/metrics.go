//go:build linux

package probeplugin

import (
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// MaxObservations bounds each summary's observations kept between two
// collections; later ones are dropped until the next collection.
const MaxObservations = 10000

var (
	families = []string{"ipv4", "ipv6"}
	verdicts = []sdk.Verdict{sdk.VerdictPass, sdk.VerdictBlock, sdk.VerdictSkip, sdk.VerdictError}
)

type famVerdict struct {
	family  string
	verdict sdk.Verdict
}

// metrics is the bookkeeping behind Kit.Metrics. Counters are cumulative;
// summaries hold the observations since the last collection.
type metrics struct {
	mu         sync.Mutex
	checks     map[famVerdict]uint64
	blocked    map[string]uint64
	errors     map[string]uint64
	probesSent uint64
	sendErrors uint64
	durations  []float64
	rtts       []float64
}

// newMetrics starts every known series at zero, so that rates work from the
// first collection.
func newMetrics() *metrics {
	m := &metrics{checks: map[famVerdict]uint64{}, blocked: map[string]uint64{}, errors: map[string]uint64{}}
	for _, f := range families {
		for _, v := range verdicts {
			m.checks[famVerdict{f, v}] = 0
		}
		m.blocked[f] = 0
	}
	for _, r := range Reasons {
		m.errors[r] = 0
	}
	return m
}

// record counts an answered check. rtt < 0: nobody answered.
func (m *metrics) record(family string, v sdk.Verdict, took, rtt time.Duration, res probe.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks[famVerdict{family, v}]++
	if v == sdk.VerdictBlock {
		m.blocked[family]++
	}
	m.probesSent += uint64(res.ProbesSent)
	m.sendErrors += uint64(res.SendErrors)
	if len(m.durations) < MaxObservations {
		m.durations = append(m.durations, took.Seconds())
	}
	if rtt >= 0 && len(m.rtts) < MaxObservations {
		m.rtts = append(m.rtts, rtt.Seconds())
	}
}

func (m *metrics) failed(reason string) {
	m.mu.Lock()
	m.errors[reason]++
	m.mu.Unlock()
}

func (m *metrics) checksTotal() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, c := range m.checks {
		n += c
	}
	return n
}

// samples reports every series and takes the summaries' observations.
func (m *metrics) samples(n Names, st probe.Stats) []sdk.Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := n.Prefix + "_"
	var out []sdk.Sample
	for _, f := range families {
		for _, v := range verdicts {
			out = append(out, counter(p+"checks_total", n.What+" answered, by family of the probed address and verdict.",
				m.checks[famVerdict{f, v}], "family", f, "verdict", string(v)))
		}
	}
	for fv, c := range m.checks { // "unknown" family: requests without an address
		if fv.family != "ipv4" && fv.family != "ipv6" {
			out = append(out, counter(p+"checks_total", "", c, "family", fv.family, "verdict", string(fv.verdict)))
		}
	}
	if n.Blocked != "" {
		for _, f := range families {
			out = append(out, counter(p+n.Blocked+"_total", n.BlockedHelp, m.blocked[f], "family", f))
		}
	}
	out = append(out,
		counter(p+"probes_sent_total", "Probe frames sent.", m.probesSent),
		counter(p+"send_errors_total", "Failed attempts to send a probe, retried ones included.", m.sendErrors),
	)
	for _, r := range Reasons {
		out = append(out, counter(p+"errors_total", n.What+" that could not decide, by reason.", m.errors[r], "reason", r))
	}
	out = append(out, sdk.Sample{Name: p + "check_duration_seconds", Type: sdk.Summary, Observations: m.durations,
		Help: "Time " + n.What + " took, in seconds."})
	m.durations = nil
	if n.RTT {
		out = append(out, sdk.Sample{Name: p + "rtt_seconds", Type: sdk.Summary, Observations: m.rtts,
			Help: "Time from the first probe to the answer, in seconds (an upper bound with several probes)."})
		m.rtts = nil
	}
	out = append(out, sdk.Sample{Name: p + "sockets_open", Type: sdk.Gauge, Value: float64(st.SocketsOpen),
		Help: "Packet sockets open now, one per network namespace and interface."},
		counter(p+"kernel_drops_total", "Frames the kernel dropped on the probe sockets (receive buffer full); a window with a drop is probed again. Restarts from 0 when a reload replaces the engine.", st.KernelDrops),
		counter(p+"extra_rounds_total", "Windows probed again because the silence of one could not be proven (drops, frames unread at its end). Restarts from 0 when a reload replaces the engine.", st.ExtraRounds),
	)
	return out
}

func counter(name, help string, v uint64, kv ...string) sdk.Sample {
	s := sdk.Sample{Name: name, Type: sdk.Counter, Value: float64(v), Help: help}
	if len(kv) > 0 {
		s.Labels = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
	return s
}
