package ipam

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/ipamtrust"
)

// The real agent with workload_retention = "2s" and a GC every second:
// after 300 Podman-style containers come and go, GC prunes every one of
// their workloads (endpoint and history entry) and keeps the live one;
// status, its --json and the metrics say so, and the store file holds the
// live workload's records alone.
func TestWorkloadRetentionPrunesChurn(t *testing.T) {
	a := startIPAM(t, agentOpts{
		pools: "pool \"churn\" {\n  subnet = \"10.60.0.0/24\"\n  conflict_detection = false\n}\n",
		ipam:  "  workload_retention = \"2s\"\n  gc_interval = \"1s\"\n",
		extra: fmt.Sprintf("metrics {\n  enabled = true\n  port = %d\n}\n", config.DefaultMetricsPort),
	})
	c := ctx(t)
	if _, err := a.Client.Allocate(c, api.AllocateRequest{ContainerID: "live", Interface: "eth0", Workload: "live", Pools: []string{"churn"}}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	if _, err := ipamtrust.PodmanChurn(c, a.Client, "churn", n); err != nil {
		t.Fatal(err)
	}
	ws := ipamtrust.WaitWorkloads(t, a.Agent, 60*time.Second, func(ws api.WorkloadStatus) bool { return ws.Pruned == n })
	if ws.Live != 1 || ws.Retained != 0 || ws.RecordsPruned != 2*n || ws.Retention != 2*time.Second {
		t.Errorf("workloads %+v, want 1 live, 0 retained, %d records pruned, retention 2s", ws, 2*n)
	}
	out, _, _ := a.CLI("status", "--socket", a.Socket)
	if want := fmt.Sprintf("workloads: 1 live, 0 retained; retention 2s; pruned %d (%d records) since start", n, 2*n); !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	code, body, err := a.Get(config.DefaultMetricsPort, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for _, want := range []string{
		fmt.Sprintf("spiderpool_ipam_workloads_pruned_total %d", n),
		fmt.Sprintf("spiderpool_ipam_workload_records_pruned_total %d", 2*n),
		`spiderpool_ipam_workloads{state="live"} 1`,
		`spiderpool_ipam_workloads{state="retained"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	a.Stop()
	consistent(t, a.DB)
	s, err := boltstore.Open(a.DB, boltstore.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for prefix, want := range map[string]int{"workloads/": 1, "history/": 1, "": 4} {
		es, err := s.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != want {
			var keys []string
			for _, e := range es {
				keys = append(keys, e.Key)
			}
			t.Errorf("%d keys under %q, want %d: %v", len(es), prefix, want, keys)
		}
	}
}
