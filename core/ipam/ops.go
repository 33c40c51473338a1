package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// Release frees what key holds and closes its history entries. Releasing
// an unknown key succeeds with ok false (CNI DEL is idempotent).
func (m *IPAM) Release(ctx context.Context, key AttachmentKey) (att Attachment, ok bool, err error) {
	if err := (ipamapi.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
		return Attachment{}, false, err
	}
	return m.release(ctx, key, 0)
}

// release frees key; when wantRev is not 0 only if the attachment is still
// at that revision (GC).
func (m *IPAM) release(ctx context.Context, key AttachmentKey, wantRev int64) (Attachment, bool, error) {
	for try := 0; ; try++ {
		cur, err := m.getAttachment(ctx, key)
		if err != nil {
			return Attachment{}, false, err
		}
		if cur.rev == 0 || (wantRev != 0 && cur.rev != wantRev) {
			return Attachment{}, false, nil
		}
		att := cur.att
		conds, ops, err := m.dropOps(ctx, key, cur.rev, att)
		if err != nil {
			return Attachment{}, false, err
		}
		if att.State == StateAllocated && att.Workload != "" {
			ep, epRev, err := m.getEndpoint(ctx, att.Workload)
			if err != nil {
				return Attachment{}, false, err
			}
			now := m.now().UTC()
			changed := false
			for i := range ep.History {
				h := &ep.History[i]
				if h.ContainerID == key.ContainerID && h.Interface == key.Interface && h.ReleasedAt.IsZero() {
					h.ReleasedAt, changed = now, true
				}
			}
			if changed {
				val, err := json.Marshal(ep)
				if err != nil {
					return Attachment{}, false, err
				}
				conds = append(conds, Cond{Key: workloadKey(att.Workload), Revision: epRev})
				ops = append(ops, Op{Key: workloadKey(att.Workload), Value: val})
			}
		}
		_, err = m.store.Commit(ctx, conds, ops)
		if errors.Is(err, ErrCompareFailed) {
			pool := ""
			if len(att.Addresses) > 0 {
				pool = att.Addresses[0].Pool
			}
			m.metrics.RetrySpent(pool)
			if try >= m.retries {
				return Attachment{}, false, m.retriesSpent(fmt.Sprintf("release container %s interface %s", key.ContainerID, key.Interface), try+1, nil)
			}
			continue
		}
		for _, ip := range att.Addresses {
			res := "ok"
			if err != nil {
				res = "error"
			}
			m.metrics.Release(ip.Pool, res)
		}
		if err != nil {
			return Attachment{}, false, fmt.Errorf("release container %s interface %s: %w", key.ContainerID, key.Interface, err)
		}
		return att, true, nil
	}
}

// SpooledRelease is what ReleaseSpooled did.
type SpooledRelease string

const (
	SpooledReleased  SpooledRelease = "released"
	SpooledUnknown   SpooledRelease = "unknown"    // the key holds nothing
	SpooledNewer     SpooledRelease = "newer"      // an ADD made after the DEL holds the key
	SpooledOtherNode SpooledRelease = "other_node" // another node's allocation
)

// ReleaseSpooled applies a DEL that the CNI plugin spooled at deletedAt
// because the agent was not there to take it. Unlike Release it releases
// only this node's allocation made no later than deletedAt: the spool may
// be applied after the runtime has ADDed the same (container id,
// interface) again (podman restart keeps both), and that newer allocation
// must win. The release is compare-guarded on the revision that was
// judged.
func (m *IPAM) ReleaseSpooled(ctx context.Context, key AttachmentKey, deletedAt time.Time) (SpooledRelease, Attachment, error) {
	if err := (ipamapi.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
		return "", Attachment{}, err
	}
	cur, err := m.getAttachment(ctx, key)
	switch {
	case err != nil:
		return "", Attachment{}, err
	case cur.rev == 0:
		return SpooledUnknown, Attachment{}, nil
	case cur.att.Node != "" && cur.att.Node != m.node:
		return SpooledOtherNode, cur.att, nil
	case cur.att.Created.After(deletedAt):
		return SpooledNewer, cur.att, nil
	}
	att, ok, err := m.release(ctx, key, cur.rev)
	switch {
	case err != nil:
		return "", Attachment{}, err
	case !ok:
		// Changed since it was judged: whatever holds the key now was
		// written after the DEL was spooled.
		return SpooledNewer, Attachment{}, nil
	}
	return SpooledReleased, att, nil
}

