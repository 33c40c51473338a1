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
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
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
	// Links brings a workload's interface up for the probe (the daemon
	// wires in core/ipam/linkup); nil probes on the interface as it is.
	Links LinkUpper
	// NetnsGone tells GC whether a namespace path is gone; nil uses
	// NetnsGone (netns.go).
	NetnsGone func(path string) (bool, error)
	// CheckNetns vets a request's namespace path before anything is
	// reserved (an error names the field); nil uses CheckNetns.
	CheckNetns func(path string) error
	// AllocationTimeout is the deadline of an allocation
	// (ipam.allocation_timeout); 0 uses api.DefaultAllocationTimeout.
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
	// Busy lists the addresses other stations claimed on the wire
	// recently; candidate searches of detecting pools skip them. nil
	// skips none.
	Busy BusyAddresses
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
	busy    BusyAddresses

	// reload is held shared by every allocation and exclusively by
	// SetPools, so that no reservation lands in a range a reload is
	// checking for live addresses.
	reload sync.RWMutex
	mu     sync.RWMutex
	pools  map[string]*Pool
	claims claims // candidates being reserved by this agent
	hint   walkHint

	// inflight are the attachment keys this process is allocating now.
	inflight flights

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
		now: opts.Now, alive: opts.NodeAlive, busy: opts.Busy, suspects: map[AttachmentKey]suspect{},
	}
	if m.links == nil {
		m.links = asItIs{}
	}
	if m.gone == nil {
		m.gone = NetnsGone
	}
	if m.vetNS == nil {
		m.vetNS = CheckNetns
	}
	if m.timeout <= 0 {
		m.timeout = api.DefaultAllocationTimeout
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
	m.inflight.m = map[AttachmentKey]bool{}
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

func errCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return api.CodeBadRequest
	}
	return api.CodeInternal
}
