// Package etcdstore is IPAM's shared store: ipam.Store on an etcd cluster,
// for pools that several nodes hand out from (one VLAN across a rack).
//
// Each IPAM record is one etcd key under Config.Prefix; a Commit is one etcd
// transaction whose compares are the Conds (Revision 0: CreateRevision == 0;
// otherwise ModRevision == Revision) and whose operations are the Ops, so a
// commit is all or nothing and two nodes can never both create the same
// address key. Records with a TTL (quarantine) are attached to a lease;
// leases are shared per TTL rather than granted per key. Every call is
// bounded by Config.RequestTimeout, and while no member can be reached calls
// fail at once with an error wrapping ErrUnavailable instead of each waiting
// out its timeout.
//
// Besides the Store, the package offers what a fleet sharing pools needs:
// a node heartbeat lease with detection of two live agents using the same
// node name (Heartbeat, NodeAlive) and pool definition hashes (PoolHash).
// See README.md for the key layout.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// ErrUnavailable is wrapped by calls made while no etcd member can be
// reached: the request was not sent, so nothing was written.
var ErrUnavailable = errors.New("etcd unreachable")

// ErrOutcomeUnknown is wrapped by a Commit that was sent but got no answer
// (timeout, connection lost, leader lost mid-request): etcd may or may not
// have applied it. Re-read before deciding; a create-if-absent retried
// blindly would see its own earlier write as a lost race.
var ErrOutcomeUnknown = ipam.ErrOutcomeUnknown

// Store is ipam.Store on etcd.
type Store struct {
	cfg    Config
	cli    atomic.Pointer[clientv3.Client] // nil until connected (see New)
	closed atomic.Bool
	// connErr is why cli is still nil.
	connErr atomic.Pointer[error]
	desc    string // "etcd [endpoints]" for errors

	leaseMu sync.Mutex
	leases  map[int64]*ttlLease // by TTL in seconds

	bgCtx    context.Context // cancelled by Close: ends heartbeats
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

var _ ipam.Store = (*Store)(nil)

// ttlLease is a lease shared by the keys of one TTL that are written
// before usableUntil. It was granted for TTL+window, so a key attached
// inside the window lives at least its TTL and at most one window longer.
type ttlLease struct {
	id          clientv3.LeaseID
	usableUntil time.Time
}

// New validates cfg, reads its files and returns a store: an etcd that is
// down when the agent starts is not an error here (calls fail with
// ErrUnavailable until it is back), a bad config or a refused login is.
// The client lives until Close, not until ctx ends. With authentication,
// New waits up to DialTimeout for a member to log in to.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	pw, err := cfg.password()
	if err != nil {
		return nil, err
	}
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Keepalive pings find a silent (partitioned) member: after 10 s
		// (gRPC's minimum) + 3 s the connection is dropped, a reconnection
		// waits out DialTimeout, and from then on calls fail fast instead
		// of each waiting RequestTimeout. A member that died is noticed at
		// once (its sockets close).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tc,
		Username:             cfg.Username,
		Password:             pw,
		// The agent reports etcd's failures through its own errors; the
		// client's zap logger would print JSON past hclog.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// gRPC's default reconnect backoff grows to 120 s: after an etcd
			// outage IPAM would stay down for up to two minutes. Cap it so
			// the store is back within a couple of seconds of etcd.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		},
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Store{
		cfg: cfg, desc: fmt.Sprintf("etcd %v", cfg.Endpoints),
		leases: map[int64]*ttlLease{}, bgCtx: bg, bgCancel: cancel,
	}
	cc.Context = bg // Close aborts a connection attempt
	cli, err := clientv3.New(cc)
	if err == nil {
		s.cli.Store(cli)
		return s, nil
	}
	if !unreachable(err) {
		cancel()
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	// Only with authentication does the client talk to etcd in New (it
	// logs in). etcd being down at the agent's start must not keep IPAM
	// down once it is back: keep trying in the background, and fail calls
	// with ErrUnavailable meanwhile.
	s.connErr.Store(&err)
	s.bgWG.Add(1)
	go s.connect(cc)
	return s, nil
}

// unreachable: New failed for want of an answer, not for a wrong password.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded)
}

// connect retries clientv3.New until it succeeds or the store is closed.
func (s *Store) connect(cc clientv3.Config) {
	defer s.bgWG.Done()
	for {
		select {
		case <-s.bgCtx.Done():
			return
		case <-time.After(time.Second):
		}
		cli, err := clientv3.New(cc)
		if err == nil {
			s.cli.Store(cli)
			return
		}
		s.connErr.Store(&err)
	}
}

