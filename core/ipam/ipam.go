// Package ipam is the agent's address management: pools of IPv4 and IPv6
// addresses, allocations keyed by CNI's (container id, interface), each
// address of a pool with detection reserved in a Store and then vetted on
// the wire by a Checker before it is returned (an allocation with nothing
// to vet is written in one commit), workload endpoints with their history,
// and garbage collection of allocations whose network namespace is gone.
//
// The Store interface is IPAM's own (store.go): a revisioned key-value
// store with atomic, compare-guarded commits, so that the embedded bbolt
// store (core/ipam/boltstore) and a shared etcd store fit it unchanged.
// core/ipam/storetest is the conformance suite every store runs.
// The Checker interface is IPAM's too: the daemon adapts its check
// orchestration to it, so this package does not depend on it.
package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// Defaults of Options.
const (
	DefaultMaxHistory = 100
	// DefaultMaxTries bounds the candidates tried per pool when addresses
	// turn out to be in use or refused by policy.
	DefaultMaxTries = 5
	DefaultGCGrace  = 30 * time.Second
	// rollbackTimeout bounds the clean-up of a failed allocation, which
	// runs even when the request's context has ended.
	rollbackTimeout = 5 * time.Second
)

// Options configure New.
type Options struct {
	Store Store
	Pools []*Pool
	// Checker vets addresses on the wire; nil vets nothing (a pool with
	// detection on is then refused at allocation: never an unchecked pass).
	Checker Checker
	// Links brings a workload's interface up for the probe; nil uses
	// netlink in the workload's namespace.
	Links LinkUpper
	// NetnsGone tells GC whether a namespace path is gone; nil uses
	// NetnsExists.
	NetnsGone func(path string) (bool, error)
	// CheckNetns vets a request's namespace path before anything is
	// reserved (an error names the field); nil uses CheckNetns.
	CheckNetns func(path string) error
	// AllocationTimeout is the deadline of an allocation
	// (ipam.allocation_timeout); 0 uses ipamapi.DefaultAllocationTimeout.
	AllocationTimeout time.Duration
	Metrics           Metrics
	Logger            hclog.Logger
	// Node is this agent's name, recorded with each allocation and mixed
	// into the candidate order.
	Node string
	// MaxHistory is ipam.max_history_records (at most MaxHistoryCap).
	MaxHistory int
	// Retention is ipam.workload_retention: GC prunes a workload no
	// allocation names once its last allocation or release is older.
	// 0 is DefaultWorkloadRetention.
	Retention time.Duration
	// MaxRetries is ipam.update_max_retries.
	MaxRetries int
	// MaxTries bounds candidates per pool when detectors skip them (in
	// use, or refused by policy).
	MaxTries int
	// GCGrace is the wait between GC's two looks, and the grace after
	// another node's heartbeat expired before GC reclaims its allocations.
	GCGrace time.Duration
	// NodeAlive, for a store shared by several nodes, tells whether node's
	// heartbeat is live and, when not, the latest time it may still have
	// been alive (zero: never seen). nil: GC never touches another node's
	// allocations.
	NodeAlive func(ctx context.Context, node string) (alive bool, expiredAt time.Time, err error)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// IPAM allocates addresses. Safe for concurrent use.
type IPAM struct {
	store   Store
	checker Checker
	links   LinkUpper
	gone    func(string) (bool, error)
	vetNS   func(string) error
	timeout time.Duration
	metrics Metrics
	log     hclog.Logger
	node    string
	maxHist int
	retain  time.Duration
	retries int
	tries   int
	grace   time.Duration
	now     func() time.Time
	alive   func(context.Context, string) (bool, time.Time, error)

	// reload is held shared by every allocation and exclusively by
	// SetPools, so that no reservation lands in a range a reload is
	// checking for live addresses.
	reload sync.RWMutex
	mu     sync.RWMutex
	pools  map[string]*Pool
	claims claims // candidates being reserved by this agent
	hint   walkHint

	// inflight are the attachment keys this process is allocating now: a
	// reservation of this node for any other key is dangling (its
	// allocation failed and the rollback could not reach the store).
	flightMu sync.Mutex
	inflight map[AttachmentKey]bool

	gcMu     sync.Mutex
	suspects map[AttachmentKey]suspect

	statsMu sync.Mutex
	stats   WorkloadStats
}

type suspect struct {
	rev   int64
	first time.Time
}

// Error is an IPAM failure with a code from ipamapi (CodePoolFull, ...).
type Error struct {
	Code    string
	Msg     string
	Skipped []SkippedIP
	Err     error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// IPAMCode and IPAMSkipped let the control API answer with the code.
func (e *Error) IPAMCode() string { return e.Code }

// IPAMSkipped lists the candidates skipped before the failure.
func (e *Error) IPAMSkipped() []SkippedIP { return e.Skipped }

func ipamErr(code string, skipped []SkippedIP, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...), Skipped: skipped}
}

// ErrTryAgain is wrapped when retries of an optimistic update were spent.
var ErrTryAgain = errors.New("try again")

// ErrNotReady is what a Checker wraps when it cannot check yet (the agent
// is starting or stopping): the allocation fails with CodeNotReady, which
// a caller may retry, rather than CodeCheckFailed.
var ErrNotReady = errors.New("the detectors are not ready")

