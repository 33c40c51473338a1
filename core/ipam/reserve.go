// Reservations: the reserve commit, the flights that tell a live
// reservation from a dangling one, and the rollback of a failed
// allocation.

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// flights are the attachment keys this process is allocating now: a
// reservation of this node for any other key is dangling (its allocation
// failed and the rollback could not reach the store).
type flights struct {
	mu sync.Mutex
	m  map[AttachmentKey]bool
}

// take marks k in flight; false when it already is.
func (f *flights) take(k AttachmentKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[k] {
		return false
	}
	f.m[k] = true
	return true
}

func (f *flights) end(k AttachmentKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, k)
}

func (f *flights) has(k AttachmentKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[k]
}

// dangling says whether e is a reservation of this node that no
// allocation of this process is making: one whose allocation failed while
// the store could not be reached to roll it back (a shared store that was
// down, a commit whose outcome was unknown).
func (m *IPAM) dangling(e attEntry) bool {
	return e.rev != 0 && e.att.State == StateReserved && e.att.Node == m.node && !m.inflight.has(e.att.AttachmentKey)
}

// reserve picks a free candidate of p and writes it, reserved, with the
// attachment in one commit.
func (a *allocation) reserve(ctx context.Context, p *Pool) error {
	m := a.m
	if _, ok := m.pool(p.Name); !ok {
		return ipamErr(api.CodeUnknownPool, a.skipped, "pool %q was removed", p.Name)
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
