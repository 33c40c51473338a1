package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Bounds of a workload's history and of how long a workload without
// allocations is remembered.
const (
	// MaxHistoryCap bounds ipam.max_history_records. A workload's history
	// is at most this many entries of ~250 bytes (~250 KB): what a history
	// query returns, what a prune deletes, and what an endpoint record of
	// the format before per-entry keys can hold (an upgraded node moves it
	// in commits of historyChunk entries) - far below etcd's 1.5 MiB
	// request limit, and more allocations than any one workload needs to
	// be answered "who had this address".
	MaxHistoryCap = 1000
	// DefaultWorkloadRetention is ipam.workload_retention: how long the
	// endpoint and history of a workload without allocations are kept
	// after its last release (its sticky addresses, "who had this
	// address"). Podman gives every --rm container a workload of its own,
	// so without an end they grow with every container ever run.
	DefaultWorkloadRetention = 24 * time.Hour
	// MinWorkloadRetention and MaxWorkloadRetention bound it. Retention
	// only decides how long a workload that holds nothing is remembered -
	// a live allocation is never pruned - so a short one is safe, only
	// forgetful.
	MinWorkloadRetention = time.Second
	MaxWorkloadRetention = 365 * 24 * time.Hour

	// historyChunk bounds the entries one commit moves or deletes: with
	// the endpoint record it stays under etcd's default --max-txn-ops
	// (128).
	historyChunk = 100
	// trimSlack is how many entries beyond the ones it adds an allocation
	// deletes when the history is over the cap (the cap was lowered): the
	// excess goes a few entries per allocation, each commit stays small.
	trimSlack = 16
)

// endpointHead is the record at workloads/<workload>: what an allocation
// and a release need of the workload's past - its last address per pool,
// the entries of allocations not yet released, the numbers of its history
// entries - without the history itself, whose entries are keys of their
// own (history/<workload>/<seq>). So an allocation writes one small record
// and one entry per address, whatever the history's length, still under
// the record's revision compare.
type endpointHead struct {
	Workload string `json:"workload"`
	// Seq is the number of the newest history entry (the first is 1).
	Seq int64 `json:"seq,omitempty"`
	// Oldest is the number of the oldest entry kept; 0 before the first.
	Oldest int64 `json:"oldest,omitempty"`
	// Last is the newest address the workload held in each pool: the
	// sticky candidate of its next allocation there.
	Last []lastAddr `json:"last,omitempty"`
	// Open are the entries of allocations not released yet.
	Open          []openEntry `json:"open,omitempty"`
	LastAllocated time.Time   `json:"last_allocated,omitzero"`
	LastReleased  time.Time   `json:"last_released,omitzero"`
	// History is where builds before per-entry keys kept every entry,
	// newest first (api.Endpoint's field): read as the newest part of
	// the history, and moved to entry keys before the record is written
	// again (movePastHistory).
	History []HistoryEntry `json:"history,omitempty"`
}

type lastAddr struct {
	Pool    string     `json:"pool"`
	Address netip.Addr `json:"address"`
}

type openEntry struct {
	AttachmentKey
	Seq int64 `json:"seq"`
}

// add records entry number seq in the head's summary (not its Seq).
func (h *endpointHead) add(seq int64, e HistoryEntry) {
	found := false
	for i := range h.Last {
		if h.Last[i].Pool == e.Pool {
			h.Last[i].Address, found = e.Address, true
		}
	}
	if !found {
		h.Last = append(h.Last, lastAddr{Pool: e.Pool, Address: e.Address})
	}
	if e.ReleasedAt.IsZero() {
		dup := false
		for _, o := range h.Open {
			dup = dup || o.Seq == seq
		}
		if !dup {
			h.Open = append(h.Open, openEntry{AttachmentKey: AttachmentKey{ContainerID: e.ContainerID, Interface: e.Interface}, Seq: seq})
		}
	}
	if e.AllocatedAt.After(h.LastAllocated) {
		h.LastAllocated = e.AllocatedAt
	}
	if e.ReleasedAt.After(h.LastReleased) {
		h.LastReleased = e.ReleasedAt
	}
}

