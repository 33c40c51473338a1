// Package watch keeps the addresses the agent gave out under watch after
// allocation (RFC 5227 section 2.4, RFC 4862 5.4): one passive packet
// socket per allocated workload interface, inside the workload's network
// namespace, reads the ARP and ND frames visible there and reports a claim
// of a held address from a MAC that is not the interface's own. A pool
// with defend on answers a claim the way RFC 5227 2.4(b) and n-acd do:
// one announcement from the workload's interface, at most once per
// DefendInterval per address. Claims of pool addresses the agent does not
// hold are remembered for a while (per layer-2 domain) so that the
// allocator skips them without a probe window.
//
// Frames are parsed, filtered and judged by sdk/arpnd, the same code the
// probe engine of the detector plugins uses.
//
// Bounds, whatever the wire sends: one socket and one reader per watched
// interface (MaxInterfaces), a BPF filter that passes only ARP and ND,
// a receive buffer of ReceiveBuffer bytes (frames beyond it are dropped by
// the kernel, not queued), at most MaxMACsPerAddress conflicts per address,
// at most MaxBusy remembered busy addresses, and reports rate-limited: a
// new conflict is reported at once (within the reader's latency), later
// frames of it only in a summary every ReportInterval.
package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/arpnd"
)

// Defaults.
const (
	// DefendInterval is the least time between two announcements for one
	// address (RFC 5227's DEFEND_INTERVAL): two defenders on one LAN
	// then cost the LAN one frame each per interval, never a storm.
	DefendInterval = 10 * time.Second
	// ReportInterval is the least time between two reports of one
	// conflict after its first.
	ReportInterval = 10 * time.Second
	// ContestedFor is how long a held address counts as contested after
	// the last foreign claim; the conflict is then forgotten here (the
	// store keeps it for the retention).
	ContestedFor = 5 * time.Minute
	// BusyFor is how long a claimed pool address that the agent does not
	// hold is skipped by candidate searches.
	BusyFor          = 10 * time.Minute
	MaxMACsPerAddr   = 4
	MaxBusy          = 4096
	MaxInterfaces    = 4096
	ReceiveBuffer    = 1 << 20
	macRefreshPeriod = time.Second
)

// busyKey is an address within its layer-2 domain, as the store keys it:
// two domains may use the same ranges.
type busyKey struct {
	domain string
	addr   netip.Addr
}

// Addr is one held address of a watched interface.
type Addr struct {
	Addr   netip.Addr
	Pool   string
	Domain string
	// Defend: answer a foreign claim with one announcement.
	Defend bool
}

// Held is an allocation's interface to watch.
type Held struct {
	Key      api.AttachmentKey
	Workload string
	Netns    string
	Addrs    []Addr
}

// Report is a conflict to report: New for the first frame of a conflict,
// then summaries (New false) while frames keep coming.
type Report struct {
	api.Conflict
	New bool
}

// Reporter gets the reports. Calls come from the readers and the sweep,
// never concurrently for one conflict; it must not block for long (a
// report to a store goes through a queue of its own).
type Reporter interface {
	Report(Report)
}

// Options configure a Watcher.
type Options struct {
	Node     string
	Reporter Reporter
	Log      hclog.Logger
	// Pooled says which pool of the layer-2 domain an address not held
	// belongs to, for the busy list; nil learns nothing.
	Pooled func(domain string, a netip.Addr) (pool string, ok bool)
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// OnDefend is called after each announcement sent (tests, metrics).
	OnDefend func(addr netip.Addr, pool string)
}

// Watcher watches the held addresses of this node's allocations.
type Watcher struct {
	o   Options
	now func() time.Time

	mu     sync.Mutex
	ifaces map[api.AttachmentKey]*iface
	closed bool

	busyMu sync.Mutex
	busy   map[busyKey]api.BusyAddress
	// held are the addresses of every watched interface: a claim seen on
	// one interface of an address another watched interface holds is not
	// learned as busy (it is this agent's own workload talking), so a
	// released address is not skipped for BusyFor afterwards.
	held atomic.Pointer[map[busyKey]bool]

	detected atomic.Uint64
	latest   atomic.Pointer[api.Conflict]
	errMu    sync.Mutex
	lastErr  string

	// closing counts the sockets of released interfaces still closing:
	// closing a packet socket bound to an interface waits for an RCU
	// grace period (9-18 ms here), which a release's answer need not wait
	// for. Close waits for them.
	closing sync.WaitGroup

	stop chan struct{}
	done chan struct{}
}

