package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// Node liveness. Each agent holds a lease as its heartbeat; the key
// nodes/<node>/live is attached to it, so it disappears on its own when the
// agent stops renewing (kill -9, power loss, partition). Allocations never
// hang on a lease: another node's allocations may be reclaimed only once
// NodeAlive says that node's heartbeat has been gone for a grace period.
//
//	nodes/<node>/live               NodeInfo of the agent holding the name (leased)
//	nodes/<node>/seen               SeenRecord: when the holder was last known alive (no lease)
//	nodes/<node>/claims/<instance>  NodeInfo of a second live agent with the same name (leased)

// DefaultHeartbeatTTL is the heartbeat lease's TTL: a dead agent's node
// key is gone this long after its last renewal.
const DefaultHeartbeatTTL = 10 * time.Second

// SeenInterval is how often a holder refreshes nodes/<node>/seen. It bounds
// the error of NodeAlive's expiredAt (which errs late, never early) and
// costs one write per node per interval.
const SeenInterval = 30 * time.Second

// ErrDuplicateNode is wrapped by a Heartbeat's Err when another live agent
// uses the same node name: allocations recorded under one name by two
// agents would be reclaimed by the wrong one.
var ErrDuplicateNode = errors.New("two live agents use the same node name")

// NodeInfo identifies one running agent.
type NodeInfo struct {
	Node     string `json:"node"`
	Instance string `json:"instance"` // random, new at every start
	Hostname string `json:"hostname"`
	PID      int    `json:"pid"`
	// BootID is the kernel's boot id: with PID, it tells a record left by
	// a dead agent of this very host (kill -9, restarted at once) from a
	// live twin.
	BootID     string    `json:"boot_id"`
	Started    time.Time `json:"started"`
	TTLSeconds int64     `json:"ttl_seconds"`
}

func (n NodeInfo) String() string {
	return fmt.Sprintf("instance %s (host %s, pid %d, started %s)", n.Instance, n.Hostname, n.PID, n.Started.UTC().Format(time.RFC3339))
}

// SeenRecord is nodes/<node>/seen.
type SeenRecord struct {
	Instance        string    `json:"instance"`
	At              time.Time `json:"at"` // the writer's clock
	TTLSeconds      int64     `json:"ttl_seconds"`
	IntervalSeconds int64     `json:"interval_seconds"`
	// Stopped: written by a clean stop that revoked the lease at At.
	Stopped bool `json:"stopped,omitempty"`
}

// DuplicateNodeError names the other agent.
type DuplicateNodeError struct {
	Node  string
	Other NodeInfo
}

func (e *DuplicateNodeError) Error() string {
	return fmt.Sprintf("node name %q is also used by another live agent, %s: give every agent its own node_name (SPIDERPOOL_NODE_NAME)", e.Node, e.Other)
}

func (e *DuplicateNodeError) Unwrap() error { return ErrDuplicateNode }

func nodeKey(node, leaf string) string { return "nodes/" + url.PathEscape(node) + "/" + leaf }

// Heartbeat is a running node heartbeat; see Store.Heartbeat.
type Heartbeat struct {
	s    *Store
	node string
	info NodeInfo
	ttl  time.Duration

	cancel context.CancelFunc
	kaCtx  context.Context // the loop's: ends the lease keepalive on Stop
	done   chan struct{}

	mu       sync.Mutex
	err      error
	lease    clientv3.LeaseID
	leaseOK  bool // false: the lease expired or was never granted
	lastSeen time.Time
	kaDone   <-chan *clientv3.LeaseKeepAliveResponse
}

// Heartbeat starts holding node's heartbeat lease, with the given TTL (0:
// DefaultHeartbeatTTL), renewing it until Stop or Close. The first round
// (grant, claim the name) is done before it returns, so Err is meaningful
// at once; after that a round runs every TTL/3.
//
// A second live agent with the same name is reported by both: the newcomer
// finds the name held and records a claim under its own lease, the holder
// finds the claim; Err of each wraps ErrDuplicateNode naming the other. The
// newcomer keeps its claim and takes the name over when the holder's lease
// ends. A record left by a dead agent of this same host and boot (a pid
// that no longer runs) is taken over at once rather than reported.
//
// Errors are only for bad arguments and a closed store: etcd being
// unreachable is reported by Err, and the heartbeat recovers by itself.
func (s *Store) Heartbeat(ctx context.Context, node string, ttl time.Duration) (*Heartbeat, error) {
	if node == "" || strings.ContainsAny(node, "\x00/") {
		return nil, fmt.Errorf("heartbeat: invalid node name %q", node)
	}
	if ttl == 0 {
		ttl = DefaultHeartbeatTTL
	}
	if ttl < 2*time.Second {
		// etcd's own minimum TTL is 1.5 election timeouts.
		return nil, fmt.Errorf("heartbeat: TTL %v is below 2s", ttl)
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: heartbeat: %w", s.desc, ipam.ErrStoreClosed)
	}
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	idb := make([]byte, 8)
	rand.Read(idb)
	ttl = ttl.Round(time.Second)
	hb := &Heartbeat{
		s: s, node: node, ttl: ttl, done: make(chan struct{}),
		info: NodeInfo{Node: node, Instance: hex.EncodeToString(idb), Hostname: host, PID: os.Getpid(),
			BootID: strings.TrimSpace(string(boot)), Started: time.Now().UTC(), TTLSeconds: int64(ttl / time.Second)},
	}
	lctx, cancel := context.WithCancel(s.bgCtx)
	hb.cancel, hb.kaCtx = cancel, lctx
	hb.round(ctx)
	s.bgWG.Add(1)
	go hb.loop(lctx)
	return hb, nil
}

