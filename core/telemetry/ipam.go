package telemetry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// IPAMMetrics are the IPAM service's metrics. They are plain Prometheus
// collectors on the agent's registry (go-metrics has no histogram), named
// spiderpool_ipam_*. It implements ipam.Metrics.
type IPAMMetrics struct {
	allocations *prometheus.CounterVec
	releases    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	conflicts   *prometheus.CounterVec
	quarantines *prometheus.CounterVec
	retries     *prometheus.CounterVec
	gc          *prometheus.CounterVec
	size        *prometheus.GaugeVec
	allocated   *prometheus.GaugeVec
	reserved    *prometheus.GaugeVec
	quarantined *prometheus.GaugeVec
	workloads   *prometheus.GaugeVec
	pruned      prometheus.Counter
	prunedRecs  prometheus.Counter
}

// NewIPAMMetrics registers the IPAM metrics on t's registry. Call it once
// per Telemetry: a second call fails on the duplicate registration.
func NewIPAMMetrics(t *Telemetry) (*IPAMMetrics, error) {
	c := &ipamCollectors{reg: t.reg}
	m := &IPAMMetrics{
		allocations: c.counterVec("allocations_total", "IPAM allocations by pool and result (ok, or the error code: pool_full, conflict, gateway_unreachable, try_again, ...).", "pool", "result"),
		releases:    c.counterVec("releases_total", "Addresses released, by pool and result (ok or error).", "pool", "result"),
		duration: c.histogramVec("allocation_duration_seconds", "Duration of IPAM allocations, reservation and checks included, in seconds.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .15, .25, .5, 1, 2.5, 5}, "pool"),
		conflicts:   c.counterVec("conflicts_skipped_total", "Candidate addresses skipped because someone on the wire used them.", "pool"),
		quarantines: c.counterVec("quarantines_total", "Addresses put in quarantine after a conflict.", "pool"),
		retries:     c.counterVec("update_retries_total", "Store updates retried after losing a race (optimistic concurrency).", "pool"),
		gc:          c.counterVec("gc_reclaimed_total", "Addresses released by garbage collection because their network namespace was gone.", "pool"),
		size:        c.gaugeVec("pool_size", "Addresses a pool can hand out.", "pool"),
		allocated:   c.gaugeVec("pool_allocated", "Addresses of a pool given to workloads.", "pool"),
		reserved:    c.gaugeVec("pool_reserved", "Addresses of a pool reserved by allocations still being checked.", "pool"),
		quarantined: c.gaugeVec("pool_quarantined", "Addresses of a pool in quarantine after a conflict.", "pool"),
		workloads:   c.gaugeVec("workloads", "Workload records (endpoint and history) at the last GC pass, by state: live (an allocation names it) or retained (kept for ipam.workload_retention after its last release).", "state"),
		pruned:      c.counter("workloads_pruned_total", "Workloads whose endpoint and history GC deleted, their last release older than ipam.workload_retention."),
		prunedRecs:  c.counter("workload_records_pruned_total", "Store records (endpoints and history entries) deleted with pruned workloads."),
	}
	if err := c.err; err != nil {
		return nil, fmt.Errorf("register the IPAM metrics: %w", err)
	}
	return m, nil
}

// Allocation implements ipam.Metrics.
func (m *IPAMMetrics) Allocation(pool, result string, seconds float64) {
	m.allocations.WithLabelValues(pool, result).Inc()
	m.duration.WithLabelValues(pool).Observe(seconds)
}

// Release implements ipam.Metrics.
func (m *IPAMMetrics) Release(pool, result string) { m.releases.WithLabelValues(pool, result).Inc() }

// ConflictSkipped implements ipam.Metrics.
func (m *IPAMMetrics) ConflictSkipped(pool string) { m.conflicts.WithLabelValues(pool).Inc() }

// Quarantined implements ipam.Metrics.
func (m *IPAMMetrics) Quarantined(pool string) { m.quarantines.WithLabelValues(pool).Inc() }

// RetrySpent implements ipam.Metrics.
func (m *IPAMMetrics) RetrySpent(pool string) { m.retries.WithLabelValues(pool).Inc() }

// GCReclaimed implements ipam.Metrics.
func (m *IPAMMetrics) GCReclaimed(pool string) { m.gc.WithLabelValues(pool).Inc() }

// Workloads implements ipam.Metrics.
func (m *IPAMMetrics) Workloads(live, retained int) {
	m.workloads.WithLabelValues("live").Set(float64(live))
	m.workloads.WithLabelValues("retained").Set(float64(retained))
}

// WorkloadsPruned implements ipam.Metrics.
func (m *IPAMMetrics) WorkloadsPruned(workloads, records int) {
	m.pruned.Add(float64(workloads))
	m.prunedRecs.Add(float64(records))
}

// PoolUsage implements ipam.Metrics. It also creates the pool's counters
// at zero, so that a rate or increase over them works from the pool's first
// scrape rather than from its first event.
func (m *IPAMMetrics) PoolUsage(pool string, size, allocated, reserved, quarantined int) {
	for _, c := range []*prometheus.CounterVec{m.conflicts, m.quarantines, m.retries, m.gc} {
		c.WithLabelValues(pool)
	}
	m.allocations.WithLabelValues(pool, "ok")
	m.releases.WithLabelValues(pool, "ok")
	m.size.WithLabelValues(pool).Set(float64(size))
	m.allocated.WithLabelValues(pool).Set(float64(allocated))
	m.reserved.WithLabelValues(pool).Set(float64(reserved))
	m.quarantined.WithLabelValues(pool).Set(float64(quarantined))
}

// ForgetPool drops every series of a pool removed by a reload.
func (m *IPAMMetrics) ForgetPool(pool string) {
	for _, g := range []*prometheus.GaugeVec{m.size, m.allocated, m.reserved, m.quarantined} {
		g.DeleteLabelValues(pool)
	}
	match := prometheus.Labels{"pool": pool}
	for _, c := range []*prometheus.CounterVec{m.allocations, m.releases, m.conflicts, m.quarantines, m.retries, m.gc} {
		c.DeletePartialMatch(match)
	}
	m.duration.DeletePartialMatch(match)
}