// ReleaseWorkload releases every allocation of workload.
func (m *IPAM) ReleaseWorkload(ctx context.Context, workload string) ([]Attachment, error) {
	if err := (ipamapi.ReleaseWorkloadRequest{Workload: workload}).Validate(); err != nil {
		return nil, err
	}
	list, err := m.List(ctx, "", workload)
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, att := range list {
		got, ok, err := m.release(ctx, att.AttachmentKey, 0)
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, got)
		}
	}
	return out, nil
}

// Get returns what key holds.
func (m *IPAM) Get(ctx context.Context, key AttachmentKey) (Attachment, bool, error) {
	e, err := m.getAttachment(ctx, key)
	return e.att, e.rev != 0, err
}

// List returns the allocations, filtered by pool and workload when given.
func (m *IPAM) List(ctx context.Context, pool, workload string) ([]Attachment, error) {
	all, err := m.attachments(ctx)
	if err != nil {
		return nil, err
	}
	out := []Attachment{}
	for _, e := range all {
		if workload != "" && e.att.Workload != workload {
			continue
		}
		if pool != "" {
			found := false
			for _, ip := range e.att.Addresses {
				found = found || ip.Pool == pool
			}
			if !found {
				continue
			}
		}
		out = append(out, e.att)
	}
	return out, nil
}

func (m *IPAM) attachments(ctx context.Context) ([]attEntry, error) {
	es, err := m.store.List(ctx, prefixAttachments)
	if err != nil {
		return nil, fmt.Errorf("list allocations: %w", err)
	}
	out := make([]attEntry, 0, len(es))
	for _, e := range es {
		var att Attachment
		if err := json.Unmarshal(e.Value, &att); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		out = append(out, attEntry{att: att, rev: e.Revision})
	}
	return out, nil
}

// History returns a workload's endpoint (newest first).
func (m *IPAM) History(ctx context.Context, workload string) (Endpoint, error) {
	ep, _, err := m.getEndpoint(ctx, workload)
	return ep, err
}

// WhoHad answers "who had this address, and when?", newest first.
func (m *IPAM) WhoHad(ctx context.Context, addr netip.Addr) ([]ipamapi.HistoryRecord, error) {
	es, err := m.store.List(ctx, prefixWorkloads)
	if err != nil {
		return nil, fmt.Errorf("list workloads: %w", err)
	}
	out := []ipamapi.HistoryRecord{}
	for _, e := range es {
		var ep Endpoint
		if err := json.Unmarshal(e.Value, &ep); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		for _, h := range ep.History {
			if h.Address == addr {
				out = append(out, ipamapi.HistoryRecord{Workload: ep.Workload, HistoryEntry: h})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].AllocatedAt.After(out[j].AllocatedAt) })
	return out, nil
}

