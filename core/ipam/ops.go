// The operations on what is allocated: release, listing, history, usage.

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Release frees what key holds and closes its history entries. Releasing
// an unknown key succeeds with ok false (CNI DEL is idempotent).
func (m *IPAM) Release(ctx context.Context, key AttachmentKey) (att Attachment, ok bool, err error) {
	if err := (api.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
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
	req := api.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface, IfNetwork: network}
	if network == "" {
		return Attachment{}, false, &api.FieldError{Field: "if_network", Msg: "is required"}
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
	if err := (api.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
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
	if err := (api.ReleaseWorkloadRequest{Workload: workload}).Validate(); err != nil {
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
func (m *IPAM) WhoHad(ctx context.Context, addr netip.Addr) ([]api.HistoryRecord, error) {
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
func (m *IPAM) Usage(ctx context.Context) ([]api.PoolUsage, error) {
	var out []api.PoolUsage
	for _, p := range m.Pools() {
		u, err := m.usage(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func (m *IPAM) usage(ctx context.Context, p *Pool) (api.PoolUsage, error) {
	u := api.PoolUsage{
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
	recorded := map[netip.Addr]bool{}
	for _, r := range rs {
		rec := r.rec
		if !p.Contains(rec.Address) {
			continue // left from a wider definition; not part of the pool now
		}
		if rec.State != StateQuarantined || now.Before(rec.Until) {
			recorded[rec.Address] = true
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
	u.Busy = m.busyFree(p, recorded)
	m.metrics.PoolUsage(p.Name, u.Size, u.Allocated, u.Reserved, u.Quarantined)
	return u, nil
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

// eachPoolRecord calls fn on every address record of every pool, listing
// each pool's records just before they are visited, and stops at the
// first error, of a listing or of fn, which it returns as it is.
func (m *IPAM) eachPoolRecord(ctx context.Context, fn func(e Entry, rec AddressRecord) error) error {
	for _, p := range m.Pools() {
		rs, err := m.poolRecords(ctx, p)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := fn(r.e, r.rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteUnchanged deletes e's key under the compare of the revision it was
// read at: a key written since is kept, and the error wraps
// ErrCompareFailed.
func (m *IPAM) deleteUnchanged(ctx context.Context, e Entry) error {
	_, err := m.store.Commit(ctx, []Cond{{Key: e.Key, Revision: e.Revision}}, []Op{{Key: e.Key, Delete: true}})
	return err
}
