// Commit paths: the final commit of a vetted allocation, the one-commit
// allocation of one with nothing to vet, and settle, which decides what a
// failed commit means.

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// commit turns the reservation into an allocation and records it in the
// workload's history, in one commit.
func (a *allocation) commit(ctx context.Context) error {
	m := a.m
	final := a.att
	// In the order the pools were asked for: a replaced candidate was
	// appended at the end.
	rank := map[string]int{}
	for i, p := range a.pools {
		rank[p.Name] = i
	}
	final.Addresses = append([]AllocatedIP(nil), a.att.Addresses...)
	sort.SliceStable(final.Addresses, func(i, j int) bool { return rank[final.Addresses[i].Pool] < rank[final.Addresses[j].Pool] })
	final.State = StateAllocated
	final.Skipped = a.skipped
	now := m.now().UTC()
	for {
		epCond, epOps, err := a.history(ctx, final.Addresses, now, nil)
		if err != nil {
			return err
		}
		conds := []Cond{{Key: attachmentKey(a.key), Revision: a.attRev}, epCond}
		attVal, err := json.Marshal(final)
		if err != nil {
			return err
		}
		ops := append([]Op{{Key: attachmentKey(a.key), Value: attVal}}, epOps...)
		for _, ip := range final.Addresses {
			addr := ip.Address.Addr()
			rec := AddressRecord{Pool: ip.Pool, Address: addr, State: StateAllocated, Owner: a.key, Node: m.node, Since: now}
			val, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			conds = append(conds, Cond{Key: addrKey(domainOf(ip), addr), Revision: a.addrRev[addr]})
			ops = append(ops, Op{Key: addrKey(domainOf(ip), addr), Value: val})
		}
		if _, err := m.store.Commit(ctx, conds, ops); err != nil {
			// A lost compare is most likely the workload's endpoint changed
			// under us: settle retries it, as an answer lost in transit of
			// a commit that did not land.
			_, err = a.settle(ctx, err, attVal, final.Addresses[0].Pool, "record the allocation in workload "+a.req.Workload)
			if errors.Is(err, errRetry) {
				continue
			}
			if err != nil {
				return err
			}
		}
		a.att = final
		return nil
	}
}

// allocateAtOnce makes an allocation that has nothing to vet in one
// commit: the attachment (allocated), an allocated record for each
// address, and the workload's history, under the compares the reserve and
// the final commit of a vetted allocation make (the attachment key absent,
// each address key absent or at its expired quarantine's revision, the
// endpoint unchanged). One commit is all or nothing, so a crash at any
// point leaves no trace or a complete allocation, never a reservation for
// Recover. A lost race is retried within MaxRetries with fresh candidates;
// an answer lost in transit (ErrOutcomeUnknown) is settled by re-reading
// the attachment key, as for the reserve.
func (a *allocation) allocateAtOnce(ctx context.Context) error {
	m := a.m
	names := make([]string, len(a.pools))
	for i, p := range a.pools {
		names[i] = p.Name
	}
	what := fmt.Sprintf("allocate container %s interface %s from pool(s) %s", input.Cut(a.key.ContainerID), a.key.Interface, strings.Join(names, ", "))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := m.now().UTC()
		att, conds, ops, claimed, err := a.pickAll(ctx, now)
		if err != nil {
			return err
		}
		attVal, err := json.Marshal(att)
		if err == nil {
			var epCond Cond
			var epOps []Op
			// The first round reuses the endpoint read for the sticky
			// addresses (one read less, a round trip on etcd); after a
			// lost compare it is read afresh.
			cached := a.ep
			a.ep = nil
			if epCond, epOps, err = a.history(ctx, att.Addresses, now, cached); err == nil {
				conds = append(conds, Cond{Key: attachmentKey(a.key), Revision: 0}, epCond)
				ops = append(append(ops, Op{Key: attachmentKey(a.key), Value: attVal}), epOps...)
			}
		}
		var rev int64
		if err == nil {
			rev, err = m.store.Commit(ctx, conds, ops)
		}
		// Committed or not, the store now says whether they are taken.
		for _, c := range claimed {
			m.claims.release(c.domain, c.addr)
		}
		if err != nil {
			// A lost compare here means an address was taken by another
			// node or the workload's endpoint changed (unless the
			// attachment itself did): the next round reads both afresh.
			rev, err = a.settle(ctx, err, attVal, a.pools[0].Name, what)
			if errors.Is(err, errRetry) {
				continue
			}
			if err != nil {
				return err
			}
		}
		a.att, a.attRev = att, rev
		return nil
	}
}

