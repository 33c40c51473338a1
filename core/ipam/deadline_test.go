package ipam_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
)

// fifoLinks raises nothing: it opens a FIFO for reading, blocking, and
// ignores its context - a syscall stuck in the kernel, as the old namespace
// opener was on a FIFO named as the workload's namespace.
type fifoLinks struct{ path string }

func (l fifoLinks) EnsureUp(context.Context, string, string) (func(AfterProbe), error) {
	fd, err := syscall.Open(l.path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return func(AfterProbe) { syscall.Close(fd) }, nil
}

// allocateWithin runs Allocate and fails the test when it has not answered
// within limit (the old code never answered).
func allocateWithin(t *testing.T, m *IPAM, r AllocateRequest, limit time.Duration) (Attachment, error) {
	t.Helper()
	type answer struct {
		att Attachment
		err error
	}
	done := make(chan answer, 1)
	go func() {
		att, err := m.Allocate(context.Background(), r)
		done <- answer{att, err}
	}()
	select {
	case a := <-done:
		return a.att, a.err
	case <-time.After(limit):
		t.Fatalf("Allocate(%s) did not answer within %v", r.ContainerID, limit)
		return Attachment{}, nil
	}
}

// TestAllocationDeadlineReleasesAStuckCall: the probe's preparation is
// stuck in open(2) on a FIFO for ever. At the allocation's deadline the
// allocation answers "try again" naming ipam.allocation_timeout, its
// reservation is gone, and the stuck call keeps no claim: the same key is
// allocated afresh (not "in progress"), and the pool's addresses are free.
func TestAllocationDeadlineReleasesAStuckCall(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	storetest.FIFO(t, fifo)
	const timeout = 300 * time.Millisecond
	f := newFixtureOpts(t, Options{Links: fifoLinks{fifo}, AllocationTimeout: timeout}, v4)
	r := req("stuck", "lan4")
	r.Netns = "/var/run/netns/stuck"
	for round := range 2 {
		start := time.Now()
		_, err := allocateWithin(t, f.m, r, 10*time.Second)
		took := time.Since(start)
		t.Logf("round %d: answered after %v: %v", round, took, err)
		if code(err) != api.CodeTryAgain || !strings.Contains(err.Error(), "ipam.allocation_timeout (300ms)") || !strings.Contains(err.Error(), "nothing is held") {
			t.Fatalf("round %d: %v (code %q), want try_again naming ipam.allocation_timeout", round, err, code(err))
		}
		if took < timeout {
			t.Fatalf("answered after %v, before the deadline", took)
		}
		assertEmpty(t, f)
	}
	us, err := f.m.Usage(context.Background())
	if err != nil || us[0].Reserved != 0 || us[0].Allocated != 0 {
		t.Fatalf("usage %+v %v", us, err)
	}
}

// TestAllocateVetsTheNamespacePath: before anything is reserved, a
// namespace path must open, without blocking, as a network namespace. Each
// refusal is a field error on "netns" saying what the path is.
func TestAllocateVetsTheNamespacePath(t *testing.T) {
	f := newFixtureOpts(t, Options{CheckNetns: CheckNetns}, v4, PoolSpec{Name: "plain", Subnet: "10.30.0.0/24"})
	for _, tc := range storetest.NotNetnsPaths(t) {
		path, says := tc.Path, tc.Says
		for _, pool := range []string{"lan4", "plain"} {
			r := req("c", pool)
			r.Netns = path
			_, err := allocateWithin(t, f.m, r, 5*time.Second)
			var fe *api.FieldError
			if !errors.As(err, &fe) || fe.Field != "netns" || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), says) {
				t.Errorf("netns %s, pool %s: %v; want a netns field error saying %q", path, pool, err, says)
			}
		}
	}
	assertEmpty(t, f)
	r := req("ok", "plain")
	r.Netns = "/proc/self/ns/net"
	if _, err := f.m.Allocate(context.Background(), r); err != nil {
		t.Fatalf("a real network namespace: %v", err)
	}
}

// TestGCDropsOverdueReservation: a reservation older than the allocation
// deadline and the rollback after it is dropped by GC even while its
// allocation still counts as running (stuck in a store call), and not
// before.
func TestGCDropsOverdueReservation(t *testing.T) {
	f := newFixtureOpts(t, Options{AllocationTimeout: 2 * time.Second, GCGrace: time.Hour}, v4)
	ctx := context.Background()
	r := req("slow", "lan4")
	if err := ReserveForTest(ctx, f.m, r); err != nil {
		t.Fatal(err)
	}
	defer InFlightForTest(f.m, AttachmentKey{ContainerID: "slow", Interface: "eth0"})()
	f.advance(3 * time.Second)
	if res, err := f.m.GC(ctx); err != nil || len(res.Reclaimed) != 0 {
		t.Fatalf("GC within the deadline and rollback: %+v %v", res, err)
	}
	f.advance(5 * time.Second)
	res, err := f.m.GC(ctx)
	if err != nil || len(res.Reclaimed) != 1 || res.Reclaimed[0].ContainerID != "slow" {
		t.Fatalf("GC past the deadline: %+v %v", res, err)
	}
	assertEmpty(t, f)
}
