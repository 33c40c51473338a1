package ipamtrust

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	coreipam "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/storefault"
)

// BulkPool has nothing to check on the wire: an allocation is one commit,
// from the agent's own namespace.
const BulkPool = `
pool "bulk" {
  subnet             = "10.50.0.0/20"
  conflict_detection = false
}
`

// AllocateBulk makes n allocations (PREFIX-<i>) from BulkPool through
// client, 16 at a time, and returns the first error. With workloads each
// allocation names a workload (its container id), so that the store holds
// workload records as well.
func AllocateBulk(c context.Context, client *api.Client, prefix string, n int, workloads bool) error {
	sem := make(chan struct{}, 16)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req := api.AllocateRequest{ContainerID: fmt.Sprintf("%s-%d", prefix, i), Interface: "eth0", Pools: []string{"bulk"}}
			if workloads {
				req.Workload = req.ContainerID
			}
			if _, err := client.Allocate(c, req); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("allocate %s: %w", req.ContainerID, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// storeWith runs an agent on a new store, makes n allocations and stops it.
func (e Env) storeWith(t testing.TB, n int) string {
	t.Helper()
	a := e.start(t, opts{pools: BulkPool})
	if err := AllocateBulk(ctx(t, 2*time.Minute), a.API, "bulk", n, false); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	return a.DB
}

// refusedStart starts an agent on a damaged store and records in r how it
// went: it must exit non-zero at once, naming the file, what is wrong with
// it (what) and what to do, with no Go panic.
func (e Env) refusedStart(t testing.TB, r *Result, db, what string) {
	t.Helper()
	start := time.Now()
	a := e.start(t, opts{pools: BulkPool, db: db, noWait: true})
	code, ok := a.ExitCode(agenttest.ReadyTimeout)
	took := time.Since(start)
	log := a.Log()
	first := ""
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, db) {
			first = line
			break
		}
	}
	switch {
	case !ok:
		r.Did = "started on it"
		r.Failf("the agent runs on a damaged store")
	case code == 0:
		r.Did = "exited 0"
		r.Failf("exit 0 on a damaged store")
	default:
		r.Did = fmt.Sprintf("refused to start: %.200q", first)
	}
	if first == "" {
		r.Failf("the agent's log does not name %s", db)
	}
	// What to do, too: restore a backup, or move the file aside.
	if m := missing(log, "is damaged", what, "ipam restore", "mv "+db); len(m) > 0 {
		r.Failf("the refusal lacks %q", m)
	}
	panicked := hasPanic(log)
	if panicked {
		r.Failf("the agent panicked")
	}
	r.Numbers = fmt.Sprintf("exit %d after %s; panic: %v", code, ms(took), panicked)
}

// TruncatedStore: a store emptied to 0 bytes under a stopped agent. The
// agent must refuse to start on it (an empty store would hand out every
// address again), naming the file, and leave it as it is.
func TruncatedStore(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "a store truncated to 0 bytes", Tried: "85 allocations, the agent stopped, the store truncated to 0 bytes, the agent started"}
	db := e.storeWith(t, 85)
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	e.refusedStart(t, &r, db, "empty (0 bytes)")
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		r.Failf("the refused store was re-initialised (%v)", err)
	}
	// The operator's way out: move it aside; the next start is a first
	// start.
	if err := os.Rename(db, db+".damaged"); err != nil {
		t.Fatal(err)
	}
	a := e.start(t, opts{pools: BulkPool, db: db})
	ps, err := a.API.Pools(ctx(t, 30*time.Second))
	if err != nil || len(ps) != 1 || ps[0].Allocated != 0 {
		r.Failf("a fresh store after moving the damaged one aside: %+v %v", ps, err)
	}
	return r
}

// CorruptPage: a page of random bytes in the records' bucket. The agent
// must refuse to start, naming the file, without a panic.
func CorruptPage(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "a corrupted page in the store"}
	db := e.storeWith(t, 300)
	pgid, err := storefault.CorruptBucketPage(db, storefault.Bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.Tried = fmt.Sprintf("300 allocations, the agent stopped, the root page (%d) of the records' bucket overwritten with random bytes, the agent started", pgid)
	e.refusedStart(t, &r, db, "")
	// ipam check --file says the same, with exit 1.
	out, errOut, code := agenttest.RunCLI(e.Bins, "", "ipam", "check", "--file", db)
	if code != 1 || !strings.Contains(out+errOut, "is damaged") || hasPanic(out+errOut) {
		r.Failf("ipam check --file on the damaged store: exit %d: %s%s", code, out, errOut)
	}
	r.Numbers += fmt.Sprintf("; ipam check --file exit %d", code)
	return r
}

