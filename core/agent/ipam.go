package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/config/pools"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/linkup"
	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
)

// ipamService is the IPAM of a running daemon: the pools of
// --ipam-config-dir over the embedded store, a GC loop, and the usage
// gauges kept fresh.
type ipamService struct {
	m      *ipam.IPAM
	store  ipam.Store
	bolt   *boltstore.Store // the embedded store; nil with etcd
	shared *sharedStore     // nil with the embedded store
	node   string
	// failLogged: the embedded store's failure was logged.
	failLogged atomic.Bool
	metrics    *telemetry.IPAMMetrics
	dir        string
	dbPath     string
	spool      string // the CNI spool
	log        hclog.Logger
	dirty      atomic.Bool
	usage      atomic.Pointer[[]api.PoolUsage] // last computed
	stop       context.CancelFunc
	done       chan struct{}
	mu         sync.Mutex // serialises reloads
	watch      *ipamWatch // the watcher of allocated addresses

	// outageWait: how long an allocation or release rides through an
	// unreachable etcd (0 with the embedded store).
	outageWait time.Duration
}

// usageRefresh is how often the pool gauges are recomputed after a change.
const usageRefresh = 5 * time.Second

// startIPAM opens the store, loads the pools and releases reservations a
// killed agent left; nil when --ipam-config-dir is not given (IPAM off).
func (a *Agent) startIPAM(ctx context.Context, cfg *config.Config) (*ipamService, error) {
	if cfg.IPAMConfigDir == "" {
		return nil, nil
	}
	res, err := pools.Load(cfg.IPAMConfigDir, cfg.IPAM.MaxAllocatedIPs)
	if err != nil {
		return nil, err
	}
	node, err := cfg.ResolvedNodeName()
	if err != nil {
		return nil, err
	}
	kind, err := poolsStore(cfg, res.Pools)
	if err != nil {
		return nil, err
	}
	var (
		store  ipam.Store
		bolt   *boltstore.Store
		shared *sharedStore
		alive  func(context.Context, string) (bool, time.Time, error)
	)
	if kind == ipam.StoreEtcd {
		shared, err = openShared(ctx, cfg, node, a.log.Named("ipam.etcd"))
		if err != nil {
			return nil, err
		}
		shared.checkPools(ctx, res.Pools)
		store, alive = shared.store, shared.store.NodeAlive
	} else {
		// A damaged file stops the start here, naming the file and what
		// to do: the agent never starts on an emptied store.
		bs, err := boltstore.Open(cfg.IPAM.DBPath, boltstore.Options{})
		if err != nil {
			return nil, err
		}
		if n := bs.Migrated(); n > 0 {
			a.log.Named("ipam").Info("moved address records to the per-domain layout", "records", n, "db", cfg.IPAM.DBPath)
		}
		store, bolt = bs, bs
	}
	started := false
	defer func() {
		if !started {
			store.Close()
		}
	}()
	metrics, err := telemetry.NewIPAMMetrics(a.tel)
	if err != nil {
		return nil, err
	}
	busy := &watchBusy{}
	m, err := ipam.New(ipam.Options{
		Store: store, Pools: res.Pools, Checker: ipamChecker{a: a, detectors: cfg.IPAM.Detectors}, Links: &linkup.Netlink{}, Metrics: metrics,
		Logger: a.log.Named("ipam"), Node: node, NodeAlive: alive,
		MaxHistory: cfg.IPAM.MaxHistoryRecords, Retention: cfg.IPAM.WorkloadRetention, MaxRetries: cfg.IPAM.UpdateMaxRetries,
		GCGrace: cfg.IPAM.GCGracePeriod, AllocationTimeout: cfg.IPAM.AllocationTimeout, Busy: busy,
	})
	if err != nil {
		return nil, err
	}
	if shared != nil {
		// The shared store has no file format to bump: every agent moves
		// what the old per-pool layout left (idempotent, compare-guarded)
		// and allocates only once it is moved; etcd down leaves it to the
		// loop.
		if err := shared.migrate(ctx, m); err != nil {
			return nil, err
		}
	} else if err := m.CheckDomains(ctx); err != nil {
		return nil, fmt.Errorf("IPAM: %w", err)
	}
	n, err := m.Recover(ctx)
	if err != nil && shared == nil {
		return nil, fmt.Errorf("IPAM: %w", err)
	}
	if err != nil {
		// etcd down at start: IPAM starts without it and says so.
		a.log.Named("ipam").Warn("cannot release this node's dangling reservations yet", "error", err)
	}
	s := &ipamService{m: m, store: store, bolt: bolt, node: node, shared: shared, metrics: metrics, dir: cfg.IPAMConfigDir, dbPath: cfg.IPAM.DBPath,
		spool: cfg.IPAM.CNISpoolDir, log: a.log.Named("ipam"), done: make(chan struct{})}
	if shared != nil {
		s.dbPath = ""
		s.outageWait = cfg.Etcd.OutageWait
	}
	// DELs the plugin could not deliver while the agent was away are
	// applied before any allocation is served: their addresses are free
	// for the first ADD.
	spooled := applySpool(ctx, m, s.spool, s.log)
	if _, err := s.poolUsage(ctx); err != nil && shared == nil {
		return nil, fmt.Errorf("IPAM: %w", err)
	}
	var names []string
	for _, p := range res.Pools {
		names = append(names, p.Name)
	}
	a.log.Info("IPAM on", "config_dir", cfg.IPAMConfigDir, "store", kind, "node", node, "db", s.dbPath, "pools", fmt.Sprint(names), "dangling_reservations_released", n, "cni_spool", s.spool, "spooled_dels_released", spooled)
	if s.watch, err = startWatch(m, busy, node, a.log.Named("ipam.watch"), a.tel); err != nil {
		return nil, fmt.Errorf("IPAM: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.loop(loopCtx, a, cfg.IPAM.GCInterval)
	started = true
	return s, nil
}

// loop runs GC every interval and refreshes the usage gauges after changes.
func (s *ipamService) loop(ctx context.Context, a *Agent, interval time.Duration) {
	defer close(s.done)
	gc := time.NewTicker(interval)
	defer gc.Stop()
	usage := time.NewTicker(usageRefresh)
	defer usage.Stop()
	spool := time.NewTicker(spoolInterval)
	defer spool.Stop()
	var watch <-chan time.Time
	if s.shared != nil {
		w := time.NewTicker(time.Second)
		defer w.Stop()
		watch = w.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch:
			s.shared.logChange()
		case <-spool.C:
			if applySpool(ctx, s.m, s.spool, s.log) > 0 {
				s.dirty.Store(true)
			}
		case <-gc.C:
			res, err := s.m.GC(ctx)
			if err != nil && ctx.Err() == nil {
				a.log.Named("ipam").Warn("GC pass failed", "error", err)
			} else if len(res.Reclaimed) > 0 {
				s.dirty.Store(true)
			}
			if _, err := s.m.PruneConflicts(ctx); err != nil && ctx.Err() == nil {
				a.log.Named("ipam").Warn("pruning old conflict records failed", "error", err)
			}
		case <-usage.C:
			if err := s.failed(); err != nil && !s.failLogged.Swap(true) {
				a.log.Named("ipam").Error("the IPAM store failed; IPAM answers not ready until the agent is restarted on a good store", "error", err)
			}
			if s.shared != nil {
				// Other nodes change a shared pool: usage is never cached for
				// long; pool definitions not yet checked are checked again.
				_ = s.shared.migrate(ctx, s.m) // a refusal is logged and blocks allocations
				s.shared.checkPools(ctx, s.m.Pools())
				s.dirty.Store(true)
			}
			if s.dirty.Load() {
				_, _ = s.poolUsage(ctx)
			}
		}
	}
}

func (s *ipamService) close() {
	s.stop()
	<-s.done
	s.watch.close()
	if s.shared != nil {
		s.shared.close()
		return
	}
	s.store.Close()
}

// reload reads the pools again; a refused change leaves the running pools.
func (s *ipamService) reload(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := pools.Load(cfg.IPAMConfigDir, cfg.IPAM.MaxAllocatedIPs)
	if err != nil {
		return err
	}
	kind, err := poolsStore(cfg, res.Pools)
	if err != nil {
		return err
	}
	if (kind == ipam.StoreEtcd) != (s.shared != nil) {
		return fmt.Errorf("IPAM: a reload cannot move the pools between the embedded store and etcd; restart the agent")
	}
	if s.shared != nil {
		s.shared.forget()
		s.shared.checkPools(ctx, res.Pools)
	}
	old := s.m.Pools()
	if err := s.m.SetPools(ctx, res.Pools); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, p := range res.Pools {
		keep[p.Name] = true
	}
	for _, p := range old {
		if !keep[p.Name] {
			s.metrics.ForgetPool(p.Name)
		}
	}
	_, err = s.poolUsage(ctx)
	return err
}

// poolUsage computes every pool's usage (and the gauges) and caches it.
func (s *ipamService) poolUsage(ctx context.Context) ([]api.PoolUsage, error) {
	s.dirty.Store(false)
	u, err := s.m.Usage(ctx)
	if err != nil {
		s.dirty.Store(true)
		return nil, err
	}
	s.usage.Store(&u)
	return u, nil
}

// failed is the embedded store's failure (a damaged page met while
// running), or nil.
func (s *ipamService) failed() error {
	if s.bolt == nil {
		return nil
	}
	return s.bolt.Failed()
}

// status is cheap when nothing changed: health and liveness ask often.
func (s *ipamService) status(ctx context.Context) *api.Status {
	w := s.m.Workloads()
	st := &api.Status{Enabled: true, Dir: s.dir, DBPath: s.dbPath, Workloads: &w, Conflicts: s.watch.status()}
	if s.shared != nil {
		st.Store = s.shared.status()
	}
	if err := s.failed(); err != nil {
		// Readiness holds back (ipam-store) like a shared store that is
		// down: no allocation is made on a file bbolt cannot read.
		st.Store = &api.StoreStatus{Kind: ipam.StoreLocal, Node: s.node, Up: false, Error: err.Error()}
		st.Error = err.Error()
		return st
	}
	if p := s.usage.Load(); p != nil && !s.dirty.Load() {
		st.Pools = *p
		return st
	}
	usage, err := s.poolUsage(ctx)
	if err != nil {
		st.Error = err.Error()
	}
	st.Pools = usage
	return st
}

// errIPAMOff answers IPAM calls when --ipam-config-dir was not given.
var errIPAMOff = &ipam.Error{Code: api.CodeDisabled, Msg: "IPAM is off: start the agent with --ipam-config-dir (packaged: /etc/spiderpool/ipam.d)"}

func (a *Agent) ipamOn() (*ipam.IPAM, error) {
	if a.ipam == nil {
		return nil, errIPAMOff
	}
	if a.stopping.Load() {
		return nil, &ipam.Error{Code: api.CodeNotReady, Msg: "spiderpool-agent is stopping; try again", Err: control.ErrNotReady}
	}
	if err := a.ipam.failed(); err != nil {
		return nil, &ipam.Error{Code: api.CodeNotReady, Msg: err.Error(), Err: control.ErrNotReady}
	}
	return a.ipam.m, nil
}

// ipamChanging starts a call that may change the store: IPAM must be on
// (ipamOn), the call counts as work for the memory reclaimer, and once it
// returns the cached pool usage is stale. The caller defers done.
func (a *Agent) ipamChanging() (m *ipam.IPAM, done func(), err error) {
	end := a.work.Begin()
	m, err = a.ipamOn()
	if err != nil {
		end()
		return nil, nil, err
	}
	return m, func() {
		a.ipam.dirty.Store(true)
		end()
	}, nil
}

func (a *Agent) ipamStatus(ctx context.Context) *api.Status {
	if a.ipam == nil {
		return &api.Status{Enabled: false, Reason: "no --ipam-config-dir given"}
	}
	return a.ipam.status(ctx)
}

// IPAMAllocate implements control.IPAMBackend.
func (a *Agent) IPAMAllocate(ctx context.Context, req api.AllocateRequest) (api.Attachment, error) {
	m, done, err := a.ipamChanging()
	if err != nil {
		return api.Attachment{}, err
	}
	defer done()
	var att api.Attachment
	err = rideOutage(ctx, a.ipam.outageWait, func(ctx context.Context) error {
		if sh := a.ipam.shared; sh != nil {
			if err := sh.usable(req.Pools); err != nil {
				return err
			}
		}
		var err error
		att, err = m.Allocate(ctx, req)
		return err
	})
	if err == nil {
		a.ipam.watch.added(att, req.Netns)
	}
	return att, err
}

// IPAMRelease implements control.IPAMBackend.
func (a *Agent) IPAMRelease(ctx context.Context, req api.ReleaseRequest) (api.ReleaseResponse, error) {
	m, done, err := a.ipamChanging()
	if err != nil {
		return api.ReleaseResponse{}, err
	}
	defer done()
	key := api.AttachmentKey{ContainerID: req.ContainerID, Interface: req.Interface}
	out := api.ReleaseResponse{Released: []api.Attachment{}}
	defer func() { a.ipam.watch.released(out.Released) }()
	var (
		att      api.Attachment
		released bool
	)
	err = rideOutage(ctx, a.ipam.outageWait, func(ctx context.Context) error {
		var err error
		if req.IfNetwork != "" {
			att, released, err = m.ReleaseIfNetwork(ctx, key, req.IfNetwork)
		} else {
			att, released, err = m.Release(ctx, key)
		}
		return err
	})
	switch {
	case released:
		out.Released = append(out.Released, att)
	case att.ContainerID != "":
		// ReleaseIfNetwork keeps another origin's allocation.
		out.Kept = append(out.Kept, att)
	}
	return out, err
}

// IPAMReleaseWorkload implements control.IPAMBackend.
func (a *Agent) IPAMReleaseWorkload(ctx context.Context, workload string) (api.ReleaseResponse, error) {
	m, done, err := a.ipamChanging()
	if err != nil {
		return api.ReleaseResponse{}, err
	}
	defer done()
	list, err := m.ReleaseWorkload(ctx, workload)
	if list == nil {
		list = []api.Attachment{}
	}
	a.ipam.watch.released(list)
	return api.ReleaseResponse{Released: list}, err
}

// IPAMGet implements control.IPAMBackend.
func (a *Agent) IPAMGet(ctx context.Context, key api.AttachmentKey) (api.Attachment, bool, error) {
	m, err := a.ipamOn()
	if err != nil {
		return api.Attachment{}, false, err
	}
	return m.Get(ctx, key)
}

// IPAMList implements control.IPAMBackend.
func (a *Agent) IPAMList(ctx context.Context, pool, workload string) (json.RawMessage, error) {
	m, err := a.ipamOn()
	if err != nil {
		return nil, err
	}
	return m.ListJSON(ctx, pool, workload)
}

// IPAMGC implements control.IPAMBackend.
func (a *Agent) IPAMGC(ctx context.Context) (api.GCResult, error) {
	m, done, err := a.ipamChanging()
	if err != nil {
		return api.GCResult{}, err
	}
	defer done()
	return m.GC(ctx)
}

// IPAMPools implements control.IPAMBackend.
func (a *Agent) IPAMPools(ctx context.Context) ([]api.PoolUsage, error) {
	if _, err := a.ipamOn(); err != nil {
		return nil, err
	}
	u, err := a.ipam.poolUsage(ctx)
	if u == nil {
		u = []api.PoolUsage{}
	}
	return u, err
}

// IPAMHistory implements control.IPAMBackend.
func (a *Agent) IPAMHistory(ctx context.Context, workload string, addr netip.Addr) ([]api.HistoryRecord, error) {
	m, err := a.ipamOn()
	if err != nil {
		return nil, err
	}
	if workload == "" {
		return m.WhoHad(ctx, addr)
	}
	ep, err := m.History(ctx, workload)
	if err != nil {
		return nil, err
	}
	out := []api.HistoryRecord{}
	for _, h := range ep.History {
		out = append(out, api.HistoryRecord{Workload: ep.Workload, HistoryEntry: h})
	}
	return out, nil
}

// IPAMBackup implements control.IPAMStoreBackend: a consistent copy of
// the embedded store while allocations go on.
func (a *Agent) IPAMBackup(ctx context.Context, req api.BackupRequest) (api.BackupResult, error) {
	defer a.work.Begin()()
	if _, err := a.ipamOn(); err != nil {
		return api.BackupResult{}, err
	}
	if a.ipam.bolt == nil {
		return api.BackupResult{}, &ipam.Error{Code: api.CodeBadRequest, Msg: "the pools are in etcd: back up etcd itself (etcdctl snapshot save FILE, on an etcd member); ipam backup copies the embedded store (ipam.db_path)"}
	}
	start := time.Now()
	info, err := a.ipam.bolt.Backup(ctx, req.Path, req.Force)
	if err != nil {
		return api.BackupResult{}, &ipam.Error{Code: api.CodeBadRequest, Msg: err.Error(), Err: err}
	}
	a.log.Named("ipam").Info("store backed up", "file", info.Path, "bytes", info.Bytes, "revision", info.Revision)
	return api.BackupResult{Path: info.Path, Store: a.ipam.dbPath, Bytes: info.Bytes, Revision: info.Revision,
		DurationMs: float64(time.Since(start).Microseconds()) / 1000}, nil
}

// IPAMCheck implements control.IPAMStoreBackend: bbolt's check and
// ipam.Consistent on one snapshot of the embedded store; Consistent on
// etcd (read key range by key range: an allocation committed meanwhile
// can show as a problem that a second check no longer finds).
func (a *Agent) IPAMCheck(ctx context.Context) (api.StoreCheckResult, error) {
	if a.ipam == nil {
		return api.StoreCheckResult{}, errIPAMOff
	}
	start := time.Now()
	if bs := a.ipam.bolt; bs != nil {
		n, err := bs.Check(ctx)
		return ipam.CheckReport(bs.Path(), n, err, time.Since(start))
	}
	all, err := a.ipam.store.List(ctx, "")
	if err != nil {
		return api.StoreCheckResult{}, err
	}
	err = ipam.Consistent(ctx, a.ipam.store)
	return ipam.CheckReport(ipam.StoreEtcd, len(all), err, time.Since(start))
}

// IPAMAddress implements control.IPAMBackend.
func (a *Agent) IPAMAddress(ctx context.Context, addr netip.Addr) (api.AddressInfo, error) {
	m, err := a.ipamOn()
	if err != nil {
		return api.AddressInfo{}, err
	}
	recs, err := m.AddressState(ctx, addr)
	if err != nil {
		return api.AddressInfo{}, err
	}
	hist, err := m.WhoHad(ctx, addr)
	if err != nil {
		return api.AddressInfo{}, err
	}
	info := api.AddressInfo{Address: addr, Records: recs, History: hist}
	for _, b := range a.ipam.watch.w.Busy() {
		if b.Address == addr {
			info.Busy = append(info.Busy, b)
		}
	}
	return info, nil
}

var (
	_ control.IPAMBackend      = (*Agent)(nil)
	_ control.IPAMStoreBackend = (*Agent)(nil)
)