// New builds an IPAM over opts.Store with opts.Pools. Call Recover before
// serving, so that reservations left by a killed agent are released.
func New(opts Options) (*IPAM, error) {
	if opts.Store == nil {
		return nil, errors.New("ipam: no store")
	}
	m := &IPAM{
		store: opts.Store, checker: opts.Checker, links: opts.Links, gone: opts.NetnsGone,
		vetNS: opts.CheckNetns, timeout: opts.AllocationTimeout,
		metrics: opts.Metrics, log: opts.Logger, node: opts.Node,
		maxHist: opts.MaxHistory, retain: opts.Retention, retries: opts.MaxRetries, tries: opts.MaxTries, grace: opts.GCGrace,
		now: opts.Now, alive: opts.NodeAlive, suspects: map[AttachmentKey]suspect{},
	}
	if m.links == nil {
		m.links = &NetlinkUpper{}
	}
	if m.gone == nil {
		m.gone = NetnsGone
	}
	if m.vetNS == nil {
		m.vetNS = CheckNetns
	}
	if m.timeout <= 0 {
		m.timeout = ipamapi.DefaultAllocationTimeout
	}
	if m.metrics == nil {
		m.metrics = nopMetrics{}
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if m.maxHist <= 0 {
		m.maxHist = DefaultMaxHistory
	}
	if m.maxHist > MaxHistoryCap {
		return nil, fmt.Errorf("ipam: a history of %d records per workload is more than the cap %d", m.maxHist, MaxHistoryCap)
	}
	if m.retain <= 0 {
		m.retain = DefaultWorkloadRetention
	}
	if m.retries < 0 {
		m.retries = 0
	}
	if m.tries <= 0 {
		m.tries = DefaultMaxTries
	}
	if m.grace <= 0 {
		m.grace = DefaultGCGrace
	}
	if m.now == nil {
		m.now = time.Now
	}
	pools, err := poolMap(opts.Pools)
	if err != nil {
		return nil, err
	}
	m.pools = pools
	m.claims.m = map[claimKey]struct{}{}
	m.inflight = map[AttachmentKey]bool{}
	return m, nil
}

func poolMap(list []*Pool) (map[string]*Pool, error) {
	out := make(map[string]*Pool, len(list))
	for _, p := range list {
		if _, dup := out[p.Name]; dup {
			return nil, fmt.Errorf("pool %q is defined twice", p.Name)
		}
		out[p.Name] = p
	}
	return out, nil
}

// Pools returns the pools, sorted by name.
func (m *IPAM) Pools() []*Pool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Pool, 0, len(m.pools))
	for _, p := range m.pools {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *IPAM) pool(name string) (*Pool, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.pools[name]
	return p, ok
}

type claimKey struct {
	domain string
	addr   netip.Addr
}

// claims are the candidates this agent is reserving right now, by address
// within its domain (the key of its record), whichever pool offers it.
type claims struct {
	mu sync.Mutex
	m  map[claimKey]struct{}
}

// take claims addr; false when another allocation holds the claim.
func (c *claims) take(domain string, addr netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := claimKey{domain, addr}
	if _, held := c.m[k]; held {
		return false
	}
	c.m[k] = struct{}{}
	return true
}

func (c *claims) release(domain string, addr netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, claimKey{domain, addr})
}