// New starts a Watcher with nothing to watch; Sync gives it allocations.
func New(o Options) *Watcher {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	w := &Watcher{o: o, now: o.Now, ifaces: map[api.AttachmentKey]*iface{},
		busy: map[busyKey]api.BusyAddress{}, stop: make(chan struct{}), done: make(chan struct{})}
	if w.now == nil {
		w.now = time.Now
	}
	go w.sweepLoop()
	return w
}

// Sync makes the watched set equal held: new interfaces are opened, gone
// ones closed, a changed namespace reopened, and the held addresses and
// pool settings of the others updated. Every Sync re-reads each watched
// interface's MAC (a restarted workload may come back with a new one). It
// returns the errors of interfaces it could not open, joined; the others
// are watched.
func (w *Watcher) Sync(ctx context.Context, held []Held) error {
	want := map[api.AttachmentKey]Held{}
	for _, h := range held {
		if h.Netns == "" || len(h.Addrs) == 0 {
			continue // nothing visible to watch (a VM without a namespace)
		}
		want[h.Key] = h
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("watcher closed")
	}
	var stale []*iface
	for k, ifc := range w.ifaces {
		if h, ok := want[k]; !ok || h.Netns != ifc.netns || !ifc.sameNetns() {
			stale = append(stale, ifc)
			delete(w.ifaces, k)
		}
	}
	var open []Held
	for k, h := range want {
		if ifc := w.ifaces[k]; ifc != nil {
			ifc.setAddrs(h)
			continue
		}
		open = append(open, h)
	}
	existing := slices.Collect(maps.Values(w.ifaces))
	w.mu.Unlock()
	for _, ifc := range stale {
		ifc.close()
	}
	for _, ifc := range existing {
		ifc.refreshMAC(true)
	}
	var errs []error
	for _, h := range open {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		w.mu.Lock()
		full := len(w.ifaces) >= MaxInterfaces
		w.mu.Unlock()
		if full {
			errs = append(errs, fmt.Errorf("watch %s/%s: already watching %d interfaces", h.Key.ContainerID, h.Key.Interface, MaxInterfaces))
			continue
		}
		ifc, err := w.open(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.mu.Lock()
		if w.closed || w.ifaces[h.Key] != nil {
			w.mu.Unlock()
			ifc.close()
			continue
		}
		w.ifaces[h.Key] = ifc
		ifc.start()
		w.mu.Unlock()
	}
	w.rebuildHeld()
	err := errors.Join(errs...)
	w.errMu.Lock()
	w.lastErr = ""
	if err != nil {
		w.lastErr = err.Error()
	}
	w.errMu.Unlock()
	return err
}

// Add watches one allocation's interface now (the allocation's answer
// waits for it, so that no claim made right after it is missed), or
// updates it and reads its MAC again when it is watched already: an ADD of
// a restarted workload may bring a new MAC.
func (w *Watcher) Add(h Held) error {
	if h.Netns == "" || len(h.Addrs) == 0 {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("watcher closed")
	}
	old := w.ifaces[h.Key]
	if old != nil && old.netns == h.Netns && old.sameNetns() {
		old.setAddrs(h)
		w.mu.Unlock()
		old.refreshMAC(true)
		w.rebuildHeld()
		return nil
	}
	full := old == nil && len(w.ifaces) >= MaxInterfaces
	w.mu.Unlock()
	if full {
		return fmt.Errorf("watch %s/%s: already watching %d interfaces", h.Key.ContainerID, h.Key.Interface, MaxInterfaces)
	}
	ifc, err := w.open(h)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		ifc.close()
		return errors.New("watcher closed")
	}
	prev := w.ifaces[h.Key]
	w.ifaces[h.Key] = ifc
	ifc.start()
	if prev != nil {
		w.retireLocked(prev)
	}
	w.mu.Unlock()
	w.rebuildHeld()
	return nil
}

// retireLocked stops ifc judging frames at once and closes its socket in
// the background (see closing). w.mu is held and w is not closed, so
// Close, which takes w.mu first, waits for the close.
func (w *Watcher) retireLocked(ifc *iface) {
	ifc.retired.Store(true)
	w.closing.Add(1)
	go func() {
		defer w.closing.Done()
		ifc.close()
	}()
}

// rebuildHeld collects the addresses every watched interface holds and
// forgets what the busy list says of them: an address this agent gave out
// is the store's business, and once released it is free again at once
// unless another station claims it afresh.
func (w *Watcher) rebuildHeld() {
	w.mu.Lock()
	ifs := slices.Collect(maps.Values(w.ifaces))
	w.mu.Unlock()
	held := map[busyKey]bool{}
	for _, ifc := range ifs {
		ifc.mu.Lock()
		for a, ha := range ifc.addrs {
			held[busyKey{ha.Domain, a}] = true
		}
		ifc.mu.Unlock()
	}
	w.held.Store(&held)
	w.busyMu.Lock()
	for k := range w.busy {
		if held[k] {
			delete(w.busy, k)
		}
	}
	w.busyMu.Unlock()
}

