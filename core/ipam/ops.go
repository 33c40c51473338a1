package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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

// ReleaseIfNetwork frees what key holds only when a CNI ADD of network made
// it (Attachment.MadeByNetwork): a CNI GC's release. The record decided on
// is the one the release's commit compares, so an allocation that changed
// hands since GC listed it is kept. att is what key held: released when
// released is true, else kept (zero when nothing was held).
func (m *IPAM) ReleaseIfNetwork(ctx context.Context, key AttachmentKey, network string) (att Attachment, released bool, err error) {
	req := ipamapi.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface, IfNetwork: network}
	if network == "" {
		return Attachment{}, false, &ipamapi.FieldError{Field: "if_network", Msg: "is required"}
	}
	if err := req.Validate(); err != nil {
		return Attachment{}, false, err
	}
	return m.releaseIf(ctx, key, 0, func(a Attachment) bool { return !a.MadeByNetwork(network) })
}

// release frees key; when wantRev is not 0 only if the attachment is still
// at that revision (GC).
func (m *IPAM) release(ctx context.Context, key AttachmentKey, wantRev int64) (Attachment, bool, error) {
	return m.releaseIf(ctx, key, wantRev, nil)
}

// releaseIf is release that keeps, and returns with false, an attachment
// for which keep (when not nil) says so.
func (m *IPAM) releaseIf(ctx context.Context, key AttachmentKey, wantRev int64, keep func(Attachment) bool) (Attachment, bool, error) {
	for try := 0; ; try++ {
		cur, err := m.getAttachment(ctx, key)
		if err != nil {
			return Attachment{}, false, err
		}
		if cur.rev == 0 || (wantRev != 0 && cur.rev != wantRev) {
			return Attachment{}, false, nil
		}
		if keep != nil && keep(cur.att) {
			return cur.att, false, nil
		}
		att := cur.att
		conds, ops, err := m.dropOps(ctx, key, cur.rev, att)
		if err != nil {
			return Attachment{}, false, err
		}
		if att.State == StateAllocated && att.Workload != "" {
			hc, hops, err := m.closeHistory(ctx, att.Workload, key, m.now().UTC())
			if err != nil {
				return Attachment{}, false, err
			}
			conds, ops = append(conds, hc...), append(ops, hops...)
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
		for _, ip := range att.Addresses {
			if p, ok := m.pool(ip.Pool); ok {
				if i, ok := p.index(ip.Address.Addr()); ok {
					m.hint.mark(p.Name, p.Size(), i, false)
				}
			}
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
		pools := make([]string, len(e.att.Addresses))
		for i, ip := range e.att.Addresses {
			pools[i] = ip.Pool
		}
		if listed(e.att.Workload, pools, pool, workload) {
			out = append(out, e.att)
		}
	}
	return out, nil
}

// listed is List's filter: the workload, when given, and an address from
// the pool, when given.
func listed(attWorkload string, attPools []string, pool, workload string) bool {
	if workload != "" && attWorkload != workload {
		return false
	}
	return pool == "" || slices.Contains(attPools, pool)
}

// ListJSON is List as the control API answers it: a JSON array of the
// attachment records as they are stored (json.Marshal of an Attachment),
// each checked to be JSON but not decoded and encoded again. Decoding was
// most of a listing's cost: 5,000 allocations took ~40 ms of the agent's
// CPU, the same again in the client that decodes the answer. A filter
// decodes only the two fields it compares. A record that is not JSON is
// an error naming its key, as in List.
func (m *IPAM) ListJSON(ctx context.Context, pool, workload string) (json.RawMessage, error) {
	es, err := m.store.List(ctx, prefixAttachments)
	if err != nil {
		return nil, fmt.Errorf("list allocations: %w", err)
	}
	size := 2
	for _, e := range es {
		size += len(e.Value) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	n := 0
	for _, e := range es {
		if pool == "" && workload == "" {
			if !json.Valid(e.Value) {
				return nil, fmt.Errorf("decode %s: not valid JSON", e.Key)
			}
		} else {
			var f struct {
				Workload  string `json:"workload"`
				Addresses []struct {
					Pool string `json:"pool"`
				} `json:"addresses"`
			}
			if err := json.Unmarshal(e.Value, &f); err != nil {
				return nil, fmt.Errorf("decode %s: %w", e.Key, err)
			}
			pools := make([]string, len(f.Addresses))
			for i, ip := range f.Addresses {
				pools[i] = ip.Pool
			}
			if !listed(f.Workload, pools, pool, workload) {
				continue
			}
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, e.Value...)
		n++
	}
	return append(out, ']'), nil
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

// History returns a workload's history (newest first, at most
// MaxHistory entries).
func (m *IPAM) History(ctx context.Context, workload string) (Endpoint, error) {
	return m.workloadHistory(ctx, workload)
}

// WhoHad answers "who had this address, and when?", newest first.
func (m *IPAM) WhoHad(ctx context.Context, addr netip.Addr) ([]ipamapi.HistoryRecord, error) {
	return m.whoHad(ctx, func(h HistoryEntry) bool { return h.Address == addr })
}

// AddressState returns the record of addr in each pool holding one now: an
// address free, or whose quarantine has ended (it is free too), has none.
func (m *IPAM) AddressState(ctx context.Context, addr netip.Addr) ([]AddressRecord, error) {
	out := []AddressRecord{}
	now := m.now()
	// One key per address and domain, whichever of the domain's pools
	// holds it (the record names that pool).
	seen := map[string]bool{}
	for _, p := range m.Pools() {
		if !p.Contains(addr) || seen[p.Domain] {
			continue
		}
		seen[p.Domain] = true
		e, err := m.store.Get(ctx, addrKey(p.Domain, addr))
		if err != nil {
			return nil, fmt.Errorf("domain %q: read %s: %w", p.Domain, addr, err)
		}
		if e.Revision == 0 {
			continue
		}
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		if rec.State == StateQuarantined && !now.Before(rec.Until) {
			continue
		}
		out = append(out, rec)
	}
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
		Name: p.Name, Family: p.Family(), Subnet: p.Subnet.String(), Ranges: p.Ranges(), VLAN: p.VLAN, Domain: p.Domain,
		Store: p.Store, ConflictDetection: p.ConflictDetection, GatewayDetection: p.GatewayDetection, Size: p.Size(),
	}
	if p.Gateway.IsValid() {
		u.Gateway = p.Gateway.String()
	}
	rs, err := m.poolRecords(ctx, p)
	if err != nil {
		return u, err
	}
	now := m.now()
	for _, r := range rs {
		rec := r.rec
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
		rs, err := m.poolRecords(ctx, p)
		if err != nil {
			return n, err
		}
		for _, r := range rs {
			e, rec := r.e, r.rec
			if rec.State != StateReserved || rec.Node != m.node {
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
// between is never freed). This node's reservations are dropped once no
// allocation is making them and GCGrace passed, or once they outlived the
// allocation deadline (overdue). Allocations without a namespace path, or whose
// namespace cannot be examined, are never collected. Expired quarantine
// records are removed, and workloads no allocation names whose last
// activity is older than the retention are pruned (pruneWorkloads).
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
	for _, p := range m.Pools() {
		rs, err := m.poolRecords(ctx, p)
		if err != nil {
			return res, err
		}
		for _, r := range rs {
			e, rec := r.e, r.rec
			if rec.State != StateQuarantined || now.Before(rec.Until) {
				continue
			}
			if _, err := m.store.Commit(ctx, []Cond{{Key: e.Key, Revision: e.Revision}}, []Op{{Key: e.Key, Delete: true}}); err == nil {
				res.QuarantineExpired++
			} else if !errors.Is(err, ErrCompareFailed) {
				return res, err
			}
		}
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
		rs, err := m.poolRecords(ctx, old)
		if err != nil {
			return err
		}
		np := next[old.Name]
		var orphans []string
		for _, r := range rs {
			rec := r.rec
			if rec.State == StateQuarantined {
				continue
			}
			// A pool moved to another domain would hand its held
			// addresses out again there: they are keyed in the old one.
			if np == nil || !np.Contains(rec.Address) || np.Subnet.Bits() != old.Subnet.Bits() || np.Domain != old.Domain {
				orphans = append(orphans, rec.Address.String())
			}
		}
		if len(orphans) == 0 {
			continue
		}
		what := fmt.Sprintf("shrinking pool %q", old.Name)
		switch {
		case np == nil:
			what = fmt.Sprintf("removing pool %q", old.Name)
		case np.Domain != old.Domain:
			what = fmt.Sprintf("moving pool %q from domain %q to %q", old.Name, old.Domain, np.Domain)
		}
		problems = append(problems, fmt.Sprintf("%s would orphan %d live allocation(s): %s", what, len(orphans), listSome(orphans, 20)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("IPAM pools not reloaded; the running pools stay: %s (release those addresses first)", strings.Join(problems, "; "))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools = next
	return nil
}

// ErrDomainMoved is wrapped by CheckDomains when a pool's configured domain
// is not where its live addresses are recorded.
var ErrDomainMoved = errors.New("pool moved to another domain while holding addresses")

// CheckDomains refuses pools whose live addresses are recorded in another
// layer-2 domain than the one configured now (the domain attribute was
// changed, or added for a pool the old per-pool layout held, while it held
// addresses): the pool would hand those addresses out a second time in its
// new domain. Call it at start, before serving; a reload checks the same
// in SetPools.
func (m *IPAM) CheckDomains(ctx context.Context) error {
	es, err := m.store.List(ctx, prefixDomains)
	if err != nil {
		return fmt.Errorf("list address records: %w", err)
	}
	type moved struct {
		from  string
		addrs []string
	}
	found := map[string]*moved{}
	for _, e := range es {
		var rec AddressRecord
		if json.Unmarshal(e.Value, &rec) != nil || rec.State == StateQuarantined {
			continue
		}
		p, ok := m.pool(rec.Pool)
		domain, _, kok := splitAddrKey(e.Key)
		if !ok || !kok || domain == p.Domain {
			continue
		}
		mv := found[rec.Pool+"\x00"+domain]
		if mv == nil {
			mv = &moved{from: domain}
			found[rec.Pool+"\x00"+domain] = mv
		}
		mv.addrs = append(mv.addrs, rec.Address.String())
	}
	if len(found) == 0 {
		return nil
	}
	var problems []string
	for k, mv := range found {
		pool, _, _ := strings.Cut(k, "\x00")
		p, _ := m.pool(pool)
		problems = append(problems, fmt.Sprintf("pool %q is configured in domain %q but holds %d live allocation(s) in domain %q: %s", pool, p.Domain, len(mv.addrs), mv.from, listSome(mv.addrs, 20)))
	}
	sort.Strings(problems)
	return fmt.Errorf("%w: %s (set the pool's domain back to where they are, or release them first)", ErrDomainMoved, strings.Join(problems, "; "))
}

// poolRecord is an address record of a pool with its store entry.
type poolRecord struct {
	e   Entry
	rec AddressRecord
}

// poolRecords lists p's address records: those of its domain that name
// it. Records are keyed per domain, so a domain's other pools' records
// are in the same listing and are left out here.
func (m *IPAM) poolRecords(ctx context.Context, p *Pool) ([]poolRecord, error) {
	es, err := m.store.List(ctx, domainAddrPrefix(p.Domain))
	if err != nil {
		return nil, fmt.Errorf("pool %q: list the addresses of domain %q: %w", p.Name, p.Domain, err)
	}
	var out []poolRecord
	for _, e := range es {
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		if rec.Pool == p.Name {
			out = append(out, poolRecord{e: e, rec: rec})
		}
	}
	return out, nil
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