// lastActive is the newest allocation or release of the workload.
func (h *endpointHead) lastActive() time.Time {
	t := h.LastAllocated
	if h.LastReleased.After(t) {
		t = h.LastReleased
	}
	for _, e := range h.History {
		if e.AllocatedAt.After(t) {
			t = e.AllocatedAt
		}
		if e.ReleasedAt.After(t) {
			t = e.ReleasedAt
		}
	}
	return t
}

// seqEntry is a history entry with its number.
type seqEntry struct {
	seq int64
	e   HistoryEntry
}

// planPast numbers the embedded entries of a record of the format before
// per-entry keys, oldest first, after the head's own: at most max, the
// newest (the older ones are past the cap the old build would have
// applied at its next write too).
func (h *endpointHead) planPast(max int) []seqEntry {
	past := h.History
	if len(past) > max {
		past = past[:max]
	}
	out := make([]seqEntry, 0, len(past))
	for i := len(past) - 1; i >= 0; i-- {
		out = append(out, seqEntry{seq: h.Seq + int64(len(out)) + 1, e: past[i]})
	}
	return out
}

func historyPrefix(w string) string { return prefixHistory + esc(w) + "/" }

// historyKey numbers are zero-padded so that a listing is in order.
func historyKey(w string, seq int64) string {
	return historyPrefix(w) + fmt.Sprintf("%020d", seq)
}

func decodeHead(e Entry) (endpointHead, error) {
	var h endpointHead
	if err := json.Unmarshal(e.Value, &h); err != nil {
		return endpointHead{}, fmt.Errorf("decode %s: %w", e.Key, err)
	}
	return h, nil
}

func (m *IPAM) getHead(ctx context.Context, workload string) (endpointHead, int64, error) {
	e, err := m.store.Get(ctx, workloadKey(workload))
	if err != nil {
		return endpointHead{}, 0, fmt.Errorf("read workload %q: %w", workload, err)
	}
	if e.Revision == 0 {
		return endpointHead{Workload: workload}, 0, nil
	}
	h, err := decodeHead(e)
	return h, e.Revision, err
}

// headForWrite reads the workload's head for a commit that rewrites it,
// first moving a history embedded by an older build to entry keys.
func (m *IPAM) headForWrite(ctx context.Context, workload string) (endpointHead, int64, error) {
	for try := 0; ; try++ {
		h, rev, err := m.getHead(ctx, workload)
		if err != nil || len(h.History) == 0 {
			return h, rev, err
		}
		err = m.movePastHistory(ctx, workload, h, rev)
		if errors.Is(err, ErrCompareFailed) {
			if try >= m.retries {
				return endpointHead{}, 0, m.retriesSpent("move the history of workload "+workload+" to entry keys", try+1, nil)
			}
			continue
		}
		if err != nil {
			return endpointHead{}, 0, err
		}
	}
}

// movePastHistory moves the embedded history of h (read at rev) to entry
// keys, oldest first, historyChunk entries a commit, each commit comparing
// the head's revision; the entries not yet moved stay embedded, so that a
// reader sees the whole history at every step. The first commit also sums
// all of them up in the head (sticky addresses, open entries).
func (m *IPAM) movePastHistory(ctx context.Context, workload string, h endpointHead, rev int64) error {
	for len(h.History) > 0 {
		plan := h.planPast(m.maxHist)
		chunk := plan[:min(len(plan), historyChunk)]
		next := h
		next.Last = append([]lastAddr(nil), h.Last...)
		next.Open = append([]openEntry(nil), h.Open...)
		for _, p := range plan {
			next.add(p.seq, p.e)
		}
		var ops []Op
		for _, p := range chunk {
			val, err := json.Marshal(p.e)
			if err != nil {
				return fmt.Errorf("encode a history entry of workload %q: %w", workload, err)
			}
			ops = append(ops, Op{Key: historyKey(workload, p.seq), Value: val})
		}
		next.Seq = chunk[len(chunk)-1].seq
		if next.Oldest == 0 {
			next.Oldest = chunk[0].seq
		}
		next.History = nil
		for i := len(plan) - 1; i >= len(chunk); i-- {
			next.History = append(next.History, plan[i].e)
		}
		val, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode workload %q: %w", workload, err)
		}
		ops = append(ops, Op{Key: workloadKey(workload), Value: val})
		r, err := m.store.Commit(ctx, []Cond{{Key: workloadKey(workload), Revision: rev}}, ops)
		if err != nil {
			return fmt.Errorf("move the history of workload %q to entry keys: %w", workload, err)
		}
		h, rev = next, r
	}
	return nil
}

