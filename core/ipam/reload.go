// Reload: SetPools swaps the pool set only when no live allocation would
// be orphaned, and CheckDomains refuses a pool moved to another domain.

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

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

func listSome(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
}
