package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/core/retry"
)

// sharedStore is the etcd store of the pools with store = "etcd", with
// this node's heartbeat and the pool definitions checked against the
// other nodes'.
type sharedStore struct {
	store *etcdstore.Store
	hb    *etcdstore.Heartbeat
	node  string
	log   hclog.Logger

	mu       sync.Mutex
	verified map[string]bool   // pool -> definition agrees with the store
	refused  map[string]string // pool -> why (another node's definition differs)
	checkErr string            // the last check that could not be made
	lastLog  string            // the store state last logged
	// moved is set once the address records of the old per-pool layout
	// are moved (ipam.MigrateKeys): until then no allocation is made, as
	// it could take an address an old record holds. blocked says why the
	// records cannot be used at all (an address held twice, a pool whose
	// domain moved); moveErr why the last attempt did not finish.
	moved   bool
	blocked string
	moveErr string
}

// poolsStore says which store the pools use. One agent uses one store for
// all its pools: an allocation writes its attachment and every address in
// one atomic commit, which cannot span two stores.
func poolsStore(cfg *config.Config, pools []*ipam.Pool) (string, error) {
	kind, first := "", ""
	for _, p := range pools {
		if kind == "" {
			kind, first = p.Store, p.Name
			continue
		}
		if p.Store != kind {
			return "", fmt.Errorf("IPAM config dir %s: pool %q uses store %q but pool %q uses %q: all pools of an agent must use one store", cfg.IPAMConfigDir, first, kind, p.Name, p.Store)
		}
	}
	if kind == ipam.StoreEtcd && len(cfg.Etcd.Endpoints) == 0 {
		return "", fmt.Errorf("IPAM config dir %s: pool %q has store = \"etcd\" but the agent's configuration has no etcd { endpoints = [...] } block", cfg.IPAMConfigDir, first)
	}
	if kind == "" {
		kind = ipam.StoreLocal
	}
	return kind, nil
}

// openShared connects to etcd (an etcd that is down is not an error: the
// store connects in the background) and starts this node's heartbeat.
func openShared(ctx context.Context, cfg *config.Config, node string, log hclog.Logger) (*sharedStore, error) {
	e := cfg.Etcd
	st, err := etcdstore.New(ctx, etcdstore.Config{
		Endpoints: e.Endpoints, Prefix: e.Prefix, DialTimeout: e.DialTimeout, RequestTimeout: e.RequestTimeout,
		TLS:      etcdstore.TLSConfig{CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile},
		Username: e.Username, PasswordFile: e.PasswordFile,
	})
	if err != nil {
		return nil, fmt.Errorf("IPAM: etcd block at %s: %w", e.DeclRange, err)
	}
	hb, err := st.Heartbeat(ctx, node, 0)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("IPAM: %w", err)
	}
	if err := hb.Err(); err != nil {
		log.Error("IPAM store: this node's heartbeat is not held", "node", node, "error", err)
	}
	return &sharedStore{store: st, hb: hb, node: node, log: log, verified: map[string]bool{}, refused: map[string]string{}}, nil
}

func (s *sharedStore) close() {
	s.hb.Stop()
	s.store.Close()
}

// definition is the pool as every node must define it, for the hash.
func definition(p *ipam.Pool) string {
	sp := p.Spec
	var routes []string
	for _, r := range p.Routes {
		routes = append(routes, fmt.Sprint(r))
	}
	fields := map[string]string{
		"subnet":             p.Subnet.String(),
		"ranges":             strings.Join(sp.Ranges, ","),
		"exclude":            strings.Join(sp.Exclude, ","),
		"gateway":            sp.Gateway,
		"routes":             strings.Join(routes, ","),
		"vlan":               strconv.Itoa(p.VLAN),
		"conflict_detection": strconv.FormatBool(p.ConflictDetection),
		"gateway_detection":  strconv.FormatBool(p.GatewayDetection),
		"quarantine":         p.Quarantine.String(),
	}
	// Nodes must agree on the domain: it is where the pool's addresses are
	// keyed. Absent for the default domain, so a definition recorded before
	// domains existed still matches.
	if p.Domain != ipam.DefaultDomain {
		fields["domain"] = p.Domain
	}
	return etcdstore.CanonicalDefinition(fields)
}

// forget drops what was checked (a reload brings new definitions).
func (s *sharedStore) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified, s.refused = map[string]bool{}, map[string]string{}
}