// appendHistory adds entries to h (numbered after its newest) and returns
// the writes: the entries, and the deletion of the oldest beyond max (at
// most trimSlack more than were added, so a lowered cap is caught up over
// several allocations, in small commits). h is updated; the caller writes
// it under its revision compare.
func appendHistory(workload string, h *endpointHead, entries []HistoryEntry, max int) ([]Op, error) {
	var ops []Op
	if h.Oldest == 0 {
		h.Oldest = h.Seq + 1
	}
	// Oldest first, so that the first address of the allocation is the
	// newest entry.
	for i := len(entries) - 1; i >= 0; i-- {
		h.Seq++
		val, err := json.Marshal(entries[i])
		if err != nil {
			return nil, fmt.Errorf("encode a history entry of workload %q: %w", workload, err)
		}
		ops = append(ops, Op{Key: historyKey(workload, h.Seq), Value: val})
		h.add(h.Seq, entries[i])
	}
	keepFrom := h.Seq - int64(max) + 1
	limit := h.Oldest + int64(len(entries)+trimSlack)
	for ; h.Oldest < keepFrom && h.Oldest < limit; h.Oldest++ {
		ops = append(ops, Op{Key: historyKey(workload, h.Oldest), Delete: true})
	}
	open := h.Open[:0]
	for _, o := range h.Open {
		if o.Seq >= h.Oldest {
			open = append(open, o)
		}
	}
	h.Open = open
	return ops, nil
}

// closeHistory returns the compare and writes that mark the history
// entries of key's allocation of workload released at now, for the commit
// of the release; none when the workload has no record.
func (m *IPAM) closeHistory(ctx context.Context, workload string, key AttachmentKey, now time.Time) ([]Cond, []Op, error) {
	h, rev, err := m.headForWrite(ctx, workload)
	if err != nil || rev == 0 {
		return nil, nil, err
	}
	var ops []Op
	open := h.Open[:0]
	for _, o := range h.Open {
		if o.AttachmentKey != key {
			open = append(open, o)
			continue
		}
		k := historyKey(workload, o.Seq)
		e, err := m.store.Get(ctx, k)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", k, err)
		}
		if e.Revision == 0 {
			continue // beyond the cap already
		}
		var he HistoryEntry
		if err := json.Unmarshal(e.Value, &he); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", k, err)
		}
		if he.ReleasedAt.IsZero() {
			he.ReleasedAt = now
		}
		val, err := json.Marshal(he)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, Op{Key: k, Value: val})
	}
	h.Open = open
	if now.After(h.LastReleased) {
		h.LastReleased = now
	}
	val, err := json.Marshal(h)
	if err != nil {
		return nil, nil, fmt.Errorf("encode workload %q: %w", workload, err)
	}
	ops = append(ops, Op{Key: workloadKey(workload), Value: val})
	return []Cond{{Key: workloadKey(workload), Revision: rev}}, ops, nil
}

