package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// migrateBatch bounds the keys one migration commit moves: a bbolt
// transaction stays small and an etcd Txn well under its default limit of
// 128 operations (each moved key is a put and a delete).
const migrateBatch = 50

// migrateRounds bounds how often MigrateKeys plans afresh after a lost
// compare (another agent sharing the store migrating at the same time).
const migrateRounds = 5

// DuplicateError is MigrateKeys' refusal: records of the old per-pool
// layout give one address of a domain to two holders, which the per-domain
// layout cannot hold. Nothing of the conflicting records was changed.
type DuplicateError struct {
	Domain    string
	Conflicts []string // "10.90.0.20: pool "ovA" (container ...) and pool "ovB" (...)"
	Moved     int      // records already moved before the conflict was found
}

func (e *DuplicateError) Error() string {
	moved := "nothing was changed"
	if e.Moved > 0 {
		moved = fmt.Sprintf("%d other record(s) were already moved; the conflicting ones were left as they are", e.Moved)
	}
	return fmt.Sprintf("cannot move the address records to one key per address in domain %q: %d address(es) are held twice (two pools' ranges overlapped): %s; %s. "+
		"Release one holder of each with the agent version that wrote this store (spiderpool-agent ipam release --container-id ID --interface IF), remove the overlap from the pools, then start this agent again",
		e.Domain, len(e.Conflicts), listSome(e.Conflicts, 10), moved)
}

// MigrateKeys moves the address records of the old layout,
// pools/<pool>/addrs/<address>, to domains/default/addrs/<address> (the old
// layout knew no domains: every pool was in one address space), each batch
// in one commit guarded by the revisions it read, and returns how many it
// moved. It is idempotent: a store without old records is left alone, and
// a run cut short is finished by the next. Two old records of one address
// that both hold it (reserved or allocated) are refused with a
// *DuplicateError naming both holders; a quarantine beside a holder is
// dropped (the holder is what the address is), and of two quarantines the
// longer stays.
func MigrateKeys(ctx context.Context, s Store) (int, error) {
	moved := 0
	for round := 0; round < migrateRounds; round++ {
		plan, err := planMigration(ctx, s)
		if err != nil {
			var de *DuplicateError
			if errors.As(err, &de) {
				de.Moved = moved
			}
			return moved, err
		}
		if len(plan) == 0 {
			return moved, nil
		}
		lost := false
		for len(plan) > 0 && !lost {
			n := min(len(plan), migrateBatch)
			var conds []Cond
			var ops []Op
			count := 0
			for _, st := range plan[:n] {
				conds = append(conds, st.conds...)
				ops = append(ops, st.ops...)
				count += st.moves
			}
			_, err := s.Commit(ctx, conds, ops)
			switch {
			case errors.Is(err, ErrCompareFailed):
				lost = true
			case err != nil:
				return moved, fmt.Errorf("move address records to the per-domain layout: %w", err)
			default:
				moved += count
				plan = plan[n:]
			}
		}
	}
	return moved, fmt.Errorf("move address records to the per-domain layout: the records kept changing under %d attempts; is another agent writing this store?", migrateRounds)
}

// migrationStep is what moves one address: compares and writes of one key
// of the new layout and the old keys of that address.
type migrationStep struct {
	conds []Cond
	ops   []Op
	moves int
}

type migrationSlot struct {
	e      Entry
	rec    AddressRecord
	legacy bool
}

func planMigration(ctx context.Context, s Store) ([]migrationStep, error) {
	olds, err := s.List(ctx, prefixPools)
	if err != nil {
		return nil, fmt.Errorf("list address records of the old layout: %w", err)
	}
	byKey := map[string][]migrationSlot{}
	var keys []string
	add := func(k string, sl migrationSlot) {
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], sl)
	}
	for _, e := range olds {
		if !isLegacyAddrKey(e.Key) {
			continue
		}
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return nil, fmt.Errorf("%s: a damaged address record (%v); restore the store from a backup", e.Key, err)
		}
		if a, ok := addrFromKey(e.Key); !ok || a != rec.Address {
			return nil, fmt.Errorf("%s: the record is for address %s, not the key's; restore the store from a backup", e.Key, rec.Address)
		}
		add(addrKey(DefaultDomain, rec.Address), migrationSlot{e: e, rec: rec, legacy: true})
	}
	if len(keys) == 0 {
		return nil, nil
	}
	// What a run cut short already moved is part of the picture.
	for _, k := range keys {
		cur, err := s.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		if cur.Revision == 0 {
			continue
		}
		var rec AddressRecord
		if err := json.Unmarshal(cur.Value, &rec); err != nil {
			return nil, fmt.Errorf("%s: a damaged address record (%v); restore the store from a backup", k, err)
		}
		byKey[k] = append([]migrationSlot{{e: cur, rec: rec}}, byKey[k]...)
	}
	sort.Strings(keys)
	var conflicts []string
	var plan []migrationStep
	now := time.Now()
	for _, k := range keys {
		slots := byKey[k]
		var live []migrationSlot
		keep := -1
		for i, sl := range slots {
			// The listing and the reads are not one snapshot: another
			// agent of a shared store may have moved this very record
			// in between. The same record twice is one holder.
			if sl.legacy && !slots[0].legacy && string(sl.e.Value) == string(slots[0].e.Value) {
				continue
			}
			if sl.rec.State != StateQuarantined {
				live = append(live, sl)
				keep = i
			}
		}
		if len(live) > 1 {
			var who []string
			for _, sl := range live {
				who = append(who, holderText(sl.rec))
			}
			conflicts = append(conflicts, fmt.Sprintf("%s: %s", live[0].rec.Address, strings.Join(who, " and ")))
			continue
		}
		if keep < 0 {
			for i, sl := range slots {
				if keep < 0 || slots[keep].rec.Until.Before(sl.rec.Until) {
					keep = i
				}
			}
		}
		var st migrationStep
		kept := slots[keep]
		if kept.legacy {
			var cur int64
			if !slots[0].legacy {
				cur = slots[0].e.Revision
			}
			st.conds = append(st.conds, Cond{Key: k, Revision: cur})
			if kept.rec.State == StateQuarantined && !now.Before(kept.rec.Until) {
				// An expired quarantine holds nothing: it is not carried over.
				if cur != 0 {
					st.ops = append(st.ops, Op{Key: k, Delete: true})
				}
			} else {
				op := Op{Key: k, Value: kept.e.Value}
				if kept.rec.State == StateQuarantined {
					op.TTL = kept.rec.Until.Sub(now)
				}
				st.ops = append(st.ops, op)
			}
		}
		for _, sl := range slots {
			if sl.legacy {
				st.conds = append(st.conds, Cond{Key: sl.e.Key, Revision: sl.e.Revision})
				st.ops = append(st.ops, Op{Key: sl.e.Key, Delete: true})
				st.moves++
			}
		}
		plan = append(plan, st)
	}
	if len(conflicts) > 0 {
		return nil, &DuplicateError{Domain: DefaultDomain, Conflicts: conflicts}
	}
	return plan, nil
}

func holderText(rec AddressRecord) string {
	s := fmt.Sprintf("pool %q (container %s interface %s, %s", rec.Pool, rec.Owner.ContainerID, rec.Owner.Interface, rec.State)
	if rec.Node != "" {
		s += ", node " + rec.Node
	}
	return s + ")"
}