// errRetry is settle's "spend no more thought: pick afresh and commit
// again" (a retry has been spent).
var errRetry = errors.New("retry the allocation's commit")

// settle decides what a failed commit of the attachment (expected at
// a.attRev, attVal its new value) means, from the attachment key, which
// every writer of it compares: a lost compare on another key, or a commit
// that did not land, is retried (errRetry, a retry spent); a commit whose
// outcome was unknown but that did land returns its revision; a changed
// attachment means another request for the same key (try again); anything
// else is an error naming what was being committed.
func (a *allocation) settle(ctx context.Context, err error, attVal []byte, pool, what string) (int64, error) {
	busy := func() error {
		return ipamErr(api.CodeTryAgain, a.skipped, "another request for container %s interface %s is in progress; try again", input.Cut(a.key.ContainerID), a.key.Interface)
	}
	switch {
	case errors.Is(err, ErrCompareFailed):
		cur, gerr := a.m.store.Get(ctx, attachmentKey(a.key))
		if gerr != nil {
			return 0, fmt.Errorf("%s: re-read after a lost race: %w", what, gerr)
		}
		if cur.Revision != a.attRev {
			return 0, busy()
		}
		if err := a.spendRetry(ctx, pool, what); err != nil {
			return 0, err
		}
		return 0, errRetry
	case errors.Is(err, ErrOutcomeUnknown):
		cur, gerr := a.m.store.Get(ctx, attachmentKey(a.key))
		switch {
		case gerr != nil:
			return 0, fmt.Errorf("%s: %w (and the re-read failed: %v)", what, err, gerr)
		case cur.Revision != a.attRev && string(cur.Value) == string(attVal):
			return cur.Revision, nil
		case cur.Revision == a.attRev:
			if err := a.spendRetry(ctx, pool, what+" (outcome unknown)"); err != nil {
				return 0, err
			}
			return 0, errRetry
		default:
			return 0, busy()
		}
	}
	return 0, fmt.Errorf("%s: %w", what, err)
}

// history reads the workload's endpoint (or takes cached, when not nil)
// and returns the compare and the writes that add an entry for each of
// addrs to its history (one key each; the oldest beyond MaxHistory
// deleted) and update the endpoint, for the commit that makes the
// allocation. What it writes does not grow with the history.
func (a *allocation) history(ctx context.Context, addrs []AllocatedIP, now time.Time, cached *endpointRead) (Cond, []Op, error) {
	m := a.m
	var (
		h   endpointHead
		rev int64
		err error
	)
	if cached != nil {
		h, rev = cached.head, cached.rev
	} else if h, rev, err = m.headForWrite(ctx, a.req.Workload); err != nil {
		return Cond{}, nil, err
	}
	var entries []HistoryEntry
	for _, ip := range addrs {
		var sk []SkippedIP
		for _, s := range a.skipped {
			if s.Pool == ip.Pool {
				sk = append(sk, s)
			}
		}
		entries = append(entries, HistoryEntry{
			Address: ip.Address.Addr(), Pool: ip.Pool, ContainerID: a.key.ContainerID, Interface: a.key.Interface,
			Node: m.node, AllocatedAt: now, Skipped: sk, Origin: a.req.Origin,
		})
	}
	h.Workload = a.req.Workload
	h.Last = append([]lastAddr(nil), h.Last...)
	h.Open = append([]openEntry(nil), h.Open...)
	ops, err := appendHistory(a.req.Workload, &h, entries, m.maxHist)
	if err != nil {
		return Cond{}, nil, err
	}
	val, err := json.Marshal(h)
	if err != nil {
		return Cond{}, nil, fmt.Errorf("encode workload %q: %w", a.req.Workload, err)
	}
	ops = append(ops, Op{Key: workloadKey(a.req.Workload), Value: val})
	return Cond{Key: workloadKey(a.req.Workload), Revision: rev}, ops, nil
}
