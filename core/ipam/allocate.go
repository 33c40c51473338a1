// The allocator's entry point: Allocate validates a request, takes the
// key's flight and runs one allocation: reserve, vet, commit (or one
// commit when nothing is vetted), rolling back on any failure.

package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// AllocateRequest is api.AllocateRequest.
type AllocateRequest = api.AllocateRequest

// Allocate gives the workload interface req names one address from each
// of req.Pools. A repeated call for the same key returns what it holds.
// Each address is reserved in the store, then vetted by the detectors its
// pool enables, on the workload's interface in the workload's namespace.
// What a detector's block does is the kind it carries (the Checker's
// Outcome), whichever detector it is: an address in use is quarantined
// (or, past the pool's quarantine share, only skipped) and one refused by
// policy skipped without quarantine, and the next candidate tried, up to
// MaxTries per pool; an unreachable network (a dead gateway) or a refusal
// fails at once. Every failure releases what it
// reserved. When no pool of req enables a detector, nothing is reserved:
// the allocation is one commit (allocateAtOnce).
//
// The namespace path is vetted before anything is reserved (CheckNetns).
// Every allocation has a deadline (AllocationTimeout): past it, the
// allocation stops waiting for whatever it was waiting on - a call stuck
// in the kernel or a detector included (bounded) - releases what it
// reserved and fails with CodeTryAgain; the stuck call is left behind and
// holds nothing of IPAM's.
func (m *IPAM) Allocate(ctx context.Context, req AllocateRequest) (att Attachment, err error) {
	start := m.now()
	if err := req.Validate(); err != nil {
		return Attachment{}, err
	}
	if err := m.vetNS(req.Netns); err != nil {
		return Attachment{}, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, m.timeout, errAllocationTimeout)
	defer cancel()
	defer func() {
		if err != nil && errors.Is(context.Cause(ctx), errAllocationTimeout) && (!isCoded(err) || errors.Is(err, errAllocationTimeout)) {
			var skipped []SkippedIP
			var e *Error
			if errors.As(err, &e) {
				skipped = e.Skipped
			}
			err = &Error{Code: api.CodeTryAgain, Err: err, Skipped: skipped,
				Msg: fmt.Sprintf("the allocation for container %s interface %s did not finish within ipam.allocation_timeout (%s): %v; nothing is held, try again", req.ContainerID, req.Interface, m.timeout, err)}
		}
	}()
	m.reload.RLock()
	defer m.reload.RUnlock()
	pools := make([]*Pool, len(req.Pools))
	families := map[string]string{}
	var unknown []*Error
	for _, name := range req.Pools {
		if _, ok := m.pool(name); !ok {
			unknown = append(unknown, ipamErr(api.CodeUnknownPool, nil, "pool %q is not configured (known: %s)", name, strings.Join(m.poolNames(), ", ")))
		}
	}
	if len(unknown) > 0 {
		return Attachment{}, poolsFailed(nil, unknown)
	}
	for i, name := range req.Pools {
		p, _ := m.pool(name)
		if other, dup := families[p.Family()]; dup {
			return Attachment{}, &api.FieldError{Field: fmt.Sprintf("pools[%d]", i), Msg: fmt.Sprintf("pools %q and %q are both %s: name one pool per family", other, name, p.Family())}
		}
		families[p.Family()] = name
		pools[i] = p
	}
	if req.Workload == "" {
		req.Workload = req.ContainerID
	}
	req.Origin = recordedOrigin(req)
	defer func() {
		res := "ok"
		if err != nil {
			res = errCode(err)
		}
		secs := m.now().Sub(start).Seconds()
		for _, p := range pools {
			m.metrics.Allocation(p.Name, res, secs)
		}
	}()
	a := &allocation{m: m, req: req, key: AttachmentKey{ContainerID: req.ContainerID, Interface: req.Interface}, pools: pools}
	defer a.logSteps(time.Now(), &err)
	if !m.inflight.take(a.key) {
		return Attachment{}, ipamErr(api.CodeTryAgain, nil, "an allocation for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
	}
	defer m.inflight.end(a.key)
	return a.run(ctx)
}

// recordedOrigin is the origin an allocation for req records: the
// request's (a CNI ADD says its network), else the API's; with the
// interface always filled in. A copy: the caller's request is not changed.
func recordedOrigin(req AllocateRequest) *api.Origin {
	o := api.Origin{Kind: api.OriginAPI}
	if req.Origin != nil {
		o = *req.Origin
	}
	o.Interface = req.Interface
	return &o
}

// errAllocationTimeout is the cause of an allocation's context ending at
// its deadline.
var errAllocationTimeout = errors.New("ipam.allocation_timeout passed")

func isCoded(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// bounded runs fn and returns its answer, or ctx's error as soon as ctx
// ends, even when fn is stuck in a call that does not look at ctx (a
// syscall on a path that never answers, a detector that hangs). fn then
// finishes on its own goroutine and late receives its answer, to undo what
// fn did; fn must not touch the allocation's state.
func bounded[T any](ctx context.Context, fn func() (T, error), late func(T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	// Unbuffered: once abandoned is closed, an answer goes either to the
	// receive below or to late, never nowhere.
	done := make(chan answer)
	abandoned := make(chan struct{})
	go func() {
		v, err := fn()
		select {
		case done <- answer{v, err}:
		case <-abandoned:
			if late != nil {
				late(v, err)
			}
		}
	}()
	select {
	case a := <-done:
		return a.v, a.err
	case <-ctx.Done():
		close(abandoned)
		// An answer offered at the same moment is undone here.
		select {
		case a := <-done:
			if late != nil {
				late(a.v, a.err)
			}
		default:
		}
		var zero T
		return zero, context.Cause(ctx)
	}
}

func (m *IPAM) poolNames() []string {
	var out []string
	for _, p := range m.Pools() {
		out = append(out, p.Name)
	}
	return out
}

// allocation is one Allocate in progress.
type allocation struct {
	m     *IPAM
	req   AllocateRequest
	key   AttachmentKey
	pools []*Pool

	att     Attachment
	attRev  int64
	addrRev map[netip.Addr]int64 // revisions of the reserved address keys
	tried   map[string]map[netip.Addr]bool
	// why holds, per pool, the outcomes that skipped its candidates
	// (OutcomeConflict, OutcomePolicy): what a pool that ran out of tries
	// reports.
	why     map[string]map[Outcome]bool
	skipped []SkippedIP
	sticky  map[string]netip.Addr
	retries int
	// busy are the candidates skipped as claimed on the wire (skipBusy),
	// with their pool.
	busy map[claimKey]string
	// ep is the workload's endpoint as read for the sticky addresses, for
	// the first history write of a one-commit allocation (which follows at
	// once: its compare catches a change); nil once used.
	ep *endpointRead
	// took is where the allocation's time went, for its debug line.
	took steps
}

// steps are the allocation's time in each of its steps (wall time, summed
// over candidates), so that an operator can tell a slow store from a slow
// interface or detector: the reservation commits (and the quarantine of a
// candidate in use), raising the workload's interface and putting it down
// again, the Checker's calls (the reply window is inside), and the final
// commit (or the one commit when nothing is checked). What total has
// beyond them is the reads and the waits of lost races.
type steps struct {
	reserve, linkUp, linkDown, check, commit time.Duration
}

// timed adds the time fn takes to *d.
func timed(d *time.Duration, fn func() error) error {
	t0 := time.Now()
	err := fn()
	*d += time.Since(t0)
	return err
}

// logSteps writes the allocation's debug line: when it started (wall
// clock, to line it up with what happened outside the agent) and its
// steps in milliseconds.
func (a *allocation) logSteps(start time.Time, err *error) {
	log := a.m.log
	if !log.IsDebug() {
		return
	}
	res := "ok"
	if *err != nil {
		res = errCode(*err)
	}
	msOf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	log.Debug("allocation steps", "container_id", input.Cut(a.key.ContainerID), "interface", a.key.Interface, "result", res,
		"start", start.UTC().Format(time.RFC3339Nano), "total_ms", msOf(time.Since(start)),
		"reserve_ms", msOf(a.took.reserve), "link_up_ms", msOf(a.took.linkUp), "check_ms", msOf(a.took.check),
		"link_down_ms", msOf(a.took.linkDown), "commit_ms", msOf(a.took.commit))
}

type endpointRead struct {
	head endpointHead
	rev  int64
}

func (a *allocation) run(ctx context.Context) (Attachment, error) {
	m := a.m
	existing, err := m.getAttachment(ctx, a.key)
	if err != nil {
		return Attachment{}, err
	}
	if existing.rev != 0 && existing.att.State == StateReserved && existing.att.Node == m.node {
		// This key is being allocated here and now (the caller holds its
		// flight), so the reservation is a leftover of an earlier attempt:
		// drop it, with the revision check, and start afresh.
		if err := m.dropReservation(ctx, a.key, existing.rev, existing.att); err != nil {
			return Attachment{}, fmt.Errorf("release the reservation left by an earlier attempt: %w", err)
		}
		m.log.Info("released a reservation left by an earlier failed attempt", "container_id", a.key.ContainerID, "interface", a.key.Interface)
		existing = attEntry{}
	}
	if existing.rev != 0 {
		return a.repeat(existing.att)
	}
	head, headRev, err := m.headForWrite(ctx, a.req.Workload)
	if err != nil {
		return Attachment{}, err
	}
	a.ep = &endpointRead{head: head, rev: headRev}
	a.sticky = map[string]netip.Addr{}
	for _, l := range head.Last {
		a.sticky[l.Pool] = l.Address
	}
	a.addrRev = map[netip.Addr]int64{}
	a.tried = map[string]map[netip.Addr]bool{}
	a.why = map[string]map[Outcome]bool{}
	a.att = Attachment{
		AttachmentKey: a.key, Netns: a.req.Netns, Workload: a.req.Workload, Node: m.node,
		State: StateReserved, Created: m.now().UTC(), NotChecked: a.notChecked(), Origin: a.req.Origin,
	}
	for _, sk := range a.att.NotChecked {
		m.log.Info("detection skipped at the caller's request", "container_id", a.key.ContainerID, "interface", a.key.Interface,
			"pool", sk.Pool, "detection", sk.Detection, "reason", sk.Reason)
	}
	ok := false
	defer func() {
		if !ok && a.attRev != 0 {
			a.rollback()
		}
	}()
	if !a.needsCheck() {
		// Nothing to vet on the wire: no reservation has to keep other
		// allocators off the addresses while they are probed, so the
		// allocation is written whole in one commit (one fsync, or one etcd
		// Txn, instead of two or more).
		if err := timed(&a.took.commit, func() error { return a.allocateAtOnce(ctx) }); err != nil {
			return Attachment{}, err
		}
		ok = true
		return a.att, nil
	}
	// A full pool does not hide the others' state: the rest are still
	// tried, so that the error names every pool that failed.
	var full []*Error
	for _, p := range a.pools {
		if err := timed(&a.took.reserve, func() error { return a.reserve(ctx, p) }); err != nil {
			if e := poolFull(err); e != nil {
				full = append(full, e)
				continue
			}
			return Attachment{}, err
		}
	}
	if len(full) > 0 {
		return Attachment{}, poolsFailed(a.skipped, full)
	}
	if err := a.vet(ctx); err != nil {
		return Attachment{}, err
	}
	if err := timed(&a.took.commit, func() error { return a.commit(ctx) }); err != nil {
		return Attachment{}, err
	}
	ok = true
	return a.att, nil
}

// repeat answers an allocate for a key that already holds addresses.
func (a *allocation) repeat(att Attachment) (Attachment, error) {
	if att.State != StateAllocated {
		return Attachment{}, ipamErr(api.CodeTryAgain, nil, "an allocation for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
	}
	have := map[string]bool{}
	for _, ip := range att.Addresses {
		have[ip.Pool] = true
	}
	same := len(have) == len(a.pools)
	for _, p := range a.pools {
		same = same && have[p.Name]
	}
	if !same {
		var names []string
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		return Attachment{}, ipamErr(api.CodeMismatch, nil, "container %s interface %s already holds addresses from pool(s) %s; release it first", input.Cut(a.key.ContainerID), a.key.Interface, strings.Join(names, ", "))
	}
	// Another origin asking for the key is not a repeat: answering would
	// give a CNI network addresses that another network's (or the API's)
	// allocation holds, which then neither side's GC accounts for. A record
	// without an origin predates them and cannot be told apart.
	if o, want := att.Origin, a.req.Origin; o != nil && (o.Kind != want.Kind || o.Network != want.Network) {
		return Attachment{}, ipamErr(api.CodeMismatch, nil, "container %s interface %s is held by an allocation of origin %s, not %s; release it first", a.key.ContainerID, a.key.Interface, o, want)
	}
	return att, nil
}

// spendRetry counts a lost compare; past MaxRetries the caller may only
// try again later.
func (a *allocation) spendRetry(ctx context.Context, pool, what string) error {
	a.retries++
	a.m.metrics.RetrySpent(pool)
	if a.retries > a.m.retries {
		return a.m.retriesSpent(what, a.retries, a.skipped)
	}
	// Jitter before the retry: writers on other nodes that lost the same
	// race would otherwise meet again at once (full jitter, growing).
	t := time.NewTimer(time.Duration(rand.Int64N(int64(a.retries) * int64(retryJitter))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return nil
}

// retriesSpent is the try-again answer once another writer won lost
// compares in a row and ipam.update_max_retries allows no more.
func (m *IPAM) retriesSpent(what string, lost int, skipped []SkippedIP) *Error {
	return &Error{Code: api.CodeTryAgain, Err: ErrTryAgain, Skipped: skipped,
		Msg: fmt.Sprintf("%s: another writer changed the records %d times (ipam.update_max_retries = %d); try again", what, lost, m.retries)}
}

// retryJitter is the upper bound of the wait before the first retry of a
// lost race (n times it before the n-th).
const retryJitter = 2 * time.Millisecond
