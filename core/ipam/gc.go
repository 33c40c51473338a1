// Garbage collection: Recover at start, and GC's two looks at attachments
// whose namespace is gone, dangling reservations and other nodes' expired
// allocations.

package ipam

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Recover releases the reservations of this node that no allocation is
// finishing: at start, every one of them (the agent that made them died;
// the store's lock says no other agent of this node runs). It returns how
// many attachments it dropped. Call it before serving.
func (m *IPAM) Recover(ctx context.Context) (int, error) {
	all, err := m.attachments(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range all {
		if e.att.State != StateReserved || e.att.Node != m.node {
			continue
		}
		if err := m.dropReservation(ctx, e.att.AttachmentKey, e.rev, e.att); err != nil && !errors.Is(err, ErrCompareFailed) {
			return n, fmt.Errorf("drop the dangling reservation of container %s interface %s: %w", e.att.ContainerID, e.att.Interface, err)
		}
		m.log.Warn("released a reservation left by an agent that stopped mid-allocation", "container_id", e.att.ContainerID, "interface", e.att.Interface)
		n++
	}
	// Address records whose owner does not list them (cannot happen with
	// atomic commits, but a store written by an older build might).
	err = m.eachPoolRecord(ctx, func(e Entry, rec AddressRecord) error {
		if rec.State != StateReserved || rec.Node != m.node {
			return nil
		}
		owner, err := m.getAttachment(ctx, rec.Owner)
		if err != nil {
			return err
		}
		if owner.rev == 0 {
			if err := m.deleteUnchanged(ctx, e); err != nil && !errors.Is(err, ErrCompareFailed) {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// GC runs one garbage collection pass. An allocation of this node whose
// namespace is gone becomes a suspect with its revision; a suspect seen
// gone again at least GCGrace later, with the record unchanged, is
// released (a compare on the revision, so an address re-allocated in
// between is never freed). This node's reservations are dropped once no
// allocation is making them and GCGrace passed, or once they outlived the
// allocation deadline (overdue). Allocations without a namespace path, or whose
// namespace cannot be examined, are never collected. Expired quarantine
// records are removed, and workloads no allocation names whose last
// activity is older than the retention are pruned (pruneWorkloads).
func (m *IPAM) GC(ctx context.Context) (api.GCResult, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	res := api.GCResult{Suspected: []AttachmentKey{}, Reclaimed: []AttachmentKey{}, GracePeriod: m.grace}
	all, err := m.attachments(ctx)
	if err != nil {
		return res, err
	}
	now := m.now()
	live := map[AttachmentKey]bool{}
	dead := map[string]bool{} // other nodes, asked once per pass
	for _, e := range all {
		att := e.att
		if att.Node != "" && att.Node != m.node {
			if m.reclaimable(ctx, att.Node, now, dead) {
				got, ok, err := m.release(ctx, att.AttachmentKey, e.rev)
				if err != nil {
					return res, err
				}
				if ok {
					res.Reclaimed = append(res.Reclaimed, att.AttachmentKey)
					for _, ip := range got.Addresses {
						m.metrics.GCReclaimed(ip.Pool)
					}
					m.log.Info("GC released an allocation of a node whose heartbeat expired", "node", att.Node, "container_id", att.ContainerID, "interface", att.Interface, "state", att.State)
				}
			}
			continue
		}
		if m.dangling(e) && now.Sub(att.Created) > m.grace || m.overdue(e, now) {
			if err := m.dropReservation(ctx, att.AttachmentKey, e.rev, att); err == nil {
				res.Reclaimed = append(res.Reclaimed, att.AttachmentKey)
				m.log.Info("GC released a reservation left by a failed allocation", "container_id", att.ContainerID, "interface", att.Interface)
			} else if !errors.Is(err, ErrCompareFailed) {
				return res, err
			}
			continue
		}
		// Another node's allocations were dealt with above.
		if att.State != StateAllocated || att.Netns == "" {
			continue
		}
		res.Checked++
		key := att.AttachmentKey
		live[key] = true
		gone, err := m.gone(att.Netns)
		if err != nil {
			m.log.Warn("GC: cannot tell whether a namespace is gone; keeping the allocation", "netns", att.Netns, "error", err)
			delete(m.suspects, key)
			continue
		}
		if !gone {
			delete(m.suspects, key)
			continue
		}
		s, seen := m.suspects[key]
		if !seen || s.rev != e.rev {
			m.suspects[key] = suspect{rev: e.rev, first: now}
			res.Suspected = append(res.Suspected, key)
			continue
		}
		if now.Sub(s.first) < m.grace {
			res.Suspected = append(res.Suspected, key)
			continue
		}
		got, ok, err := m.release(ctx, key, e.rev)
		if err != nil {
			return res, err
		}
		delete(m.suspects, key)
		if ok {
			res.Reclaimed = append(res.Reclaimed, key)
			for _, ip := range got.Addresses {
				m.metrics.GCReclaimed(ip.Pool)
			}
			m.log.Info("GC released an allocation whose namespace is gone", "container_id", key.ContainerID, "interface", key.Interface, "netns", att.Netns, "workload", att.Workload)
		}
	}
	for k := range m.suspects {
		if !live[k] {
			delete(m.suspects, k)
		}
	}
	err = m.eachPoolRecord(ctx, func(e Entry, rec AddressRecord) error {
		if rec.State != StateQuarantined || now.Before(rec.Until) {
			return nil
		}
		if err := m.deleteUnchanged(ctx, e); err == nil {
			res.QuarantineExpired++
		} else if !errors.Is(err, ErrCompareFailed) {
			return err
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := m.pruneWorkloads(ctx, now, all, &res); err != nil {
		return res, err
	}
	return res, nil
}

// overdue says whether e is a reservation of this node older than any
// allocation may live: its deadline and the rollback after it. Its
// allocation, if still running, is stuck in a store call; whatever it
// commits later compares the attachment's revision and fails once the
// reservation is gone.
func (m *IPAM) overdue(e attEntry, now time.Time) bool {
	return e.rev != 0 && e.att.State == StateReserved && e.att.Node == m.node && now.Sub(e.att.Created) > m.timeout+rollbackTimeout
}

// reclaimable says whether another node's allocations may be reclaimed:
// the store says its heartbeat expired, longer than the grace period ago.
// A node never seen, or an error, keeps them (never free a live address).
func (m *IPAM) reclaimable(ctx context.Context, node string, now time.Time, memo map[string]bool) bool {
	if m.alive == nil {
		return false
	}
	if v, ok := memo[node]; ok {
		return v
	}
	alive, expiredAt, err := m.alive(ctx, node)
	if err != nil {
		m.log.Warn("GC: cannot tell whether a node is alive; keeping its allocations", "node", node, "error", err)
	}
	v := err == nil && !alive && !expiredAt.IsZero() && now.Sub(expiredAt) > m.grace
	memo[node] = v
	return v
}