// workloadHistory returns the workload's history, newest first, at most
// max entries.
func (m *IPAM) workloadHistory(ctx context.Context, workload string) (Endpoint, error) {
	h, _, err := m.getHead(ctx, workload)
	if err != nil {
		return Endpoint{}, err
	}
	ep := Endpoint{Workload: workload, History: append([]HistoryEntry{}, h.History...)}
	es, err := m.store.List(ctx, historyPrefix(workload))
	if err != nil {
		return Endpoint{}, fmt.Errorf("list the history of workload %q: %w", workload, err)
	}
	for i := len(es) - 1; i >= 0 && len(ep.History) < m.maxHist; i-- {
		var he HistoryEntry
		if err := json.Unmarshal(es[i].Value, &he); err != nil {
			return Endpoint{}, fmt.Errorf("decode %s: %w", es[i].Key, err)
		}
		ep.History = append(ep.History, he)
	}
	if len(ep.History) > m.maxHist {
		ep.History = ep.History[:m.maxHist]
	}
	return ep, nil
}

// whoHad lists every history entry of addr, newest first.
func (m *IPAM) whoHad(ctx context.Context, match func(HistoryEntry) bool) ([]api.HistoryRecord, error) {
	out := []api.HistoryRecord{}
	heads, err := m.store.List(ctx, prefixWorkloads)
	if err != nil {
		return nil, fmt.Errorf("list workloads: %w", err)
	}
	for _, e := range heads {
		h, err := decodeHead(e)
		if err != nil {
			return nil, err
		}
		for _, he := range h.History {
			if match(he) {
				out = append(out, api.HistoryRecord{Workload: h.Workload, HistoryEntry: he})
			}
		}
	}
	es, err := m.store.List(ctx, prefixHistory)
	if err != nil {
		return nil, fmt.Errorf("list the history: %w", err)
	}
	for _, e := range es {
		var he HistoryEntry
		if err := json.Unmarshal(e.Value, &he); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		if !match(he) {
			continue
		}
		w, ok := workloadOfHistoryKey(e.Key)
		if !ok {
			return nil, fmt.Errorf("history key %q names no workload", e.Key)
		}
		out = append(out, api.HistoryRecord{Workload: w, HistoryEntry: he})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].AllocatedAt.After(out[j].AllocatedAt) })
	return out, nil
}

func workloadOfHistoryKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, prefixHistory)
	if !ok {
		return "", false
	}
	seg, _, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	w, err := url.PathUnescape(seg)
	return w, err == nil
}

// WorkloadStats are the workload records as the last GC pass counted them.
type WorkloadStats = api.WorkloadStatus