// BackupUnderAllocations: `ipam backup` of a live agent while 16 clients
// allocate; `ipam check --file` on every backup; the agent stopped and the
// last backup restored with `ipam restore`: the agent starts on it with
// the backup's allocations, and the file is consistent.
func BackupUnderAllocations(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "backup of a live store under allocations, then restore",
		Tried: "400 allocations by 16 clients while `ipam backup` ran 4 times; a backup over an existing file; `ipam check` live and `ipam check --file` on each backup and a final one; `ipam restore` under the running agent; the agent stopped, the store truncated, `ipam restore` of the final backup, the agent started"}
	a := e.start(t, opts{pools: BulkPool})
	c := ctx(t, 2*time.Minute)
	dir := t.TempDir()
	done := make(chan error, 1)
	go func() { done <- AllocateBulk(c, a.API, "busy", 400, false) }()
	var backups []string
	for i := range 4 {
		b := filepath.Join(dir, fmt.Sprintf("ipam-%d.db", i))
		if out, code := a.cli("backup", b); code != 0 {
			r.Failf("backup %d under allocations: exit %d: %s", i, code, out)
			continue
		}
		backups = append(backups, b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(backups) > 0 {
		if out, code := a.cli("backup", backups[0]); code != 1 || !strings.Contains(out, "--force") {
			r.Failf("backup over an existing file: exit %d: %s", code, out)
		}
	}
	final := filepath.Join(dir, "final.db")
	if out, code := a.cli("backup", final); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, out)
	}
	backups = append(backups, final)
	if out, code := a.cli("check"); code != 0 || !strings.Contains(out, "OK") {
		r.Failf("ipam check of the live store: exit %d: %s", code, out)
	}
	checked := 0
	for _, b := range backups {
		if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o600 {
			r.Failf("backup %s: mode %v, want 0600 (%v)", filepath.Base(b), fi.Mode().Perm(), err)
		}
		out, errOut, code := agenttest.RunCLI(e.Bins, "", "ipam", "check", "--file", b)
		if code != 0 || !strings.Contains(out, "OK") {
			r.Failf("ipam check --file %s: exit %d: %s%s", filepath.Base(b), code, out, errOut)
			continue
		}
		checked++
	}
	want, err := a.API.List(c, "", "")
	if err != nil {
		t.Fatal(err)
	}
	// Restore is offline: refused while the agent holds the store.
	if out, errOut, code := agenttest.RunCLI(e.Bins, "", "ipam", "restore", final, "--db-path", a.DB); code != 1 || !strings.Contains(errOut, "stop the agent") || !strings.Contains(errOut, "pid ") {
		r.Failf("restore under a running agent: exit %d: %s%s", code, out, errOut)
	}
	a.Stop()
	// Another state of the store, which the restore replaces.
	if err := os.Truncate(a.DB, 0); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := agenttest.RunCLI(e.Bins, "", "ipam", "restore", final, "--db-path", a.DB); code != 0 {
		t.Fatalf("restore: exit %d: %s%s", code, out, errOut)
	}
	b := e.start(t, opts{pools: BulkPool, db: a.DB})
	got, err := b.API.List(c, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b.Stop()
	consistent := "consistent"
	s, err := boltstore.Open(a.DB, boltstore.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if cerr := coreipam.Consistent(context.Background(), s); cerr != nil {
		consistent = cerr.Error()
		r.Failf("the restored store is inconsistent: %v", cerr)
	}
	s.Close()
	if len(got) != len(want) || len(got) != 400 {
		r.Failf("restored store: %d allocations, the agent had %d (want 400)", len(got), len(want))
	}
	r.Did = fmt.Sprintf("backed up while allocating; every backup checked OK; restored: %d allocations, %s", len(got), consistent)
	r.Numbers = fmt.Sprintf("%d of %d backups checked OK; allocations before %d, after the restore %d", checked, len(backups), len(want), len(got))
	return r
}
