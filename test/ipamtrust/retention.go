package ipamtrust

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// PodmanChurn allocates and releases n containers through c, each with a
// workload name of its own as Podman's --rm containers have, ten at a
// time, from pool; it returns the workload names.
func PodmanChurn(ctx context.Context, c *api.Client, pool string, n int) ([]string, error) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 22))
	names, cids := make([]string, n), make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("podman_%d_%08x", i, rng.Uint32())
		cids[i] = fmt.Sprintf("%016x%016x", rng.Uint64(), uint64(i))
	}
	sem := make(chan struct{}, 10)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cid := cids[i]
			if _, err := c.Allocate(ctx, api.AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: name, Pools: []string{pool}}); err != nil {
				errs <- fmt.Errorf("allocate %s: %w", name, err)
				return
			}
			if _, err := c.Release(ctx, api.ReleaseRequest{ContainerID: cid, Interface: "eth0"}); err != nil {
				errs <- fmt.Errorf("release %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return names, <-errs
}

// churnBound is the most records the store may keep after the churn: the
// live workload's attachment, address record, workload record and history
// entry, with room for the store's own bookkeeping.
const churnBound = 8

// Churn: n Podman-style containers (a workload name each) allocate and
// release beside one live workload, with workload_retention = "2s". The
// released workloads must be pruned: the store file, counted after the
// agent stopped, holds the live workload's records and not n times more.
func Churn(t testing.TB, e Env, n int) Result {
	t.Helper()
	r := Result{Attack: "Podman-style churn of short-lived workloads",
		Tried: fmt.Sprintf(`%d containers, each its own workload name, allocated and released 10 at a time beside 1 live one; workload_retention = "2s", gc_interval = "1s"`, n)}
	a := e.start(t, opts{
		pools: "pool \"churn\" {\n  subnet = \"10.60.0.0/22\"\n  conflict_detection = false\n}\n",
		ipam:  "  workload_retention = \"2s\"\n  gc_interval = \"1s\"\n",
	})
	c := ctx(t, 10*time.Minute)
	if _, err := a.API.Allocate(c, api.AllocateRequest{ContainerID: "live", Interface: "eth0", Workload: "live", Pools: []string{"churn"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := PodmanChurn(c, a.API, "churn", n); err != nil {
		t.Fatal(err)
	}
	churned := time.Since(start)
	ws := WaitWorkloads(t, a.Agent, 2*time.Minute, func(ws api.WorkloadStatus) bool { return ws.Pruned >= n })
	pruned := time.Since(start)
	a.Stop()
	keys, per, err := storeKeys(a.DB)
	if err != nil {
		t.Fatal(err)
	}
	var tops []string
	for k, v := range per {
		tops = append(tops, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(tops)
	r.Did = fmt.Sprintf("pruned %d workloads (%d records); %d live, %d retained", ws.Pruned, ws.RecordsPruned, ws.Live, ws.Retained)
	r.Numbers = fmt.Sprintf("churn took %s, all pruned %s after its start; records in the file after stop: %d (%s)",
		churned.Round(100*time.Millisecond), pruned.Round(100*time.Millisecond), keys, strings.Join(tops, ", "))
	if keys > churnBound {
		r.Failf("%d records in the store after %d workloads came and went (want at most %d)", keys, n, churnBound)
	}
	if ws.Live != 1 {
		r.Failf("%d live workloads, want 1", ws.Live)
	}
	return r
}

// HistoryCapRefused: max_history_records far beyond its cap must stop the
// agent at start, naming the setting, instead of letting a workload's
// history grow without bound.
func HistoryCapRefused(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "an unbounded history setting", Tried: "`ipam { max_history_records = 100000000 }`; the agent started on it"}
	a := e.start(t, opts{pools: BulkPool, ipam: "  max_history_records = 100000000\n", noWait: true})
	code, ok := a.ExitCode(30 * time.Second)
	log := a.Log()
	first := ""
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "max_history_records") {
			first = line
			break
		}
	}
	switch {
	case !ok:
		r.Did = "started"
		r.Failf("the agent runs with max_history_records = 100000000")
	case code == 0 || first == "":
		r.Did = fmt.Sprintf("exited %d", code)
		r.Failf("exit %d, the log naming max_history_records: %q", code, first)
	default:
		r.Did = fmt.Sprintf("refused to start: %.200q", first)
	}
	r.Numbers = fmt.Sprintf("exit %d", code)
	return r
}

// WaitWorkloads polls the workloads part of the agent's `status --json`
// until done holds for it (the GC has pruned the churned workloads, say),
// failing t after timeout, and returns it.
func WaitWorkloads(t testing.TB, a *agenttest.Agent, timeout time.Duration, done func(api.WorkloadStatus) bool) api.WorkloadStatus {
	t.Helper()
	var ws api.WorkloadStatus
	poll.Until(t, timeout, "GC to prune the churned workloads", func() (bool, error) {
		st, err := a.Status()
		if err != nil {
			return false, err
		}
		if st.IPAM == nil || st.IPAM.Workloads == nil {
			return false, fmt.Errorf("status --json has no IPAM workloads: %+v", st)
		}
		ws = *st.IPAM.Workloads
		return done(ws), nil
	})
	return ws
}
