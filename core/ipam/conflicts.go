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

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Conflict events, kept with the pools' records so that on a shared store
// every node of the fleet answers who took an address: one key per address
// within its domain, holding the latest conflict and how many were
// recorded for it.
const (
	prefixConflicts = "conflicts/"
	// MaxConflictRecords caps the conflict keys of a store: a new address
	// beyond it replaces the longest quiet one.
	MaxConflictRecords = 1000
	// conflictRetries bounds the re-reads of a record another node wrote
	// meanwhile.
	conflictRetries = 3
)

func conflictKey(domain string, a netip.Addr) string {
	if domain == "" {
		domain = DefaultDomain
	}
	return prefixConflicts + esc(domain) + "/" + a.String()
}

// RecordConflict stores c as its address's latest conflict. A report of
// the conflict already stored (same other MAC, same first frame) updates
// it; another conflict replaces it and counts one more event.
func (m *IPAM) RecordConflict(ctx context.Context, c api.Conflict) error {
	if !c.Address.IsValid() {
		return errors.New("record conflict: no address")
	}
	key := conflictKey(c.Domain, c.Address)
	var err error
	for range conflictRetries {
		var e Entry
		e, err = m.store.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("record conflict of %s: %w", c.Address, err)
		}
		rec := c
		rec.Events = 1
		var ops []Op
		if e.Revision != 0 {
			var old api.Conflict
			if json.Unmarshal(e.Value, &old) == nil {
				if old.MAC == c.MAC && old.FirstSeen.Equal(c.FirstSeen) && old.Node == c.Node {
					rec.Events = max(old.Events, 1)
				} else {
					rec.Events = old.Events + 1
				}
			}
		} else {
			evict, err := m.conflictToEvict(ctx)
			if err != nil {
				return err
			}
			if evict != "" {
				ops = append(ops, Op{Key: evict, Delete: true})
			}
		}
		b, merr := json.Marshal(rec)
		if merr != nil {
			return fmt.Errorf("record conflict of %s: %w", c.Address, merr)
		}
		ops = append(ops, Op{Key: key, Value: b})
		_, err = m.store.Commit(ctx, []Cond{{Key: key, Revision: e.Revision}}, ops)
		if !errors.Is(err, ErrCompareFailed) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("record conflict of %s: %w", c.Address, err)
	}
	return nil
}

// conflictToEvict names the longest quiet record when the store holds
// MaxConflictRecords of them already.
func (m *IPAM) conflictToEvict(ctx context.Context) (string, error) {
	all, err := m.store.List(ctx, prefixConflicts)
	if err != nil {
		return "", fmt.Errorf("list conflict records: %w", err)
	}
	if len(all) < MaxConflictRecords {
		return "", nil
	}
	var (
		oldest string
		at     time.Time
	)
	for _, e := range all {
		var c api.Conflict
		if json.Unmarshal(e.Value, &c) != nil {
			return e.Key, nil // unreadable: the first to go
		}
		if oldest == "" || c.LastSeen.Before(at) {
			oldest, at = e.Key, c.LastSeen
		}
	}
	return oldest, nil
}

// Conflicts returns the recorded conflicts last seen within since (0: all),
// of addr only when it is valid, newest first.
func (m *IPAM) Conflicts(ctx context.Context, since time.Duration, addr netip.Addr) ([]api.Conflict, error) {
	all, err := m.store.List(ctx, prefixConflicts)
	if err != nil {
		return nil, fmt.Errorf("list conflict records: %w", err)
	}
	now := m.now()
	out := []api.Conflict{}
	for _, e := range all {
		if addr.IsValid() && !strings.HasSuffix(e.Key, "/"+addr.String()) {
			continue
		}
		var c api.Conflict
		if err := json.Unmarshal(e.Value, &c); err != nil {
			m.log.Warn("unreadable conflict record skipped", "key", e.Key, "error", err)
			continue
		}
		if since > 0 && now.Sub(c.LastSeen) > since {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out, nil
}

// PruneConflicts deletes the conflict records last seen longer than the
// workload retention ago, each under the compare of the revision read.
func (m *IPAM) PruneConflicts(ctx context.Context) (int, error) {
	all, err := m.store.List(ctx, prefixConflicts)
	if err != nil {
		return 0, fmt.Errorf("list conflict records: %w", err)
	}
	now, n := m.now(), 0
	for _, e := range all {
		var c api.Conflict
		if json.Unmarshal(e.Value, &c) == nil && now.Sub(c.LastSeen) <= m.retain {
			continue
		}
		if err := m.deleteUnchanged(ctx, e); err != nil {
			if errors.Is(err, ErrCompareFailed) {
				continue // written meanwhile: recent again
			}
			return n, fmt.Errorf("prune conflict record %s: %w", e.Key, err)
		}
		n++
	}
	return n, nil
}