// Remove stops watching key's interface: its allocation was released. A
// key not watched is nothing to do.
func (w *Watcher) Remove(key api.AttachmentKey) {
	w.mu.Lock()
	ifc := w.ifaces[key]
	delete(w.ifaces, key)
	if ifc != nil {
		w.retireLocked(ifc)
	}
	w.mu.Unlock()
	if ifc != nil {
		w.rebuildHeld()
	}
}

// Close stops every reader and closes every socket.
func (w *Watcher) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	all := w.ifaces
	w.ifaces = map[api.AttachmentKey]*iface{}
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	for _, ifc := range all {
		ifc.close()
	}
	w.closing.Wait()
}

// Status is the summary status shows.
func (w *Watcher) Status() api.ConflictStatus {
	st := api.ConflictStatus{Detected: w.detected.Load(), Latest: w.latest.Load()}
	w.mu.Lock()
	st.Watching = len(w.ifaces)
	ifs := slices.Collect(maps.Values(w.ifaces))
	w.mu.Unlock()
	addrs := map[netip.Addr]bool{}
	for _, ifc := range ifs {
		for _, c := range ifc.contested(w.now()) {
			addrs[c.Address] = true
		}
	}
	st.Contested = len(addrs)
	st.Busy = len(w.Busy())
	w.errMu.Lock()
	st.Error = w.lastErr
	w.errMu.Unlock()
	return st
}

// Contested returns the conflicts of held addresses seen within
// ContestedFor, newest first.
func (w *Watcher) Contested() []api.Conflict {
	w.mu.Lock()
	ifs := slices.Collect(maps.Values(w.ifaces))
	w.mu.Unlock()
	var out []api.Conflict
	now := w.now()
	for _, ifc := range ifs {
		out = append(out, ifc.contested(now)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out
}

// Busy returns the pool addresses seen claimed that the agent does not
// hold, still within BusyFor.
func (w *Watcher) Busy() []api.BusyAddress {
	now := w.now()
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	out := make([]api.BusyAddress, 0, len(w.busy))
	for _, b := range w.busy {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// BusyIn returns the busy entry of addr in the layer-2 domain while it is
// within BusyFor: the candidate search of the allocator skips it.
func (w *Watcher) BusyIn(domain string, addr netip.Addr) (api.BusyAddress, bool) {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	b, ok := w.busy[busyKey{domain, addr}]
	if !ok || !w.now().Before(b.Until) {
		return api.BusyAddress{}, false
	}
	return b, true
}

// learnBusy remembers a claim of an address not held here. A full list
// takes nothing new until entries expire: a flood of made-up addresses
// cannot grow it, and costs only the skip it would have saved.
func (w *Watcher) learnBusy(domain string, c arpnd.Claim, now time.Time) {
	if w.o.Pooled == nil || c.Evidence == arpnd.EvidenceARPProbe || c.Evidence == arpnd.EvidenceDADProbe {
		return // a probe is a question, not a holder
	}
	k := busyKey{domain, c.Addr}
	if h := w.held.Load(); h != nil && (*h)[k] {
		return // held by another interface watched here: this agent's own workload
	}
	pool, ok := w.o.Pooled(k.domain, c.Addr)
	if !ok {
		return
	}
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if _, had := w.busy[k]; !had && len(w.busy) >= MaxBusy {
		return
	}
	w.busy[k] = api.BusyAddress{Address: c.Addr, Pool: pool, Domain: k.domain, MAC: net.HardwareAddr(c.MAC[:]).String(),
		Evidence: c.Evidence, Seen: now, Until: now.Add(BusyFor)}
}

// sweepLoop sends the summaries of conflicts with unreported frames and
// forgets what expired.
func (w *Watcher) sweepLoop() {
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := w.now()
		w.mu.Lock()
		ifs := slices.Collect(maps.Values(w.ifaces))
		w.mu.Unlock()
		for _, ifc := range ifs {
			ifc.sweep(now)
		}
		w.busyMu.Lock()
		for a, b := range w.busy {
			if !now.Before(b.Until) {
				delete(w.busy, a)
			}
		}
		w.busyMu.Unlock()
	}
}

func (w *Watcher) report(r Report) {
	if r.New {
		w.detected.Add(1)
		c := r.Conflict
		w.latest.Store(&c)
	}
	if w.o.Reporter != nil {
		w.o.Reporter.Report(r)
	}
}
