package agent

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/watch"
	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
)

// Timing of the watch service.
const (
	// watchResync is how often the watched set is compared with the
	// store: allocations made before a restart, by another path, or
	// released by GC.
	watchResync = 5 * time.Second
	// watchQueue bounds the conflict reports waiting for the store.
	watchQueue = 256
	// watchStoreTimeout bounds one conflict record's write.
	watchStoreTimeout = 5 * time.Second
)

// ipamWatch keeps this node's allocated addresses watched (core/ipam/watch)
// and turns what the watcher reports into a log line, metrics and a record
// in the store.
type ipamWatch struct {
	w       *watch.Watcher
	m       *ipam.IPAM
	node    string
	log     hclog.Logger
	metrics *telemetry.WatchMetrics
	queue   chan api.Conflict
	kick    chan struct{}
	// releases counts released calls, so that a resync overlapping one
	// is followed by another.
	releases atomic.Int64
	stop     context.CancelFunc
	wg       sync.WaitGroup

	errMu   sync.Mutex
	lastErr string // the last sync error logged, to log a changed one once

	// netnsOf is the namespace of each key's last ADD where it differs
	// from the stored attachment's (a repeated ADD does not rewrite the
	// attachment); entries go with their attachments.
	nsMu    sync.Mutex
	netnsOf map[api.AttachmentKey]string
}

func startWatch(m *ipam.IPAM, busy *watchBusy, node string, log hclog.Logger, tel *telemetry.Telemetry) (*ipamWatch, error) {
	metrics, err := telemetry.NewWatchMetrics(tel)
	if err != nil {
		return nil, err
	}
	iw := &ipamWatch{m: m, node: node, log: log, metrics: metrics,
		queue: make(chan api.Conflict, watchQueue), kick: make(chan struct{}, 1), netnsOf: map[api.AttachmentKey]string{}}
	iw.w = watch.New(watch.Options{
		Node: node, Reporter: iw, Log: log,
		Pooled:   iw.pooled,
		OnDefend: func(addr netip.Addr, pool string) { metrics.Defended(pool) },
	})
	busy.w.Store(iw.w)
	ctx, cancel := context.WithCancel(context.Background())
	iw.stop = cancel
	iw.wg.Add(2)
	go iw.syncLoop(ctx)
	go iw.storeLoop(ctx)
	return iw, nil
}

func (iw *ipamWatch) close() {
	iw.stop()
	iw.wg.Wait()
	iw.w.Close()
}

// pooled names the pool of the layer-2 domain (of this node's
// configuration) holding a.
func (iw *ipamWatch) pooled(domain string, a netip.Addr) (string, bool) {
	for _, p := range iw.m.Pools() {
		if p.Domain == domain && p.Contains(a) {
			return p.Name, true
		}
	}
	return "", false
}

// watchBusy hands the allocator the watcher's busy list (ipam.Options.Busy).
// The IPAM is built before the watcher, which needs it; until the watcher
// is set nothing is busy.
type watchBusy struct{ w atomic.Pointer[watch.Watcher] }

func (b *watchBusy) BusyIn(domain string, a netip.Addr) (api.BusyAddress, bool) {
	if w := b.w.Load(); w != nil {
		return w.BusyIn(domain, a)
	}
	return api.BusyAddress{}, false
}

func (b *watchBusy) Busy() []api.BusyAddress {
	if w := b.w.Load(); w != nil {
		return w.Busy()
	}
	return nil
}

// Report implements watch.Reporter: one warning per conflict, then a
// summary per report interval while it goes on; the store gets each.
func (iw *ipamWatch) Report(r watch.Report) {
	c := r.Conflict
	if r.New {
		iw.metrics.Detected(c.Pool)
		iw.log.Warn("address conflict: another station claims an allocated address",
			"address", c.Address, "pool", c.Pool, "workload", c.Workload, "container_id", c.ContainerID, "interface", c.Interface,
			"holder_mac", c.HolderMAC, "other_mac", c.MAC, "evidence", c.Evidence, "defended", c.Defended)
	} else {
		iw.log.Warn("address conflict continues",
			"address", c.Address, "pool", c.Pool, "workload", c.Workload, "other_mac", c.MAC,
			"frames", c.Frames, "first_seen", c.FirstSeen.Format(time.RFC3339), "defended", c.Defended)
	}
	st := iw.w.Status()
	iw.metrics.Gauges(st.Contested, st.Busy, st.Watching)
	select {
	case iw.queue <- c:
	default:
		iw.metrics.RecordDropped()
	}
}

// storeLoop writes the reports to the store, one at a time, bounded.
func (iw *ipamWatch) storeLoop(ctx context.Context) {
	defer iw.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-iw.queue:
			cctx, cancel := context.WithTimeout(ctx, watchStoreTimeout)
			if err := iw.m.RecordConflict(cctx, c); err != nil && ctx.Err() == nil {
				iw.metrics.RecordDropped()
				iw.log.Warn("cannot record an address conflict in the store", "address", c.Address, "error", err)
			}
			cancel()
		}
	}
}

