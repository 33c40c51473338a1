// Package ipamtrust holds the attacks on IPAM's one promise (one holder
// per address, whatever the config, the caller, the path or the disk
// says) as scenarios against the real agent binary: each sets up what it
// needs (pools, a store file, namespaces), attacks, and returns what it
// tried, what the agent did, the numbers, and every way the promise broke.
// The Go tests of this package and `make faults`' ipam-trust section call
// the same functions, so the table and the tests cannot drift apart.
//
// A scenario fails t (Fatal) only when it cannot set up or run at all; a
// promise the agent broke is a Problem in the Result, so that a fault row
// can say "no" with the numbers instead of ending the section.
package ipamtrust

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// Env is what the scenarios run: the agent and its plugins, and the
// directory that holds the `spiderpool` CNI plugin.
type Env struct {
	Bins   agenttest.Binaries
	CNIDir string
}

// Result is one attack's outcome: a row of the fault table, and what the
// Go test asserts (Problems empty).
type Result struct {
	Attack   string // what the attack is
	Tried    string // what was done, with its numbers
	Did      string // what the agent did
	Numbers  string // what was measured
	Problems []string
}

// Held says whether the promise held.
func (r Result) Held() bool { return len(r.Problems) == 0 }

// Failf records a way the promise broke.
func (r *Result) Failf(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r Result) String() string {
	s := fmt.Sprintf("%s: tried %s; the agent %s; %s", r.Attack, r.Tried, r.Did, r.Numbers)
	if len(r.Problems) > 0 {
		s += "; NOT HELD: " + strings.Join(r.Problems, " / ")
	}
	return s
}

// Check fails t with each of r's problems (for the Go tests).
func Check(t testing.TB, r Result) {
	t.Helper()
	t.Log(r.String())
	for _, p := range r.Problems {
		t.Error(p)
	}
}

// agent is one agent with IPAM on.
type agent struct {
	*agenttest.Agent
	PoolDir, DB string
	API         *api.Client
	env         Env
}

type opts struct {
	pools  string // the pool file's HCL
	ipam   string // more attributes of the ipam block
	extra  string // more agent HCL
	db     string // reuse a store file
	nsPath string // run in this namespace (a LAN host) instead of a fresh one
	envs   []string
	noWait bool
}

func (e Env) start(t testing.TB, o opts) *agent {
	t.Helper()
	poolDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(poolDir, "pools.hcl"), []byte(o.pools), 0o644); err != nil {
		t.Fatal(err)
	}
	db := o.db
	if db == "" {
		db = filepath.Join(t.TempDir(), "ipam.db")
	}
	cfg := fmt.Sprintf("ipam {\n  db_path = %q\n%s}\n", db, o.ipam) + o.extra
	a := agenttest.Start(t, e.Bins, agenttest.Options{Config: cfg, Env: o.envs, NetnsPath: o.nsPath, Args: []string{"--ipam-config-dir", poolDir}})
	if !o.noWait {
		a.WaitReady(agenttest.ReadyTimeout)
	}
	return &agent{Agent: a, PoolDir: poolDir, DB: db, API: &api.Client{SocketPath: a.Socket}, env: e}
}

// cli runs `spiderpool-agent ipam ARGS --socket SOCKET` and returns its
// output (stdout and stderr) and exit code.
func (a *agent) cli(args ...string) (string, int) {
	out, errOut, code := a.CLI(append(append([]string{"ipam"}, args...), "--socket", a.Socket)...)
	return out + errOut, code
}

// ctx bounds one scenario's requests.
func ctx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// storeKeys counts the records in a stopped agent's store file, all and
// per top-level prefix ("attachments", "history", ...).
func storeKeys(db string) (int, map[string]int, error) {
	s, err := boltstore.Open(db, boltstore.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		return 0, nil, err
	}
	defer s.Close()
	es, err := s.List(context.Background(), "")
	if err != nil {
		return 0, nil, err
	}
	per := map[string]int{}
	for _, e := range es {
		top, _, _ := strings.Cut(e.Key, "/")
		per[top]++
	}
	return len(es), per, nil
}

// hasPanic says whether a log shows a Go panic.
func hasPanic(log string) bool {
	return strings.Contains(log, "panic:") || strings.Contains(log, "goroutine ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// The attacks' sizes, as the issue measured them; `make faults` runs them
// at these sizes, and so do the Go tests.
const (
	FIFOAllocations   = 300    // allocations naming a FIFO, at once
	IdleConns         = 3000   // idle connections on the control socket
	ChurnContainers   = 10_000 // Podman-style containers through one retention
	SharedAllocations = 16     // allocations at once on one shared interface
)