// pruneWorkloads deletes the endpoint and history of every workload that
// no attachment names (in any state, on any node) and whose last
// allocation or release is older than the retention. Each deletion
// compares the endpoint's revision, so a workload that got an allocation
// meanwhile is kept. Short histories are deleted several workloads to a
// commit (at most historyChunk records; should one of them have changed,
// each is tried alone); a longer one in commits of its own. It counts what
// stays.
func (m *IPAM) pruneWorkloads(ctx context.Context, now time.Time, atts []attEntry, res *api.GCResult) error {
	named := map[string]bool{}
	for _, e := range atts {
		named[e.att.Workload] = true
	}
	heads, err := m.store.List(ctx, prefixWorkloads)
	if err != nil {
		return fmt.Errorf("list workloads: %w", err)
	}
	var (
		live, retained int
		batch          []pruneSet
		batchOps       int
	)
	// done counts a pruneSet's outcome: deleted, or kept because it
	// changed meanwhile.
	done := func(p pruneSet, err error) error {
		if errors.Is(err, ErrCompareFailed) {
			retained++
			return nil
		}
		if err != nil {
			return err
		}
		res.WorkloadsPruned++
		res.RecordsPruned += 1 + len(p.history)
		return nil
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var conds []Cond
		var ops []Op
		for _, p := range batch {
			c, o := p.ops()
			conds, ops = append(conds, c), append(ops, o...)
		}
		_, err := m.store.Commit(ctx, conds, ops)
		if errors.Is(err, ErrCompareFailed) {
			for _, p := range batch {
				c, o := p.ops()
				_, err := m.store.Commit(ctx, []Cond{c}, o)
				if err := done(p, err); err != nil {
					return err
				}
			}
			err = nil
		} else {
			for _, p := range batch {
				if err := done(p, err); err != nil {
					return err
				}
			}
		}
		batch, batchOps = nil, 0
		return err
	}
	for _, e := range heads {
		h, err := decodeHead(e)
		if err != nil {
			// Never delete what cannot be read; say so.
			m.log.Warn("GC: an unreadable workload record is kept", "key", e.Key, "error", err)
			retained++
			continue
		}
		if named[h.Workload] {
			live++
			continue
		}
		if now.Sub(h.lastActive()) <= m.retain {
			retained++
			continue
		}
		hist, err := m.store.List(ctx, historyPrefix(h.Workload))
		if err != nil {
			return fmt.Errorf("list the history of workload %q: %w", h.Workload, err)
		}
		p := pruneSet{workload: h.Workload, rev: e.Revision, history: hist}
		if len(hist) >= historyChunk {
			n, err := m.pruneLong(ctx, p)
			res.RecordsPruned += n
			if errors.Is(err, ErrCompareFailed) {
				retained++
				continue
			}
			if err != nil {
				return err
			}
			res.WorkloadsPruned++
			continue
		}
		if batchOps+1+len(hist) > historyChunk {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, p)
		batchOps += 1 + len(hist)
	}
	if err := flush(); err != nil {
		return err
	}
	m.metrics.WorkloadsPruned(res.WorkloadsPruned, res.RecordsPruned)
	m.metrics.Workloads(live, retained)
	m.statsMu.Lock()
	m.stats.Live, m.stats.Retained = live, retained
	m.stats.Pruned += res.WorkloadsPruned
	m.stats.RecordsPruned += res.RecordsPruned
	m.stats.CountedAt = now.UTC()
	m.statsMu.Unlock()
	return nil
}

// pruneSet is one workload to prune: its endpoint at rev and its history.
type pruneSet struct {
	workload string
	rev      int64
	history  []Entry
}

// ops are the compare and the deletes of the whole workload.
func (p pruneSet) ops() (Cond, []Op) {
	ops := []Op{{Key: workloadKey(p.workload), Delete: true}}
	for _, e := range p.history {
		ops = append(ops, Op{Key: e.Key, Delete: true})
	}
	return Cond{Key: workloadKey(p.workload), Revision: p.rev}, ops
}

// pruneLong deletes a long history historyChunk entries a commit, oldest
// first, and then the endpoint, every commit comparing the endpoint's
// revision; it returns how many records it deleted. Should the workload
// be allocated meanwhile, it keeps its endpoint and newer entries.
func (m *IPAM) pruneLong(ctx context.Context, p pruneSet) (int, error) {
	cond := []Cond{{Key: workloadKey(p.workload), Revision: p.rev}}
	es, n := p.history, 0
	for len(es) >= historyChunk {
		var ops []Op
		for _, e := range es[:historyChunk] {
			ops = append(ops, Op{Key: e.Key, Delete: true})
		}
		if _, err := m.store.Commit(ctx, cond, ops); err != nil {
			return n, fmt.Errorf("prune the history of workload %q: %w", p.workload, err)
		}
		n += len(ops)
		es = es[historyChunk:]
	}
	c, ops := pruneSet{workload: p.workload, rev: p.rev, history: es}.ops()
	if _, err := m.store.Commit(ctx, []Cond{c}, ops); err != nil {
		return n, fmt.Errorf("prune workload %q: %w", p.workload, err)
	}
	return n + len(ops), nil
}

// Workloads returns the workload records as the last GC pass counted them
// and the retention.
func (m *IPAM) Workloads() WorkloadStats {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	s := m.stats
	s.Retention = m.retain
	return s
}