// held is what the watcher watches for an attachment.
func (iw *ipamWatch) held(att api.Attachment) watch.Held {
	pools := map[string]*ipam.Pool{}
	for _, p := range iw.m.Pools() {
		pools[p.Name] = p
	}
	h := watch.Held{Key: att.AttachmentKey, Workload: att.Workload, Netns: att.Netns}
	for _, a := range att.Addresses {
		wa := watch.Addr{Addr: a.Address.Addr(), Pool: a.Pool, Domain: a.Domain}
		if p := pools[a.Pool]; p != nil {
			wa.Defend = p.Defend
			if wa.Domain == "" {
				wa.Domain = p.Domain
			}
		}
		h.Addrs = append(h.Addrs, wa)
	}
	return h
}

// added watches an allocation just made (or answered again: a restarted
// workload's ADD may bring a new MAC). A failure is logged: the address is
// given out whatever the watcher can do.
func (iw *ipamWatch) added(att api.Attachment, netns string) {
	if att.State != ipam.StateAllocated {
		return
	}
	h := iw.held(att)
	if netns != "" && netns != h.Netns {
		// A repeated ADD answers the stored attachment, whose namespace
		// is the first one's: a restarted workload is in the request's.
		h.Netns = netns
		iw.nsMu.Lock()
		iw.netnsOf[att.AttachmentKey] = netns
		iw.nsMu.Unlock()
	}
	if err := iw.w.Add(h); err != nil {
		iw.log.Warn("cannot watch an allocated address", "container_id", att.ContainerID, "interface", att.Interface, "error", err)
	}
}

// changed asks for a resync soon.
func (iw *ipamWatch) changed() {
	select {
	case iw.kick <- struct{}{}:
	default:
	}
}

// released stops watching what a release gave back. A resync lists and
// decodes every attachment in the store (5,000 allocations: tens of ms of
// CPU), which a release used to ask for each time: a storm of DELs kept a
// CPU busy with resyncs. A resync that was reading the store meanwhile may
// have seen the attachment still allocated, so the loop runs another.
func (iw *ipamWatch) released(atts []api.Attachment) {
	iw.releases.Add(1)
	for _, att := range atts {
		iw.w.Remove(att.AttachmentKey)
		iw.nsMu.Lock()
		delete(iw.netnsOf, att.AttachmentKey)
		iw.nsMu.Unlock()
	}
}

func (iw *ipamWatch) syncLoop(ctx context.Context) {
	defer iw.wg.Done()
	t := time.NewTicker(watchResync)
	defer t.Stop()
	for {
		seen := iw.releases.Load()
		iw.sync(ctx)
		if iw.releases.Load() != seen {
			iw.changed()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-iw.kick:
		}
	}
}

// sync makes the watched set this node's allocations in the store.
func (iw *ipamWatch) sync(ctx context.Context) {
	var names []string
	for _, p := range iw.m.Pools() {
		names = append(names, p.Name)
	}
	iw.metrics.Pools(names)
	cctx, cancel := context.WithTimeout(ctx, watchStoreTimeout)
	defer cancel()
	list, err := iw.m.List(cctx, "", "")
	if err != nil {
		return // the store is down: keep watching what is watched
	}
	var held []watch.Held
	iw.nsMu.Lock()
	live := map[api.AttachmentKey]bool{}
	for _, att := range list {
		if att.Node != "" && att.Node != iw.node || att.State != ipam.StateAllocated {
			continue
		}
		live[att.AttachmentKey] = true
		h := iw.held(att)
		if ns := iw.netnsOf[att.AttachmentKey]; ns != "" {
			h.Netns = ns
		}
		held = append(held, h)
	}
	for k := range iw.netnsOf {
		if !live[k] {
			delete(iw.netnsOf, k)
		}
	}
	iw.nsMu.Unlock()
	err = iw.w.Sync(cctx, held)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	iw.errMu.Lock()
	if msg != iw.lastErr && msg != "" {
		iw.log.Warn("some allocated addresses cannot be watched", "error", msg)
	}
	iw.lastErr = msg
	iw.errMu.Unlock()
	st := iw.w.Status()
	iw.metrics.Gauges(st.Contested, st.Busy, st.Watching)
}

// status is status's conflicts section.
func (iw *ipamWatch) status() *api.ConflictStatus {
	st := iw.w.Status()
	return &st
}

// IPAMConflicts implements control.IPAMWatchBackend: the store's records
// (the fleet's, on a shared store) and this agent's busy list.
func (a *Agent) IPAMConflicts(ctx context.Context, since time.Duration, addr netip.Addr) (api.ConflictsResponse, error) {
	m, err := a.ipamOn()
	if err != nil {
		return api.ConflictsResponse{}, err
	}
	list, err := m.Conflicts(ctx, since, addr)
	if err != nil {
		return api.ConflictsResponse{}, err
	}
	out := api.ConflictsResponse{Conflicts: list}
	for _, c := range a.ipam.watch.w.Contested() {
		if !addr.IsValid() || c.Address == addr {
			out.Contested = append(out.Contested, c)
		}
	}
	for _, b := range a.ipam.watch.w.Busy() {
		if !addr.IsValid() || b.Address == addr {
			out.Busy = append(out.Busy, b)
		}
	}
	return out, nil
}

var _ control.IPAMWatchBackend = (*Agent)(nil)
