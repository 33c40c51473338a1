package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

type tableChecker struct {
	mu       sync.Mutex
	conflict map[netip.Addr]bool
	gwDown   bool
	calls    int
}

func (c *tableChecker) Check(_ context.Context, req api.Check) ([]CheckResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	out := make([]CheckResult, len(req.Addresses))
	for i, a := range req.Addresses {
		switch {
		case a.Gateway.IsValid() && c.gwDown:
			out[i] = CheckResult{Outcome: OutcomeUnreachable, Reason: fmt.Sprintf("gateway %s did not answer within 100ms", a.Gateway)}
		case a.Conflict && c.conflict[a.Address.Addr()]:
			out[i] = CheckResult{Outcome: OutcomeConflict, Reason: fmt.Sprintf("%s is in use by 02:00:00:00:00:10", a.Address.Addr()), MAC: "02:00:00:00:00:10"}
		default:
			out[i] = CheckResult{Outcome: OutcomeFree}
		}
	}
	return out, nil
}

type noLinks struct{}

func (noLinks) EnsureUp(context.Context, string, string) (func(AfterProbe), error) {
	return func(AfterProbe) {}, nil
}

type fixture struct {
	m     *IPAM
	store *boltstore.Store
	racy  *racyStore
	chk   *tableChecker
	now   atomic.Pointer[time.Time]
}

// openBolt opens a real bbolt store in a fresh directory of tb's, closed
// when tb ends.
func openBolt(tb testing.TB) *boltstore.Store {
	tb.Helper()
	s, err := boltstore.Open(filepath.Join(tb.TempDir(), "ipam.db"), boltstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// mustPool is the pool of spec (max_allocated_ips 5000), which must be valid.
func mustPool(tb testing.TB, spec PoolSpec) *Pool {
	tb.Helper()
	p, err := NewPool(spec, 5000)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// mustNew is the IPAM of opts, which must be valid.
func mustNew(tb testing.TB, opts Options) *IPAM {
	tb.Helper()
	m, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func newFixture(t *testing.T, specs ...PoolSpec) *fixture {
	t.Helper()
	return newFixtureOpts(t, Options{}, specs...)
}

func newFixtureOpts(t *testing.T, opts Options, specs ...PoolSpec) *fixture {
	t.Helper()
	s := openBolt(t)
	f := &fixture{store: s, chk: &tableChecker{conflict: map[netip.Addr]bool{}}}
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	f.now.Store(&now)
	for _, sp := range specs {
		p := mustPool(t, sp)
		opts.Pools = append(opts.Pools, p)
	}
	f.racy = &racyStore{Store: s}
	opts.Store = f.racy
	if opts.Checker == nil {
		opts.Checker = f.chk
	}
	if opts.Links == nil {
		opts.Links = noLinks{}
	}
	if opts.CheckNetns == nil {
		// The tables name namespace paths that do not exist; the real
		// vetting has tests of its own (deadline_test.go).
		opts.CheckNetns = func(string) error { return nil }
	}
	opts.Node = "node-a"
	opts.Now = func() time.Time { return *f.now.Load() }
	f.m = mustNew(t, opts)
	return f
}

// allocate is f.m.Allocate of r, which must succeed.
func (f *fixture) allocate(t *testing.T, r AllocateRequest) Attachment {
	t.Helper()
	return mustAllocate(t, f.m, r)
}

// mustAllocate is m.Allocate of r, which must succeed; it fails tb, so
// call it on the test's own goroutine.
func mustAllocate(tb testing.TB, m *IPAM, r AllocateRequest) Attachment {
	tb.Helper()
	att, err := m.Allocate(context.Background(), r)
	if err != nil {
		tb.Fatalf("Allocate %s/%s: %v", r.ContainerID, r.Interface, err)
	}
	return att
}

// cycle allocates r and releases what it got: a workload's whole life.
func cycle(ctx context.Context, m *IPAM, r AllocateRequest) error {
	att, err := m.Allocate(ctx, r)
	if err == nil {
		_, _, err = m.Release(ctx, att.AttachmentKey)
	}
	return err
}

// mustCycle is a cycle of r that must succeed.
func mustCycle(tb testing.TB, m *IPAM, r AllocateRequest) {
	tb.Helper()
	if err := cycle(context.Background(), m, r); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) advance(d time.Duration) {
	n := f.now.Load().Add(d)
	f.now.Store(&n)
}

var (
	v4 = PoolSpec{Name: "lan4", Subnet: "10.20.0.0/24", Ranges: []string{"10.20.0.10-10.20.0.49"}, Gateway: "10.20.0.1", PoolOptions: PoolOptions{ConflictDetection: true, GatewayDetection: true}}
	v6 = PoolSpec{Name: "lan6", Subnet: "fd00:20::/64", Ranges: []string{"fd00:20::10-fd00:20::4f"}, Gateway: "fd00:20::1", PoolOptions: PoolOptions{ConflictDetection: true}}
)

func req(cid string, pools ...string) AllocateRequest {
	return AllocateRequest{ContainerID: cid, Interface: "eth0", Workload: "default/" + cid, Pools: pools}
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func assertEmpty(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	for _, prefix := range []string{PrefixAttachments, PrefixDomains, PrefixPools} {
		es, err := f.store.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if strings.Contains(string(e.Value), `"quarantined"`) {
				continue
			}
			t.Errorf("left behind: %s = %s", e.Key, e.Value)
		}
	}
}

// assertConsistent: every address record's owner lists it, every
// attachment's addresses are recorded as owned by it, no reservation is
// left, no address appears twice.
func assertConsistent(t *testing.T, f *fixture) {
	t.Helper()
	if err := Consistent(context.Background(), f.store); err != nil {
		t.Fatal(err)
	}
}
