package telemetry

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestIPAMMetricsLintCleanAndNamed(t *testing.T) {
	tel := newT(t)
	m, err := NewIPAMMetrics(tel)
	if err != nil {
		t.Fatal(err)
	}
	m.Allocation("lan4", "ok", 0.12)
	m.Allocation("lan4", "pool_full", 0.001)
	m.Release("lan4", "ok")
	m.ConflictSkipped("lan4")
	m.Quarantined("lan4")
	m.RetrySpent("lan4")
	m.GCReclaimed("lan4")
	m.Workloads(2, 7)
	m.WorkloadsPruned(3, 5)
	m.PoolUsage("lan4", 190, 3, 1, 1)
	m.PoolUsage("gone", 10, 0, 0, 0)
	m.ForgetPool("gone")
	body := scrape(t, tel.Handler())
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{
		`spiderpool_ipam_allocations_total{pool="lan4",result="ok"} 1`,
		`spiderpool_ipam_allocations_total{pool="lan4",result="pool_full"} 1`,
		`spiderpool_ipam_allocation_duration_seconds_bucket{pool="lan4",le="0.15"} 2`,
		`spiderpool_ipam_releases_total{pool="lan4",result="ok"} 1`,
		`spiderpool_ipam_conflicts_skipped_total{pool="lan4"} 1`,
		`spiderpool_ipam_quarantines_total{pool="lan4"} 1`,
		`spiderpool_ipam_update_retries_total{pool="lan4"} 1`,
		`spiderpool_ipam_gc_reclaimed_total{pool="lan4"} 1`,
		`spiderpool_ipam_pool_size{pool="lan4"} 190`,
		`spiderpool_ipam_pool_allocated{pool="lan4"} 3`,
		`spiderpool_ipam_pool_quarantined{pool="lan4"} 1`,
		`spiderpool_ipam_workloads{state="live"} 2`,
		`spiderpool_ipam_workloads{state="retained"} 7`,
		`spiderpool_ipam_workloads_pruned_total 3`,
		`spiderpool_ipam_workload_records_pruned_total 5`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(string(body), `pool="gone"`) {
		t.Error("a forgotten pool's gauges are still served")
	}
	if _, err := NewIPAMMetrics(tel); err == nil {
		t.Error("a second registration on the same registry succeeded")
	}
}