// checkPools checks each pool not yet checked against the definition the
// store records; etcd being down leaves it for the next round.
func (s *sharedStore) checkPools(ctx context.Context, pools []*ipam.Pool) {
	for _, p := range pools {
		s.mu.Lock()
		done := s.verified[p.Name] || s.refused[p.Name] != ""
		s.mu.Unlock()
		if done {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.store.PoolHash(cctx, p.Name, s.node, definition(p))
		cancel()
		s.mu.Lock()
		var mis *etcdstore.PoolMismatchError
		switch {
		case err == nil:
			s.verified[p.Name] = true
		case errors.As(err, &mis):
			s.refused[p.Name] = err.Error()
			s.log.Error("IPAM: refusing a pool whose definition differs from another node's", "pool", p.Name, "error", err)
		default:
			s.checkErr = err.Error()
		}
		s.mu.Unlock()
	}
}

// migrate moves the address records of the old per-pool layout once
// (every agent of a shared store tries; the move is idempotent), then
// checks the pools' domains against where their addresses are. It returns
// the error that must stop the agent (an address held twice, a pool moved
// to another domain); an unreachable etcd is left for the next round.
func (s *sharedStore) migrate(ctx context.Context, m *ipam.IPAM) error {
	s.mu.Lock()
	done := s.moved || s.blocked != ""
	s.mu.Unlock()
	if done {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := ipam.MigrateKeys(cctx, s.store)
	var dup *ipam.DuplicateError
	if err == nil && m != nil {
		if err = m.CheckDomains(cctx); err != nil && !errors.Is(err, ipam.ErrDomainMoved) {
			err = fmt.Errorf("check the pools' domains: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.moved, s.moveErr = true, ""
		if n > 0 {
			s.log.Info("moved address records to the per-domain layout", "records", n)
		}
		return nil
	case errors.As(err, &dup) || errors.Is(err, ipam.ErrDomainMoved):
		s.blocked = err.Error()
		s.log.Error("IPAM store cannot be used: allocations are refused", "error", err)
		return fmt.Errorf("IPAM store etcd: %w", err)
	default:
		s.moveErr = err.Error()
		return nil
	}
}

// usable says why an allocation from pools cannot be made now, or nil.
// Of the heartbeat's errors only a second agent with this node's name
// stops an allocation. One that failed because etcd did not answer does
// not: the store's own calls say whether etcd answers now (and wait for
// it, see rideOutage), and the next heartbeat round (within a third of its
// TTL) holds the name again. Refusing here would keep allocations failing
// for seconds after etcd is back.
func (s *sharedStore) usable(pools []string) error {
	if err := s.hb.Err(); err != nil && errors.Is(err, etcdstore.ErrDuplicateNode) {
		return &ipam.Error{Code: api.CodeNotReady, Msg: fmt.Sprintf("IPAM store (etcd) is not usable on node %s: %v; try again", s.node, err), Err: control.ErrNotReady}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked != "" {
		return &ipam.Error{Code: api.CodeInternal, Msg: s.blocked}
	}
	if !s.moved {
		return &ipam.Error{Code: api.CodeNotReady, Msg: fmt.Sprintf("IPAM store (etcd): the address records of the old per-pool layout are not moved yet (%s); try again", s.moveErr), Err: control.ErrNotReady}
	}
	for _, p := range pools {
		if why := s.refused[p]; why != "" {
			return &ipam.Error{Code: api.CodeMismatch, Msg: why}
		}
	}
	for _, p := range pools {
		if !s.verified[p] {
			return &ipam.Error{Code: api.CodeNotReady, Msg: fmt.Sprintf("pool %q: its definition is not yet checked against the etcd store (%s); try again", p, s.checkErr), Err: control.ErrNotReady}
		}
	}
	return nil
}

// status is the store's line in the IPAM status and readiness.
func (s *sharedStore) status() *api.StoreStatus {
	st := &api.StoreStatus{Kind: ipam.StoreEtcd, Node: s.node, Up: true}
	var why []string
	if err := s.hb.Err(); err != nil {
		why = append(why, err.Error())
	}
	s.mu.Lock()
	if s.blocked != "" {
		why = append(why, s.blocked)
	}
	var refused []string
	for p, r := range s.refused {
		refused = append(refused, p+": "+r)
	}
	s.mu.Unlock()
	sort.Strings(refused)
	why = append(why, refused...)
	if len(why) > 0 {
		st.Up, st.Error = false, strings.Join(why, "; ")
	}
	return st
}

// logChange logs the store going down (and why) or coming back, once per
// change: a duplicate node name or a refused pool must be in the log of
// every agent concerned, not only in the one that found it.
func (s *sharedStore) logChange() {
	st := s.status()
	now := st.Error
	s.mu.Lock()
	prev := s.lastLog
	s.lastLog = now
	s.mu.Unlock()
	switch {
	case now == prev:
	case now != "":
		s.log.Error("IPAM store is down: allocations fail until it is back", "node", s.node, "error", now)
	default:
		s.log.Info("IPAM store is back", "node", s.node)
	}
}

// outageBackoff bounds the pause between two attempts while etcd does not
// answer: a member restart or an election is over within a second or two,
// and an attempt while it is not is a fast failure, not a request.
const (
	outageBackoffMin = 50 * time.Millisecond
	outageBackoffMax = 250 * time.Millisecond
)

// etcdDown: err says etcd did not answer now (no member reachable, no
// leader, no answer in time). A commit whose outcome is unknown counts:
// repeating the whole allocation or release is safe (see rideOutage), and
// it settles the outcome by reading the attachment again.
func etcdDown(err error) bool {
	return errors.Is(err, etcdstore.ErrUnavailable) || errors.Is(err, ipam.ErrOutcomeUnknown)
}

// rideOutage runs op and, while it fails because etcd cannot answer (a
// member restarting, an election), runs it again with a short backoff for
// at most wait; then the last error is returned, saying how long it
// waited. op must be safe to repeat: IPAM's allocation and release are
// idempotent per (container id, interface), and an allocation that failed
// half-way left a reservation that the next attempt takes over.
func rideOutage(ctx context.Context, wait time.Duration, op func(context.Context) error) error {
	err := op(ctx)
	if err == nil || wait <= 0 || !etcdDown(err) {
		return err
	}
	start := time.Now()
	b := retry.Backoff{Min: outageBackoffMin, Max: outageBackoffMax}
	expired, err := b.Again(ctx, start.Add(wait), err, etcdDown, op)
	if expired {
		return fmt.Errorf("%w (waited %v, etcd.outage_wait)", err, time.Since(start).Round(time.Millisecond))
	}
	return err
}
