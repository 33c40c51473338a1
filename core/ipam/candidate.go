// Candidate search: the in-process claims and the order in which a pool's
// addresses are tried (sticky first, then from a point hashed from the
// node and the key).

package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

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
		var rec AddressRecord
		if e.Revision == 0 || json.Unmarshal(e.Value, &rec) == nil && rec.State == StateQuarantined && !now.Before(rec.Until) {
			if a.skipBusy(p, addr) {
				m.claims.release(p.Domain, addr)
				return 0, false, nil
			}
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
	// A pool may have millions of free-looking candidates the store says
	// are taken; the loop looks at ctx every candidatesPerCtxCheck of them,
	// often enough that a cancelled allocation stops within microseconds,
	// rarely enough that the check costs nothing per candidate.
	const candidatesPerCtxCheck = 64
	n := p.Size()
	h := fnv.New64a()
	h.Write([]byte(m.node + "\x00" + a.key.ContainerID + "\x00" + a.key.Interface))
	start := int(h.Sum64() % uint64(n))
	// The first walk skips what m.hint says is taken; the second reads
	// every address (see walkHint).
	for _, skip := range []bool{true, false} {
		for i := 0; i < n; i++ {
			if i%candidatesPerCtxCheck == candidatesPerCtxCheck-1 {
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
	return netip.Addr{}, 0, ipamErr(api.CodePoolFull, a.skipped, "pool %q is full: all %d addresses are allocated, reserved or quarantined%s", p.Name, n, a.busyNote(p))
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
			return fail(ipamErr(api.CodeUnknownPool, nil, "pool %q was removed", p.Name))
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

func allocatedIP(p *Pool, addr netip.Addr) AllocatedIP {
	return AllocatedIP{Pool: p.Name, Domain: p.Domain, Address: netip.PrefixFrom(addr, p.Subnet.Bits()), Gateway: p.Gateway, Routes: p.Routes, VLAN: p.VLAN}
}