// AllocateRequest is ipamapi.AllocateRequest.
type AllocateRequest = ipamapi.AllocateRequest

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
			err = &Error{Code: ipamapi.CodeTryAgain, Err: err, Skipped: skipped,
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
			unknown = append(unknown, ipamErr(ipamapi.CodeUnknownPool, nil, "pool %q is not configured (known: %s)", name, strings.Join(m.poolNames(), ", ")))
		}
	}
	if len(unknown) > 0 {
		return Attachment{}, poolsFailed(nil, unknown)
	}
	for i, name := range req.Pools {
		p, _ := m.pool(name)
		if other, dup := families[p.Family()]; dup {
			return Attachment{}, &ipamapi.FieldError{Field: fmt.Sprintf("pools[%d]", i), Msg: fmt.Sprintf("pools %q and %q are both %s: name one pool per family", other, name, p.Family())}
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
	if !m.takeFlight(a.key) {
		return Attachment{}, ipamErr(ipamapi.CodeTryAgain, nil, "an allocation for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
	}
	defer m.endFlight(a.key)
	return a.run(ctx)
}

// recordedOrigin is the origin an allocation for req records: the
// request's (a CNI ADD says its network), else the API's; with the
// interface always filled in. A copy: the caller's request is not changed.
func recordedOrigin(req AllocateRequest) *ipamapi.Origin {
	o := ipamapi.Origin{Kind: ipamapi.OriginAPI}
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

func (m *IPAM) takeFlight(k AttachmentKey) bool {
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	if m.inflight[k] {
		return false
	}
	m.inflight[k] = true
	return true
}

func (m *IPAM) endFlight(k AttachmentKey) {
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	delete(m.inflight, k)
}

func (m *IPAM) inFlight(k AttachmentKey) bool {
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	return m.inflight[k]
}

// dangling says whether e is a reservation of this node that no
// allocation of this process is making: one whose allocation failed while
// the store could not be reached to roll it back (a shared store that was
// down, a commit whose outcome was unknown).
func (m *IPAM) dangling(e attEntry) bool {
	return e.rev != 0 && e.att.State == StateReserved && e.att.Node == m.node && !m.inFlight(e.att.AttachmentKey)
}

func (m *IPAM) poolNames() []string {
	var out []string
	for _, p := range m.Pools() {
		out = append(out, p.Name)
	}
	return out
}

func errCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var fe *ipamapi.FieldError
	if errors.As(err, &fe) {
		return ipamapi.CodeBadRequest
	}
	return ipamapi.CodeInternal
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
	// ep is the workload's endpoint as read for the sticky addresses, for
	// the first history write of a one-commit allocation (which follows at
	// once: its compare catches a change); nil once used.
	ep *endpointRead
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
		if err := a.allocateAtOnce(ctx); err != nil {
			return Attachment{}, err
		}
		ok = true
		return a.att, nil
	}
	// A full pool does not hide the others' state: the rest are still
	// tried, so that the error names every pool that failed.
	var full []*Error
	for _, p := range a.pools {
		if err := a.reserve(ctx, p); err != nil {
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
	if err := a.commit(ctx); err != nil {
		return Attachment{}, err
	}
	ok = true
	return a.att, nil
}

// repeat answers an allocate for a key that already holds addresses.
func (a *allocation) repeat(att Attachment) (Attachment, error) {
	if att.State != StateAllocated {
		return Attachment{}, ipamErr(ipamapi.CodeTryAgain, nil, "an allocation for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
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
		return Attachment{}, ipamErr(ipamapi.CodeMismatch, nil, "container %s interface %s already holds addresses from pool(s) %s; release it first", input.Cut(a.key.ContainerID), a.key.Interface, strings.Join(names, ", "))
	}
	// Another origin asking for the key is not a repeat: answering would
	// give a CNI network addresses that another network's (or the API's)
	// allocation holds, which then neither side's GC accounts for. A record
	// without an origin predates them and cannot be told apart.
	if o, want := att.Origin, a.req.Origin; o != nil && (o.Kind != want.Kind || o.Network != want.Network) {
		return Attachment{}, ipamErr(ipamapi.CodeMismatch, nil, "container %s interface %s is held by an allocation of origin %s, not %s; release it first", a.key.ContainerID, a.key.Interface, o, want)
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
	return &Error{Code: ipamapi.CodeTryAgain, Err: ErrTryAgain, Skipped: skipped,
		Msg: fmt.Sprintf("%s: another writer changed the records %d times (ipam.update_max_retries = %d); try again", what, lost, m.retries)}
}

// retryJitter is the upper bound of the wait before the first retry of a
// lost race (n times it before the n-th).
const retryJitter = 2 * time.Millisecond

// reserve picks a free candidate of p and writes it, reserved, with the
// attachment in one commit.
func (a *allocation) reserve(ctx context.Context, p *Pool) error {
	m := a.m
	if _, ok := m.pool(p.Name); !ok {
		return ipamErr(ipamapi.CodeUnknownPool, a.skipped, "pool %q was removed", p.Name)
	}
	if a.tried[p.Name] == nil {
		a.tried[p.Name] = map[netip.Addr]bool{}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// candidate claims the address in this process: this agent's own
		// allocations never race for one candidate (and their commits can
		// share an fsync); compare conditions catch everybody else.
		addr, rev, err := a.candidate(ctx, p)
		if err != nil {
			return err
		}
		a.tried[p.Name][addr] = true
		rec := AddressRecord{Pool: p.Name, Address: addr, State: StateReserved, Owner: a.key, Node: m.node, Since: m.now().UTC()}
		next := a.att
		next.Addresses = append(append([]AllocatedIP(nil), a.att.Addresses...), allocatedIP(p, addr))
		attVal, err1 := json.Marshal(next)
		recVal, err2 := json.Marshal(rec)
		if err := errors.Join(err1, err2); err != nil {
			m.claims.release(p.Domain, addr)
			return err
		}
		rev, err = m.store.Commit(ctx,
			[]Cond{{Key: attachmentKey(a.key), Revision: a.attRev}, {Key: addrKey(p.Domain, addr), Revision: rev}},
			[]Op{{Key: attachmentKey(a.key), Value: attVal}, {Key: addrKey(p.Domain, addr), Value: recVal}})
		// Committed or not, the store now says whether it is taken.
		m.claims.release(p.Domain, addr)
		if err != nil {
			rev, err = a.settle(ctx, err, attVal, p.Name, fmt.Sprintf("pool %q: reserve %s", p.Name, addr))
			if errors.Is(err, errRetry) {
				continue
			}
			if err != nil {
				return err
			}
		}
		// Both keys were written by the same commit: same revision.
		a.att, a.attRev = next, rev
		a.addrRev[addr] = rev
		return nil
	}
}

// candidate returns the first free address of p in this allocation's
// order with the revision to compare against (0: absent; or that of an
// expired quarantine record). The order starts with the workload's last
// address in the pool (sticky), then runs from a point hashed from the
// node and the key, so that concurrent allocations - here and on other
// nodes - do not fight over the lowest free address.
func (a *allocation) candidate(ctx context.Context, p *Pool) (netip.Addr, int64, error) {
	m := a.m
	now := m.now()
	// free claims addr and reads it; a claim held by another allocation of
	// this agent means taken. The claim comes before the read, so a claim
	// released after a commit is always followed by a read that sees it.
	free := func(addr netip.Addr) (int64, bool, error) {
		if a.tried[p.Name][addr] || !m.claims.take(p.Domain, addr) {
			return 0, false, nil
		}
		e, err := m.store.Get(ctx, addrKey(p.Domain, addr))
		if err != nil {
			m.claims.release(p.Domain, addr)
			return 0, false, fmt.Errorf("pool %q: read %s: %w", p.Name, addr, err)
		}
		if e.Revision == 0 {
			return 0, true, nil
		}
		var rec AddressRecord
		if json.Unmarshal(e.Value, &rec) == nil && rec.State == StateQuarantined && !now.Before(rec.Until) {
			return e.Revision, true, nil
		}
		m.claims.release(p.Domain, addr)
		if i, ok := p.index(addr); ok {
			m.hint.mark(p.Name, p.Size(), i, true) // the store says taken
		}
		return 0, false, nil
	}
	if s, ok := a.sticky[p.Name]; ok && p.Contains(s) {
		rev, ok, err := free(s)
		if err != nil {
			return netip.Addr{}, 0, err
		}
		if ok {
			return s, rev, nil
		}
	}
	n := p.Size()
	h := fnv.New64a()
	h.Write([]byte(m.node + "\x00" + a.key.ContainerID + "\x00" + a.key.Interface))
	start := int(h.Sum64() % uint64(n))
	// The first walk skips what m.hint says is taken; the second reads
	// every address (see walkHint).
	for _, skip := range []bool{true, false} {
		for i := 0; i < n; i++ {
			if i%64 == 63 {
				if err := ctx.Err(); err != nil {
					return netip.Addr{}, 0, err
				}
			}
			idx := (start + i) % n
			if skip && m.hint.taken(p.Name, n, idx) {
				continue
			}
			addr := p.At(idx)
			rev, ok, err := free(addr)
			if err != nil {
				return netip.Addr{}, 0, err
			}
			if ok {
				return addr, rev, nil
			}
		}
	}
	return netip.Addr{}, 0, ipamErr(ipamapi.CodePoolFull, a.skipped, "pool %q is full: all %d addresses are allocated, reserved or quarantined", p.Name, n)
}

// needsCheck says whether vet has anything to check for this allocation:
// whether any of its pools enables a detector the request does not skip.
func (a *allocation) needsCheck() bool {
	for _, p := range a.pools {
		if a.needsCheckIn(p) {
			return true
		}
	}
	return false
}

func (a *allocation) needsCheckIn(p *Pool) bool {
	return a.detects(p, ipamapi.DetectionConflict) || a.detects(p, ipamapi.DetectionGateway)
}

// detects says whether vet runs detection d for p: the pool enables it
// and the request does not skip it.
func (a *allocation) detects(p *Pool, d string) bool {
	return a.poolEnables(p, d) && a.skipOf(p, d) == nil
}

func (a *allocation) poolEnables(p *Pool, d string) bool {
	switch d {
	case ipamapi.DetectionConflict:
		return p.ConflictDetection
	case ipamapi.DetectionGateway:
		return p.GatewayDetection
	}
	return false
}

// skipOf is the request's skip of detection d for p, or nil.
func (a *allocation) skipOf(p *Pool, d string) *ipamapi.DetectionSkip {
	for i, sk := range a.req.SkipDetection {
		if sk.Detection == d && (sk.Pool == "" || sk.Pool == p.Name) {
			return &a.req.SkipDetection[i]
		}
	}
	return nil
}

// notChecked lists, per pool, the detections the pool enables that the
// request skips: what the attachment records as not checked. A skip of a
// detection the pool does not enable changes nothing and is not listed.
func (a *allocation) notChecked() []ipamapi.DetectionSkip {
	var out []ipamapi.DetectionSkip
	for _, p := range a.pools {
		for _, d := range []string{ipamapi.DetectionConflict, ipamapi.DetectionGateway} {
			if sk := a.skipOf(p, d); sk != nil && a.poolEnables(p, d) {
				out = append(out, ipamapi.DetectionSkip{Pool: p.Name, Detection: d, Reason: sk.Reason})
			}
		}
	}
	return out
}

// vet checks the reserved addresses on the wire until each passed, one was
// blocked, or a pool ran out of tries.
func (a *allocation) vet(ctx context.Context) error {
	m := a.m
	pending := map[string]bool{}
	for _, p := range a.pools {
		if a.needsCheckIn(p) {
			pending[p.Name] = true
		}
	}
	if len(pending) == 0 {
		return nil
	}
	if m.checker == nil {
		return ipamErr(ipamapi.CodeCheckFailed, nil, "pool(s) need detection but no detector is available")
	}
	// Only inside a workload's namespace: the agent never changes the
	// state of the node's own interfaces.
	if a.req.Netns != "" {
		netnsPath, iface := a.req.Netns, a.req.Interface
		restore, err := bounded(ctx, func() (func(), error) {
			return m.links.EnsureUp(ctx, netnsPath, iface)
		}, func(restore func(), err error) {
			if err == nil {
				restore()
			}
		})
		if err != nil {
			return &Error{Code: ipamapi.CodeCheckFailed, Err: err, Msg: fmt.Sprintf("cannot probe on %s: %v", where(a.req.Netns, a.req.Interface), err)}
		}
		defer restore()
	}
	for len(pending) > 0 {
		var creq CheckRequest
		creq.Netns, creq.Interface = a.req.Netns, a.req.Interface
		var order []*Pool
		for _, p := range a.pools {
			if !pending[p.Name] {
				continue
			}
			ip := a.addressOf(p.Name)
			ca := CheckAddress{Address: ip.Address, Conflict: a.detects(p, ipamapi.DetectionConflict)}
			if a.detects(p, ipamapi.DetectionGateway) {
				ca.Gateway = p.Gateway
			}
			creq.Addresses = append(creq.Addresses, ca)
			order = append(order, p)
		}
		res, err := bounded(ctx, func() ([]CheckResult, error) { return m.checker.Check(ctx, creq) }, nil)
		if err != nil {
			code := ipamapi.CodeCheckFailed
			if errors.Is(err, ErrNotReady) {
				code = ipamapi.CodeNotReady
			}
			return &Error{Code: code, Err: err, Skipped: a.skipped, Msg: fmt.Sprintf("check on %s: %v", where(a.req.Netns, a.req.Interface), err)}
		}
		if len(res) != len(order) {
			return ipamErr(ipamapi.CodeCheckFailed, a.skipped, "check answered %d results for %d addresses", len(res), len(order))
		}
		// Unreachable, refusals and errors first: another address would
		// not help. Every pool that failed is named, each with its reason.
		var failed []*Error
		for i, r := range res {
			ip := a.addressOf(order[i].Name)
			switch r.Outcome {
			case OutcomeUnreachable:
				failed = append(failed, ipamErr(ipamapi.CodeGateway, nil, "pool %q: %s (address %s not given out)", order[i].Name, r.Reason, ip.Address.Addr()))
			case OutcomeBlocked:
				failed = append(failed, ipamErr(ipamapi.CodeBlocked, nil, "pool %q: %s is blocked: %s", order[i].Name, ip.Address.Addr(), r.Reason))
			case OutcomeError:
				failed = append(failed, ipamErr(ipamapi.CodeCheckFailed, nil, "pool %q: %s could not be checked: %s", order[i].Name, ip.Address.Addr(), r.Reason))
			case OutcomeFree, OutcomeConflict, OutcomePolicy:
			default:
				failed = append(failed, ipamErr(ipamapi.CodeCheckFailed, nil, "pool %q: unknown check outcome %q", order[i].Name, r.Outcome))
			}
		}
		if len(failed) > 0 {
			return poolsFailed(a.skipped, failed)
		}
		for i, r := range res {
			p := order[i]
			if r.Outcome == OutcomeFree {
				delete(pending, p.Name)
				continue
			}
			if err := a.skip(ctx, p, r); err != nil {
				return err
			}
			if a.why[p.Name] == nil {
				a.why[p.Name] = map[Outcome]bool{}
			}
			a.why[p.Name][r.Outcome] = true
			if len(a.tried[p.Name]) >= m.tries {
				failed = append(failed, a.outOfTries(p))
				delete(pending, p.Name)
				continue
			}
			if err := a.reserve(ctx, p); err != nil {
				if e := poolFull(err); e != nil {
					failed = append(failed, e)
					delete(pending, p.Name)
					continue
				}
				return err
			}
		}
		if len(failed) > 0 {
			return poolsFailed(a.skipped, failed)
		}
	}
	return nil
}

// poolFull returns err as an *Error when it says a pool is full: a failure
// of that pool alone, which does not stop the others being tried.
func poolFull(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Code == ipamapi.CodePoolFull {
		return e
	}
	return nil
}

// poolsFailed is the error of an allocation that failed in one or more of
// its pools: each is named with its reason, in the request's order; the
// code is the first one's (a caller acts on one code).
func poolsFailed(skipped []SkippedIP, errs []*Error) *Error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Msg
	}
	return &Error{Code: errs[0].Code, Msg: strings.Join(msgs, "; "), Skipped: skipped, Err: errs[0].Err}
}

// outOfTries is the error of pool p when MaxTries candidates were skipped:
// conflict when any was in use (the network is busy), blocked when policy
// refused them all.
func (a *allocation) outOfTries(p *Pool) *Error {
	why := a.why[p.Name]
	code, what := ipamapi.CodeConflict, "all in use"
	switch {
	case why[OutcomeConflict] && why[OutcomePolicy]:
		what = "in use or refused by policy"
	case why[OutcomePolicy]:
		code, what = ipamapi.CodeBlocked, "all refused by policy"
	}
	return ipamErr(code, nil, "pool %q: %d addresses tried, %s: %s", p.Name, len(a.tried[p.Name]), what, skippedText(a.skipped, p.Name))
}

func where(netns, iface string) string {
	if netns == "" {
		return iface
	}
	return iface + " in " + netns
}

func skippedText(s []SkippedIP, pool string) string {
	var parts []string
	for _, x := range s {
		if x.Pool == pool {
			parts = append(parts, x.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

func (a *allocation) addressOf(pool string) AllocatedIP {
	for _, ip := range a.att.Addresses {
		if ip.Pool == pool {
			return ip
		}
	}
	return AllocatedIP{}
}

// skip takes the refused address of p out of the attachment. An address
// in use (res.Outcome OutcomeConflict) is quarantined, with the MAC that
// answered for it, unless the pool's quarantine share is used up; one
// refused by policy, or past the share, is only freed. Either way this
// allocation does not try it again.
func (a *allocation) skip(ctx context.Context, p *Pool, res CheckResult) error {
	m := a.m
	reason, inUse := res.Reason, res.Outcome == OutcomeConflict
	ip := a.addressOf(p.Name)
	addr := ip.Address.Addr()
	quarantine := false
	if inUse {
		m.metrics.ConflictSkipped(p.Name)
		var err error
		if quarantine, err = m.mayQuarantine(ctx, p); err != nil {
			return err
		}
	}
	next := a.att
	next.Addresses = nil
	for _, x := range a.att.Addresses {
		if x.Pool != p.Name {
			next.Addresses = append(next.Addresses, x)
		}
	}
	sk := SkippedIP{Pool: p.Name, Address: addr, Reason: reason, Quarantined: quarantine}
	next.Skipped = append(append([]SkippedIP(nil), a.att.Skipped...), sk)
	attVal, err := json.Marshal(next)
	if err != nil {
		return err
	}
	ops := []Op{{Key: attachmentKey(a.key), Value: attVal}}
	if quarantine {
		now := m.now().UTC()
		rec := AddressRecord{Pool: p.Name, Address: addr, State: StateQuarantined, Node: m.node, Since: now, Until: now.Add(p.Quarantine), Reason: reason, MAC: res.MAC}
		val, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		ops = append(ops, Op{Key: addrKey(p.Domain, addr), Value: val, TTL: p.Quarantine})
	} else {
		ops = append(ops, Op{Key: addrKey(p.Domain, addr), Delete: true})
	}
	conds := []Cond{{Key: attachmentKey(a.key), Revision: a.attRev}, {Key: addrKey(p.Domain, addr), Revision: a.addrRev[addr]}}
	rev, err := m.store.Commit(ctx, conds, ops)
	if err != nil {
		return fmt.Errorf("pool %q: quarantine %s: %w", p.Name, addr, err)
	}
	delete(a.addrRev, addr)
	a.att, a.attRev = next, rev
	a.skipped = append(a.skipped, sk)
	switch {
	case quarantine:
		m.metrics.Quarantined(p.Name)
		m.log.Warn("address in use: quarantined", "pool", p.Name, "address", addr, "for", p.Quarantine, "mac", res.MAC, "reason", reason)
	case inUse:
		m.log.Warn("address in use: skipped (quarantine share of the pool used up)", "pool", p.Name, "address", addr, "reason", reason)
	default:
		m.log.Info("address refused by policy: skipped", "pool", p.Name, "address", addr, "reason", reason)
	}
	return nil
}

// mayQuarantine says whether p can take one more quarantined address.
func (m *IPAM) mayQuarantine(ctx context.Context, p *Pool) (bool, error) {
	limit := p.Size() / QuarantineShare
	if limit == 0 {
		return false, nil
	}
	u, err := m.usage(ctx, p)
	if err != nil {
		return false, err
	}
	return u.Quarantined < limit, nil
}

// commit turns the reservation into an allocation and records it in the
// workload's history, in one commit.
func (a *allocation) commit(ctx context.Context) error {
	m := a.m
	final := a.att
	// In the order the pools were asked for: a replaced candidate was
	// appended at the end.
	rank := map[string]int{}
	for i, p := range a.pools {
		rank[p.Name] = i
	}
	final.Addresses = append([]AllocatedIP(nil), a.att.Addresses...)
	sort.SliceStable(final.Addresses, func(i, j int) bool { return rank[final.Addresses[i].Pool] < rank[final.Addresses[j].Pool] })
	final.State = StateAllocated
	final.Skipped = a.skipped
	now := m.now().UTC()
	for {
		epCond, epOps, err := a.history(ctx, final.Addresses, now, nil)
		if err != nil {
			return err
		}
		conds := []Cond{{Key: attachmentKey(a.key), Revision: a.attRev}, epCond}
		attVal, err := json.Marshal(final)
		if err != nil {
			return err
		}
		ops := append([]Op{{Key: attachmentKey(a.key), Value: attVal}}, epOps...)
		for _, ip := range final.Addresses {
			addr := ip.Address.Addr()
			rec := AddressRecord{Pool: ip.Pool, Address: addr, State: StateAllocated, Owner: a.key, Node: m.node, Since: now}
			val, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			conds = append(conds, Cond{Key: addrKey(domainOf(ip), addr), Revision: a.addrRev[addr]})
			ops = append(ops, Op{Key: addrKey(domainOf(ip), addr), Value: val})
		}
		if _, err := m.store.Commit(ctx, conds, ops); err != nil {
			// A lost compare is most likely the workload's endpoint changed
			// under us: settle retries it, as an answer lost in transit of
			// a commit that did not land.
			_, err = a.settle(ctx, err, attVal, final.Addresses[0].Pool, "record the allocation in workload "+a.req.Workload)
			if errors.Is(err, errRetry) {
				continue
			}
			if err != nil {
				return err
			}
		}
		a.att = final
		return nil
	}
}

// allocateAtOnce makes an allocation that has nothing to vet in one
// commit: the attachment (allocated), an allocated record for each
// address, and the workload's history, under the compares the reserve and
// the final commit of a vetted allocation make (the attachment key absent,
// each address key absent or at its expired quarantine's revision, the
// endpoint unchanged). One commit is all or nothing, so a crash at any
// point leaves no trace or a complete allocation, never a reservation for
// Recover. A lost race is retried within MaxRetries with fresh candidates;
// an answer lost in transit (ErrOutcomeUnknown) is settled by re-reading
// the attachment key, as for the reserve.
func (a *allocation) allocateAtOnce(ctx context.Context) error {
	m := a.m
	names := make([]string, len(a.pools))
	for i, p := range a.pools {
		names[i] = p.Name
	}
	what := fmt.Sprintf("allocate container %s interface %s from pool(s) %s", input.Cut(a.key.ContainerID), a.key.Interface, strings.Join(names, ", "))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := m.now().UTC()
		att, conds, ops, claimed, err := a.pickAll(ctx, now)
		if err != nil {
			return err
		}
		attVal, err := json.Marshal(att)
		if err == nil {
			var epCond Cond
			var epOps []Op
			// The first round reuses the endpoint read for the sticky
			// addresses (one read less, a round trip on etcd); after a
			// lost compare it is read afresh.
			cached := a.ep
			a.ep = nil
			if epCond, epOps, err = a.history(ctx, att.Addresses, now, cached); err == nil {
				conds = append(conds, Cond{Key: attachmentKey(a.key), Revision: 0}, epCond)
				ops = append(append(ops, Op{Key: attachmentKey(a.key), Value: attVal}), epOps...)
			}
		}
		var rev int64
		if err == nil {
			rev, err = m.store.Commit(ctx, conds, ops)
		}
		// Committed or not, the store now says whether they are taken.
		for _, c := range claimed {
			m.claims.release(c.domain, c.addr)
		}
		if err != nil {
			// A lost compare here means an address was taken by another
			// node or the workload's endpoint changed (unless the
			// attachment itself did): the next round reads both afresh.
			rev, err = a.settle(ctx, err, attVal, a.pools[0].Name, what)
			if errors.Is(err, errRetry) {
				continue
			}
			if err != nil {
				return err
			}
		}
		a.att, a.attRev = att, rev
		return nil
	}
}

// errRetry is settle's "spend no more thought: pick afresh and commit
// again" (a retry has been spent).
var errRetry = errors.New("retry the allocation's commit")

// settle decides what a failed commit of the attachment (expected at
// a.attRev, attVal its new value) means, from the attachment key, which
// every writer of it compares: a lost compare on another key, or a commit
// that did not land, is retried (errRetry, a retry spent); a commit whose
// outcome was unknown but that did land returns its revision; a changed
// attachment means another request for the same key (try again); anything
// else is an error naming what was being committed.
func (a *allocation) settle(ctx context.Context, err error, attVal []byte, pool, what string) (int64, error) {
	busy := func() error {
		return ipamErr(ipamapi.CodeTryAgain, a.skipped, "another request for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
	}
	switch {
	case errors.Is(err, ErrCompareFailed):
		cur, gerr := a.m.store.Get(ctx, attachmentKey(a.key))
		if gerr != nil {
			return 0, fmt.Errorf("%s: re-read after a lost race: %w", what, gerr)
		}
		if cur.Revision != a.attRev {
			return 0, busy()
		}
		if err := a.spendRetry(ctx, pool, what); err != nil {
			return 0, err
		}
		return 0, errRetry
	case errors.Is(err, ErrOutcomeUnknown):
		cur, gerr := a.m.store.Get(ctx, attachmentKey(a.key))
		switch {
		case gerr != nil:
			return 0, fmt.Errorf("%s: %w (and the re-read failed: %v)", what, err, gerr)
		case cur.Revision != a.attRev && string(cur.Value) == string(attVal):
			return cur.Revision, nil
		case cur.Revision == a.attRev:
			if err := a.spendRetry(ctx, pool, what+" (outcome unknown)"); err != nil {
				return 0, err
			}
			return 0, errRetry
		default:
			return 0, busy()
		}
	}
	return 0, fmt.Errorf("%s: %w", what, err)
}

// pickAll claims a free candidate in each pool and returns the allocated
// attachment with the address records' compares and writes, and the
// claims, which the caller releases once its commit has answered. On an
// error nothing stays claimed.
func (a *allocation) pickAll(ctx context.Context, now time.Time) (Attachment, []Cond, []Op, []claimKey, error) {
	m := a.m
	att := a.att
	att.State = StateAllocated
	att.Addresses = nil
	var (
		conds   []Cond
		ops     []Op
		claimed []claimKey
		full    []*Error // pools found full: every one is named
	)
	fail := func(err error) (Attachment, []Cond, []Op, []claimKey, error) {
		for _, c := range claimed {
			m.claims.release(c.domain, c.addr)
		}
		return Attachment{}, nil, nil, nil, err
	}
	for _, p := range a.pools {
		if _, ok := m.pool(p.Name); !ok {
			return fail(ipamErr(ipamapi.CodeUnknownPool, nil, "pool %q was removed", p.Name))
		}
		addr, rev, err := a.candidate(ctx, p)
		if e := poolFull(err); e != nil {
			full = append(full, e)
			continue
		}
		if err != nil {
			return fail(err)
		}
		claimed = append(claimed, claimKey{p.Domain, addr})
		rec := AddressRecord{Pool: p.Name, Address: addr, State: StateAllocated, Owner: a.key, Node: m.node, Since: now}
		val, err := json.Marshal(rec)
		if err != nil {
			return fail(fmt.Errorf("pool %q: encode %s: %w", p.Name, addr, err))
		}
		att.Addresses = append(att.Addresses, allocatedIP(p, addr))
		conds = append(conds, Cond{Key: addrKey(p.Domain, addr), Revision: rev})
		ops = append(ops, Op{Key: addrKey(p.Domain, addr), Value: val})
	}
	if len(full) > 0 {
		return fail(poolsFailed(a.skipped, full))
	}
	return att, conds, ops, claimed, nil
}

// history reads the workload's endpoint (or takes cached, when not nil)
// and returns the compare and the writes that add an entry for each of
// addrs to its history (one key each; the oldest beyond MaxHistory
// deleted) and update the endpoint, for the commit that makes the
// allocation. What it writes does not grow with the history.
func (a *allocation) history(ctx context.Context, addrs []AllocatedIP, now time.Time, cached *endpointRead) (Cond, []Op, error) {
	m := a.m
	var (
		h   endpointHead
		rev int64
		err error
	)
	if cached != nil {
		h, rev = cached.head, cached.rev
	} else if h, rev, err = m.headForWrite(ctx, a.req.Workload); err != nil {
		return Cond{}, nil, err
	}
	var entries []HistoryEntry
	for _, ip := range addrs {
		var sk []SkippedIP
		for _, s := range a.skipped {
			if s.Pool == ip.Pool {
				sk = append(sk, s)
			}
		}
		entries = append(entries, HistoryEntry{
			Address: ip.Address.Addr(), Pool: ip.Pool, ContainerID: a.key.ContainerID, Interface: a.key.Interface,
			Node: m.node, AllocatedAt: now, Skipped: sk, Origin: a.req.Origin,
		})
	}
	h.Workload = a.req.Workload
	h.Last = append([]lastAddr(nil), h.Last...)
	h.Open = append([]openEntry(nil), h.Open...)
	ops, err := appendHistory(a.req.Workload, &h, entries, m.maxHist)
	if err != nil {
		return Cond{}, nil, err
	}
	val, err := json.Marshal(h)
	if err != nil {
		return Cond{}, nil, fmt.Errorf("encode workload %q: %w", a.req.Workload, err)
	}
	ops = append(ops, Op{Key: workloadKey(a.req.Workload), Value: val})
	return Cond{Key: workloadKey(a.req.Workload), Revision: rev}, ops, nil
}

func allocatedIP(p *Pool, addr netip.Addr) AllocatedIP {
	return AllocatedIP{Pool: p.Name, Domain: p.Domain, Address: netip.PrefixFrom(addr, p.Subnet.Bits()), Gateway: p.Gateway, Routes: p.Routes, VLAN: p.VLAN}
}

// rollback releases what this allocation reserved, with a context of its
// own: a request that was cancelled still cleans up.
func (a *allocation) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	if err := a.m.dropReservation(ctx, a.key, a.attRev, a.att); err != nil {
		a.m.log.Error("could not release a failed allocation's reservation; GC and the next start will", "container_id", a.key.ContainerID, "interface", a.key.Interface, "error", err)
	}
}

// dropReservation deletes a reserved attachment and its reserved address
// records, only if the attachment is still at rev.
func (m *IPAM) dropReservation(ctx context.Context, key AttachmentKey, rev int64, att Attachment) error {
	conds, ops, err := m.dropOps(ctx, key, rev, att)
	if err != nil {
		return err
	}
	_, err = m.store.Commit(ctx, conds, ops)
	return err
}

// dropOps returns the compares and deletes that remove key's attachment
// att, only if it is still at rev, with the address records it still owns
// (each at the revision read now).
func (m *IPAM) dropOps(ctx context.Context, key AttachmentKey, rev int64, att Attachment) ([]Cond, []Op, error) {
	conds := []Cond{{Key: attachmentKey(key), Revision: rev}}
	ops := []Op{{Key: attachmentKey(key), Delete: true}}
	for _, ip := range att.Addresses {
		k := addrKey(domainOf(ip), ip.Address.Addr())
		e, err := m.store.Get(ctx, k)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", ip.Address.Addr(), err)
		}
		if owned(e, key) {
			conds = append(conds, Cond{Key: k, Revision: e.Revision})
			ops = append(ops, Op{Key: k, Delete: true})
		}
	}
	return conds, ops, nil
}

func owned(e Entry, key AttachmentKey) bool {
	if e.Revision == 0 {
		return false
	}
	var rec AddressRecord
	if json.Unmarshal(e.Value, &rec) != nil {
		return false
	}
	return rec.Owner == key && rec.State != StateQuarantined
}

type attEntry struct {
	att Attachment
	rev int64
}

func (m *IPAM) getAttachment(ctx context.Context, key AttachmentKey) (attEntry, error) {
	e, err := m.store.Get(ctx, attachmentKey(key))
	if err != nil {
		return attEntry{}, fmt.Errorf("read the allocation of container %s interface %s: %w", key.ContainerID, key.Interface, err)
	}
	if e.Revision == 0 {
		return attEntry{}, nil
	}
	var att Attachment
	if err := json.Unmarshal(e.Value, &att); err != nil {
		return attEntry{}, fmt.Errorf("decode %s: %w", e.Key, err)
	}
	return attEntry{att: att, rev: e.Revision}, nil
}