// Info is this agent's record.
func (h *Heartbeat) Info() NodeInfo { return h.info }

// Err is nil while this agent holds its node name alone; otherwise why not
// (wraps ErrDuplicateNode, ErrUnavailable, ...).
func (h *Heartbeat) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *Heartbeat) setErr(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

// Stop ends the heartbeat: the lease is revoked (the live key and any
// claim go at once) and the seen record says when. Stop is idempotent.
func (h *Heartbeat) Stop() {
	h.cancel()
	<-h.done
}

func (h *Heartbeat) loop(ctx context.Context) {
	defer h.s.bgWG.Done()
	defer close(h.done)
	t := time.NewTicker(h.ttl / 3)
	defer t.Stop()
	for {
		h.mu.Lock()
		ka := h.kaDone
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			h.stop()
			return
		case _, ok := <-ka:
			if ok {
				continue // a renewal answered
			}
			// The keepalive gave up: the lease expired (etcd down or us
			// partitioned for a whole TTL). Start over with a new one.
			h.mu.Lock()
			h.leaseOK, h.kaDone = false, nil
			h.mu.Unlock()
			h.round(ctx)
		case <-t.C:
			h.round(ctx)
		}
	}
}

// stop revokes the lease and records the stop, bounded by the request
// timeout (Close of the store waits for it).
func (h *Heartbeat) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.RequestTimeout)
	defer cancel()
	h.mu.Lock()
	lease, ok := h.lease, h.leaseOK
	h.mu.Unlock()
	if h.s.c() == nil {
		return
	}
	// Judge by the record's instance, not by h.lease: the record may be
	// ours under a lease this heartbeat no longer names (a round cut short
	// by the stop, or two rounds that re-attached it). End that lease too,
	// or the node would look alive until it expires.
	live, err := h.s.c().Get(ctx, h.s.key(nodeKey(h.node, "live")))
	held := false
	if err == nil && len(live.Kvs) == 1 {
		var rec NodeInfo
		if json.Unmarshal(live.Kvs[0].Value, &rec) == nil && rec.Instance == h.info.Instance {
			held = true
			if l := clientv3.LeaseID(live.Kvs[0].Lease); l != 0 && (!ok || l != lease) {
				h.s.c().Revoke(ctx, l)
			}
		}
	}
	if ok {
		h.s.c().Revoke(ctx, lease)
	}
	if held {
		h.writeSeen(ctx, true)
	}
}

func (h *Heartbeat) writeSeen(ctx context.Context, stopped bool) error {
	rec, _ := json.Marshal(SeenRecord{Instance: h.info.Instance, At: time.Now().UTC(), TTLSeconds: h.info.TTLSeconds,
		IntervalSeconds: int64(SeenInterval / time.Second), Stopped: stopped})
	_, err := h.s.c().Put(ctx, h.s.key(nodeKey(h.node, "seen")), string(rec))
	if err == nil {
		h.mu.Lock()
		h.lastSeen = time.Now()
		h.mu.Unlock()
	}
	return err
}

// round does one heartbeat step: have a lease, hold the name or claim it,
// and look for claims of others.
func (h *Heartbeat) round(ctx context.Context) {
	if err := h.roundErr(ctx); err != nil {
		h.setErr(err)
	}
}