// Usage reports every pool's state.
func (m *IPAM) Usage(ctx context.Context) ([]ipamapi.PoolUsage, error) {
	var out []ipamapi.PoolUsage
	for _, p := range m.Pools() {
		u, err := m.usage(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func (m *IPAM) usage(ctx context.Context, p *Pool) (ipamapi.PoolUsage, error) {
	u := ipamapi.PoolUsage{
		Name: p.Name, Family: p.Family(), Subnet: p.Subnet.String(), Ranges: p.Ranges(), VLAN: p.VLAN,
		Store: p.Store, ConflictDetection: p.ConflictDetection, GatewayDetection: p.GatewayDetection, Size: p.Size(),
	}
	if p.Gateway.IsValid() {
		u.Gateway = p.Gateway.String()
	}
	es, err := m.store.List(ctx, poolAddrPrefix(p.Name))
	if err != nil {
		return u, fmt.Errorf("pool %q: list addresses: %w", p.Name, err)
	}
	now := m.now()
	for _, e := range es {
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return u, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		if !p.Contains(rec.Address) {
			continue // left from a wider definition; not part of the pool now
		}
		switch rec.State {
		case StateAllocated:
			u.Allocated++
		case StateReserved:
			u.Reserved++
		case StateQuarantined:
			if now.Before(rec.Until) {
				u.Quarantined++
			}
		}
	}
	u.Free = u.Size - u.Allocated - u.Reserved - u.Quarantined
	m.metrics.PoolUsage(p.Name, u.Size, u.Allocated, u.Reserved, u.Quarantined)
	return u, nil
}

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
	for _, p := range m.Pools() {
		es, err := m.store.List(ctx, poolAddrPrefix(p.Name))
		if err != nil {
			return n, err
		}
		for _, e := range es {
			var rec AddressRecord
			if json.Unmarshal(e.Value, &rec) != nil || rec.State != StateReserved || rec.Node != m.node {
				continue
			}
			owner, err := m.getAttachment(ctx, rec.Owner)
			if err != nil {
				return n, err
			}
			if owner.rev == 0 {
				if _, err := m.store.Commit(ctx, []Cond{{Key: e.Key, Revision: e.Revision}}, []Op{{Key: e.Key, Delete: true}}); err != nil && !errors.Is(err, ErrCompareFailed) {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// GC runs one garbage collection pass. An allocation of this node whose
// namespace is gone becomes a suspect with its revision; a suspect seen
// gone again at least GCGrace later, with the record unchanged, is
// released (a compare on the revision, so an address re-allocated in
// between is never freed). Allocations without a namespace path, or whose
// namespace cannot be examined, are never collected. Expired quarantine
// records are removed.
func (m *IPAM) GC(ctx context.Context) (ipamapi.GCResult, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	res := ipamapi.GCResult{Suspected: []AttachmentKey{}, Reclaimed: []AttachmentKey{}, GracePeriod: m.grace}
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
		if m.dangling(e) && now.Sub(att.Created) > m.grace {
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
	for _, p := range m.Pools() {
		es, err := m.store.List(ctx, poolAddrPrefix(p.Name))
		if err != nil {
			return res, err
		}
		for _, e := range es {
			var rec AddressRecord
			if json.Unmarshal(e.Value, &rec) != nil || rec.State != StateQuarantined || now.Before(rec.Until) {
				continue
			}
			if _, err := m.store.Commit(ctx, []Cond{{Key: e.Key, Revision: e.Revision}}, []Op{{Key: e.Key, Delete: true}}); err == nil {
				res.QuarantineExpired++
			} else if !errors.Is(err, ErrCompareFailed) {
				return res, err
			}
		}
	}
	return res, nil
}

// SetPools replaces the pools (a reload). A pool may grow; a pool that
// would be removed, or shrunk so that live allocations fall outside it, is
// refused with the addresses in the way, and nothing changes.
func (m *IPAM) SetPools(ctx context.Context, pools []*Pool) error {
	next, err := poolMap(pools)
	if err != nil {
		return err
	}
	// No allocation runs while the live addresses are checked and the
	// pools swapped.
	m.reload.Lock()
	defer m.reload.Unlock()
	var problems []string
	for _, old := range m.Pools() {
		es, err := m.store.List(ctx, poolAddrPrefix(old.Name))
		if err != nil {
			return fmt.Errorf("pool %q: list addresses: %w", old.Name, err)
		}
		np := next[old.Name]
		var orphans []string
		for _, e := range es {
			var rec AddressRecord
			if json.Unmarshal(e.Value, &rec) != nil || rec.State == StateQuarantined {
				continue
			}
			if np == nil || !np.Contains(rec.Address) || np.Subnet.Bits() != old.Subnet.Bits() {
				orphans = append(orphans, rec.Address.String())
			}
		}
		if len(orphans) == 0 {
			continue
		}
		what := "shrinking"
		if np == nil {
			what = "removing"
		}
		problems = append(problems, fmt.Sprintf("%s pool %q would orphan %d live allocation(s): %s", what, old.Name, len(orphans), listSome(orphans, 20)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("IPAM pools not reloaded; the running pools stay: %s (release those addresses first)", strings.Join(problems, "; "))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools = next
	return nil
}

func listSome(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
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