// c is the client; nil before the first connection succeeded (call checks).
func (s *Store) c() *clientv3.Client { return s.cli.Load() }

// Config is the store's configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Client is the underlying etcd client, for tests and tools; nil until
// connected.
func (s *Store) Client() *clientv3.Client { return s.c() }

// Close stops the heartbeats (revoking their leases) and closes the client,
// if it ever connected.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.bgCancel()
	s.bgWG.Wait()
	if cli := s.c(); cli != nil {
		return cli.Close()
	}
	return nil
}

// call starts a call: it refuses a closed store, fails fast while no member
// is reachable, and bounds ctx by RequestTimeout.
func (s *Store) call(ctx context.Context, what string) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("%s: %s: %w", s.desc, what, ipam.ErrStoreClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", s.desc, what, err)
	}
	// TRANSIENT_FAILURE: every member failed its last connection attempt
	// (gRPC keeps retrying in the background). Waiting for the timeout
	// would only make every allocation on the node slow to fail.
	cli := s.c()
	if cli == nil {
		why := "not connected yet"
		if e := s.connErr.Load(); e != nil {
			why += ": " + (*e).Error()
		}
		return nil, nil, fmt.Errorf("%s: %s: %w: %s (retrying in the background)", s.desc, what, ErrUnavailable, why)
	}
	if st := cli.ActiveConnection().GetState(); st == connectivity.TransientFailure {
		return nil, nil, fmt.Errorf("%s: %s: %w: no member answers (retrying in the background)", s.desc, what, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	// A member that has lost its leader answers "no leader" at once instead
	// of holding the request until the timeout: during an election calls
	// fail fast and, unlike a timeout, certainly unapplied.
	return clientv3.WithRequireLeader(ctx), cancel, nil
}

// wrap names the call and the endpoints, and says when the request timeout
// was what ended it.
func (s *Store) wrap(ctx context.Context, what string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %s: %w", s.desc, what, ipam.ErrStoreClosed)
	}
	if errors.Is(err, rpctypes.ErrNoLeader) {
		// An election: the member refused the request, nothing was done.
		return fmt.Errorf("%s: %s: %w: %w", s.desc, what, ErrUnavailable, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: no answer within etcd.request_timeout %v: %w", s.desc, what, s.cfg.RequestTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", s.desc, what, err)
}

// wrapRead is wrap for a read (Get, List): a read that got no answer
// within the request timeout, or whose connection failed, changed nothing,
// and it is what reads see while a member restarts or the cluster elects a
// leader; so, unless the caller's own context ended, it wraps
// ErrUnavailable like a call refused at once, and callers may wait and read
// again.
func (s *Store) wrapRead(parent, cctx context.Context, what string, err error) error {
	if parent.Err() == nil && !s.closed.Load() &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(cctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.Unavailable) {
		return fmt.Errorf("%s: %s: %w: no answer within etcd.request_timeout %v: %w", s.desc, what, ErrUnavailable, s.cfg.RequestTimeout, err)
	}
	return s.wrap(cctx, what, err)
}

func (s *Store) key(k string) string { return s.cfg.Prefix + k }

func checkKey(k string) error {
	if k == "" || strings.IndexByte(k, 0) >= 0 {
		return fmt.Errorf("invalid key %q", k)
	}
	return nil
}

// Get implements ipam.Store.
func (s *Store) Get(ctx context.Context, key string) (ipam.Entry, error) {
	if err := checkKey(key); err != nil {
		return ipam.Entry{}, fmt.Errorf("%s: get: %w", s.desc, err)
	}
	cctx, cancel, err := s.call(ctx, "get "+key)
	if err != nil {
		return ipam.Entry{}, err
	}
	defer cancel()
	resp, err := s.c().Get(cctx, s.key(key))
	if err != nil {
		return ipam.Entry{}, s.wrapRead(ctx, cctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return ipam.Entry{Key: key}, nil
	}
	kv := resp.Kvs[0]
	return ipam.Entry{Key: key, Value: kv.Value, Revision: kv.ModRevision}, nil
}

// List implements ipam.Store: one range read, so the entries are a
// consistent snapshot at one revision.
func (s *Store) List(ctx context.Context, prefix string) ([]ipam.Entry, error) {
	cctx, cancel, err := s.call(ctx, "list "+prefix)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.c().Get(cctx, s.key(prefix), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.wrapRead(ctx, cctx, "list "+prefix, err)
	}
	out := make([]ipam.Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, ipam.Entry{Key: strings.TrimPrefix(string(kv.Key), s.cfg.Prefix), Value: kv.Value, Revision: kv.ModRevision})
	}
	return out, nil
}

// Commit implements ipam.Store as one etcd transaction.
func (s *Store) Commit(ctx context.Context, conds []ipam.Cond, ops []ipam.Op) (int64, error) {
	for _, c := range conds {
		if err := checkKey(c.Key); err != nil {
			return 0, fmt.Errorf("%s: commit: condition: %w", s.desc, err)
		}
	}
	// etcd refuses a transaction that writes one key twice; the Store
	// contract applies ops in order, so the last op of a key is what it
	// leaves behind.
	last := map[string]int{}
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return 0, fmt.Errorf("%s: commit: %w", s.desc, err)
		}
		last[op.Key] = i
	}
	cctx, cancel, err := s.call(ctx, "commit")
	if err != nil {
		return 0, err
	}
	defer cancel()

	cmps := make([]clientv3.Cmp, 0, len(conds))
	for _, c := range conds {
		if c.Revision == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.key(c.Key)), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.key(c.Key)), "=", c.Revision))
		}
	}
	var leased []int64 // TTL buckets used, to drop a lease etcd no longer has
	thens := make([]clientv3.Op, 0, len(last))
	for i, op := range ops {
		if last[op.Key] != i {
			continue
		}
		switch {
		case op.Delete:
			thens = append(thens, clientv3.OpDelete(s.key(op.Key)))
		case op.TTL > 0:
			id, bucket, err := s.lease(cctx, op.TTL)
			if err != nil {
				return 0, s.wrap(cctx, "commit: lease for "+op.Key, err)
			}
			leased = append(leased, bucket)
			thens = append(thens, clientv3.OpPut(s.key(op.Key), string(op.Value), clientv3.WithLease(id)))
		default:
			thens = append(thens, clientv3.OpPut(s.key(op.Key), string(op.Value)))
		}
	}
	resp, err := s.c().Txn(cctx).If(cmps...).Then(thens...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// Only possible if someone revoked our lease or etcd lost it;
			// forget it so that the next commit gets a fresh one.
			s.dropLeases(leased)
			return 0, s.wrap(cctx, "commit", err)
		}
		if errors.Is(err, rpctypes.ErrNoLeader) {
			return 0, fmt.Errorf("%s: commit: %w: %w", s.desc, ErrUnavailable, err)
		}
		if !ambiguous(err) {
			return 0, s.wrap(cctx, "commit", err) // refused: nothing applied
		}
		return 0, fmt.Errorf("%w (re-read before retrying): %w", ErrOutcomeUnknown, s.wrap(cctx, "commit", err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: commit: %w", s.desc, ipam.ErrCompareFailed)
	}
	return resp.Header.Revision, nil
}