func (h *Heartbeat) roundErr(ctx context.Context) error {
	cctx, cancel, err := h.s.call(ctx, "heartbeat of node "+h.node)
	if err != nil {
		return err
	}
	defer cancel()
	h.mu.Lock()
	lease, ok := h.lease, h.leaseOK
	h.mu.Unlock()
	if !ok {
		g, err := h.s.c().Grant(cctx, h.info.TTLSeconds)
		if err != nil {
			return h.s.wrap(cctx, "heartbeat: grant lease", err)
		}
		// The keepalive lives as long as the heartbeat, not this round.
		ka, err := h.s.c().KeepAlive(h.kaCtx, g.ID)
		if err != nil {
			return h.s.wrap(cctx, "heartbeat: keep the lease alive", err)
		}
		lease = g.ID
		h.mu.Lock()
		h.lease, h.leaseOK, h.kaDone = g.ID, true, ka
		h.mu.Unlock()
	}
	liveKey := h.s.key(nodeKey(h.node, "live"))
	me, _ := json.Marshal(h.info)
	for attempt := 0; ; attempt++ {
		resp, err := h.s.c().Txn(cctx).
			If(clientv3.Compare(clientv3.CreateRevision(liveKey), "=", 0)).
			Then(clientv3.OpPut(liveKey, string(me), clientv3.WithLease(lease))).
			Else(clientv3.OpGet(liveKey)).Commit()
		if err != nil {
			return h.s.wrap(cctx, "heartbeat: claim node name", err)
		}
		if resp.Succeeded {
			h.mu.Lock()
			h.lastSeen = time.Time{} // a new holding: record it now
			h.mu.Unlock()
			break
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // gone in between
		}
		var other NodeInfo
		if err := json.Unmarshal(kvs[0].Value, &other); err != nil {
			return fmt.Errorf("%s: heartbeat: %s holds %q, not a node record: %w", h.s.desc, liveKey, kvs[0].Value, err)
		}
		if other.Instance == h.info.Instance {
			if kvs[0].Lease != int64(lease) {
				// Ours, but from a lease that is gone: re-attach.
				if _, err := h.s.c().Put(cctx, liveKey, string(me), clientv3.WithLease(lease)); err != nil {
					return h.s.wrap(cctx, "heartbeat: renew node key", err)
				}
			}
			break
		}
		if attempt == 0 && h.deadTwin(other) {
			// kill -9 and restarted on this host: the old record is ours
			// in all but instance. Delete it only if unchanged.
			if _, err := h.s.c().Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(liveKey), "=", kvs[0].ModRevision)).
				Then(clientv3.OpDelete(liveKey)).Commit(); err != nil {
				return h.s.wrap(cctx, "heartbeat: remove the record of a dead agent", err)
			}
			continue
		}
		// A live twin: record our claim, so that it reports us too.
		if _, err := h.s.c().Put(cctx, h.s.key(nodeKey(h.node, "claims/"+h.info.Instance)), string(me), clientv3.WithLease(lease)); err != nil {
			return h.s.wrap(cctx, "heartbeat: record claim", err)
		}
		return &DuplicateNodeError{Node: h.node, Other: other}
	}
	// We hold the name. Drop a claim we may have made before taking over,
	// refresh the seen record, and look for claims of others.
	h.s.c().Delete(cctx, h.s.key(nodeKey(h.node, "claims/"+h.info.Instance)))
	h.mu.Lock()
	due := time.Since(h.lastSeen) >= SeenInterval
	h.mu.Unlock()
	if due {
		if err := h.writeSeen(cctx, false); err != nil {
			return h.s.wrap(cctx, "heartbeat: write seen record", err)
		}
	}
	claims, err := h.s.c().Get(cctx, h.s.key(nodeKey(h.node, "claims/")), clientv3.WithPrefix())
	if err != nil {
		return h.s.wrap(cctx, "heartbeat: read claims", err)
	}
	for _, kv := range claims.Kvs {
		var other NodeInfo
		if json.Unmarshal(kv.Value, &other) == nil && other.Instance != h.info.Instance {
			return &DuplicateNodeError{Node: h.node, Other: other}
		}
	}
	h.setErr(nil)
	return nil
}

// deadTwin: the record was written on this host during this boot by a
// process that is gone.
func (h *Heartbeat) deadTwin(other NodeInfo) bool {
	if other.BootID == "" || other.BootID != h.info.BootID || other.PID <= 0 || other.PID == h.info.PID {
		return false
	}
	return syscall.Kill(other.PID, 0) == syscall.ESRCH
}

// NodeAlive tells whether node's heartbeat is live. When it is not,
// expiredAt is the latest time the node may still have been alive (from
// its seen record: a clean stop's time, or the last refresh plus
// SeenInterval plus the lease TTL - late, never early, given clocks within
// the grace period of each other); zero when the store has never seen the
// node. A garbage collector reclaims the node's allocations only when
// time.Since(expiredAt) exceeds its grace period.
func (s *Store) NodeAlive(ctx context.Context, node string) (alive bool, expiredAt time.Time, err error) {
	cctx, cancel, err := s.call(ctx, "node "+node+" alive")
	if err != nil {
		return false, time.Time{}, err
	}
	defer cancel()
	resp, err := s.c().Txn(cctx).Then(
		clientv3.OpGet(s.key(nodeKey(node, "live"))),
		clientv3.OpGet(s.key(nodeKey(node, "seen")))).Commit()
	if err != nil {
		return false, time.Time{}, s.wrap(cctx, "node "+node+" alive", err)
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return true, time.Time{}, nil
	}
	seen := resp.Responses[1].GetResponseRange().Kvs
	if len(seen) == 0 {
		return false, time.Time{}, nil
	}
	var rec SeenRecord
	if err := json.Unmarshal(seen[0].Value, &rec); err != nil {
		return false, time.Time{}, fmt.Errorf("%s: node %s: seen record %q: %w", s.desc, node, seen[0].Value, err)
	}
	if rec.Stopped {
		return false, rec.At, nil
	}
	return false, rec.At.Add(time.Duration(rec.IntervalSeconds+rec.TTLSeconds) * time.Second), nil
}
