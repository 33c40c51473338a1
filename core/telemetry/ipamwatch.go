package telemetry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// WatchMetrics are the metrics of the watcher of allocated addresses
// (core/ipam/watch).
type WatchMetrics struct {
	detected  *prometheus.CounterVec
	defences  *prometheus.CounterVec
	contested prometheus.Gauge
	busy      prometheus.Gauge
	watching  prometheus.Gauge
	lost      prometheus.Counter
}

// NewWatchMetrics registers the watcher's metrics on t.
func NewWatchMetrics(t *Telemetry) (*WatchMetrics, error) {
	c := &ipamCollectors{reg: t.reg}
	m := &WatchMetrics{
		detected:  c.counterVec("conflicts_detected_total", "Conflicts detected after allocation: an allocated address claimed on the wire by another MAC (ARP or ND), by pool.", "pool"),
		defences:  c.counterVec("conflict_defences_total", "Announcements sent from a workload to defend its contested address (pools with defend = true; at most one per 10 s per address).", "pool"),
		contested: c.gauge("addresses_contested", "Allocated addresses of this node claimed by another MAC within the last 5 minutes."),
		busy:      c.gauge("addresses_busy", "Pool addresses this node does not hold seen claimed on the wire within the last 10 minutes (skipped by candidate searches)."),
		watching:  c.gauge("interfaces_watched", "Allocated workload interfaces watched for conflicting claims."),
		lost:      c.counter("conflict_records_dropped_total", "Conflict reports not written to the store (its queue was full or the write failed)."),
	}
	if err := c.err; err != nil {
		return nil, fmt.Errorf("register the IPAM watch metrics: %w", err)
	}
	return m, nil
}

// Detected counts a new conflict of pool.
func (m *WatchMetrics) Detected(pool string) { m.detected.WithLabelValues(pool).Inc() }

// Defended counts an announcement sent for an address of pool.
func (m *WatchMetrics) Defended(pool string) { m.defences.WithLabelValues(pool).Inc() }

// Gauges sets the watcher's current counts.
func (m *WatchMetrics) Gauges(contested, busy, watching int) {
	m.contested.Set(float64(contested))
	m.busy.Set(float64(busy))
	m.watching.Set(float64(watching))
}

// RecordDropped counts a conflict report the store did not get.
func (m *WatchMetrics) RecordDropped() { m.lost.Inc() }

// Pools makes the per-pool series exist at zero: increase() over a counter
// that appears at 1 sees no increase, so the first conflict of a pool
// would raise no alert.
func (m *WatchMetrics) Pools(names []string) {
	for _, p := range names {
		m.detected.WithLabelValues(p)
		m.defences.WithLabelValues(p)
	}
}