// ambiguous: the request may have reached etcd and been applied, although
// the answer is an error (timeouts, lost connections, a leader lost during
// the request). An error etcd answered with a definite refusal (a bad
// request, no space, permission denied, an unknown lease) is not.
func ambiguous(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	} else {
		return true
	}
	switch code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated,
		codes.ResourceExhausted, codes.NotFound, codes.OutOfRange, codes.Unimplemented, codes.AlreadyExists:
		return false
	}
	return true
}

// lease returns a lease under which a key lives at least ttl, reusing one
// lease per TTL (rounded up to seconds) for a window of ttl/10 (at least a
// second): a burst of quarantines costs one grant, not one each.
func (s *Store) lease(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, int64, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	window := max(time.Duration(secs)*time.Second/10, time.Second)
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	now := time.Now()
	if l := s.leases[secs]; l != nil && now.Before(l.usableUntil) {
		return l.id, secs, nil
	}
	// now is taken before the grant: the lease starts on the server no
	// earlier, so it outlives usableUntil+ttl.
	resp, err := s.c().Grant(ctx, secs+int64((window+time.Second-1)/time.Second))
	if err != nil {
		return 0, secs, fmt.Errorf("grant a %ds lease: %w", secs, err)
	}
	s.leases[secs] = &ttlLease{id: resp.ID, usableUntil: now.Add(window)}
	return resp.ID, secs, nil
}

func (s *Store) dropLeases(buckets []int64) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	for _, b := range buckets {
		delete(s.leases, b)
	}
}

// Ping reads one key with a bound: nil when the store can serve calls now
// (for readiness).
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.Get(ctx, "meta/ping")
	return err
}
