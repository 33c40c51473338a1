// Vetting: the reserved addresses checked on the wire by the Checker, and
// what a detector's block does to a candidate (skip, quarantine, fail).

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// needsCheck says whether vet has anything to check for this allocation:
// whether any of its pools enables a detector the request does not skip.
func (a *allocation) needsCheck() bool {
	for _, p := range a.pools {
		if a.needsCheckIn(p) {
			return true
		}
	}
	return false
}

func (a *allocation) needsCheckIn(p *Pool) bool {
	return a.detects(p, api.DetectionConflict) || a.detects(p, api.DetectionGateway)
}

// detects says whether vet runs detection d for p: the pool enables it
// and the request does not skip it.
func (a *allocation) detects(p *Pool, d string) bool {
	return a.poolEnables(p, d) && a.skipOf(p, d) == nil
}

func (a *allocation) poolEnables(p *Pool, d string) bool {
	switch d {
	case api.DetectionConflict:
		return p.ConflictDetection
	case api.DetectionGateway:
		return p.GatewayDetection
	}
	return false
}

// skipOf is the request's skip of detection d for p, or nil.
func (a *allocation) skipOf(p *Pool, d string) *api.DetectionSkip {
	for i, sk := range a.req.SkipDetection {
		if sk.Detection == d && (sk.Pool == "" || sk.Pool == p.Name) {
			return &a.req.SkipDetection[i]
		}
	}
	return nil
}

// notChecked lists, per pool, the detections the pool enables that the
// request skips: what the attachment records as not checked. A skip of a
// detection the pool does not enable changes nothing and is not listed.
func (a *allocation) notChecked() []api.DetectionSkip {
	var out []api.DetectionSkip
	for _, p := range a.pools {
		for _, d := range []string{api.DetectionConflict, api.DetectionGateway} {
			if sk := a.skipOf(p, d); sk != nil && a.poolEnables(p, d) {
				out = append(out, api.DetectionSkip{Pool: p.Name, Detection: d, Reason: sk.Reason})
			}
		}
	}
	return out
}

// vet checks the reserved addresses on the wire until each passed, one was
// blocked, or a pool ran out of tries.
func (a *allocation) vet(ctx context.Context) (err error) {
	m := a.m
	pending := map[string]bool{}
	for _, p := range a.pools {
		if a.needsCheckIn(p) {
			pending[p.Name] = true
		}
	}
	if len(pending) == 0 {
		return nil
	}
	if m.checker == nil {
		return ipamErr(api.CodeCheckFailed, nil, "pool(s) need detection but no detector is available")
	}
	// Only inside a workload's namespace: the agent never changes the
	// state of the node's own interfaces.
	if a.req.Netns != "" {
		netnsPath, iface := a.req.Netns, a.req.Interface
		t0 := time.Now()
		done, upErr := bounded(ctx, func() (func(AfterProbe), error) {
			return m.links.EnsureUp(ctx, netnsPath, iface)
		}, func(done func(AfterProbe), err error) {
			if err == nil {
				done(PutDown)
			}
		})
		a.took.linkUp += time.Since(t0)
		if upErr != nil {
			return &Error{Code: api.CodeCheckFailed, Err: upErr, Msg: fmt.Sprintf("cannot probe on %s: %v", where(a.req.Netns, a.req.Interface), upErr)}
		}
		// err is vet's answer: only a passed check leaves the interface up.
		defer func() {
			t0 := time.Now()
			done(a.afterProbe(err))
			a.took.linkDown += time.Since(t0)
		}()
	}
	for len(pending) > 0 {
		var creq api.Check
		creq.Netns, creq.Interface = a.req.Netns, a.req.Interface
		var order []*Pool
		for _, p := range a.pools {
			if !pending[p.Name] {
				continue
			}
			ip := a.addressOf(p.Name)
			ca := api.CheckAddress{Address: ip.Address, Conflict: a.detects(p, api.DetectionConflict)}
			if a.detects(p, api.DetectionGateway) {
				ca.Gateway = p.Gateway
			}
			creq.Addresses = append(creq.Addresses, ca)
			order = append(order, p)
		}
		t0 := time.Now()
		res, err := bounded(ctx, func() ([]CheckResult, error) { return m.checker.Check(ctx, creq) }, nil)
		a.took.check += time.Since(t0)
		if err != nil {
			code := api.CodeCheckFailed
			if errors.Is(err, ErrNotReady) {
				code = api.CodeNotReady
			}
			return &Error{Code: code, Err: err, Skipped: a.skipped, Msg: fmt.Sprintf("check on %s: %v", where(a.req.Netns, a.req.Interface), err)}
		}
		if len(res) != len(order) {
			return ipamErr(api.CodeCheckFailed, a.skipped, "check answered %d results for %d addresses", len(res), len(order))
		}
		// Unreachable, refusals and errors first: another address would
		// not help. Every pool that failed is named, each with its reason.
		var failed []*Error
		for i, r := range res {
			ip := a.addressOf(order[i].Name)
			switch r.Outcome {
			case OutcomeUnreachable:
				failed = append(failed, ipamErr(api.CodeGateway, nil, "pool %q: %s (address %s not given out)", order[i].Name, r.Reason, ip.Address.Addr()))
			case OutcomeBlocked:
				failed = append(failed, ipamErr(api.CodeBlocked, nil, "pool %q: %s is blocked: %s", order[i].Name, ip.Address.Addr(), r.Reason))
			case OutcomeError:
				failed = append(failed, ipamErr(api.CodeCheckFailed, nil, "pool %q: %s could not be checked: %s", order[i].Name, ip.Address.Addr(), r.Reason))
			case OutcomeFree, OutcomeConflict, OutcomePolicy:
			default:
				failed = append(failed, ipamErr(api.CodeCheckFailed, nil, "pool %q: unknown check outcome %q", order[i].Name, r.Outcome))
			}
		}
		if len(failed) > 0 {
			return poolsFailed(a.skipped, failed)
		}
		for i, r := range res {
			p := order[i]
			if r.Outcome == OutcomeFree {
				delete(pending, p.Name)
				continue
			}
			if err := timed(&a.took.reserve, func() error { return a.skip(ctx, p, r) }); err != nil {
				return err
			}
			if a.why[p.Name] == nil {
				a.why[p.Name] = map[Outcome]bool{}
			}
			a.why[p.Name][r.Outcome] = true
			if len(a.tried[p.Name]) >= m.tries {
				failed = append(failed, a.outOfTries(p))
				delete(pending, p.Name)
				continue
			}
			if err := timed(&a.took.reserve, func() error { return a.reserve(ctx, p) }); err != nil {
				if e := poolFull(err); e != nil {
					failed = append(failed, e)
					delete(pending, p.Name)
					continue
				}
				return err
			}
		}
		if len(failed) > 0 {
			return poolsFailed(a.skipped, failed)
		}
	}
	return nil
}

// mainPluginRaises says whether the caller raises the interface itself
// once the allocation is answered: a CNI ADD's main plugin does, when it
// configures the result (every reference main plugin that makes a down
// interface - macvlan, ipvlan, vlan, host-device - raises it through
// ipam.ConfigureIface). Putting the interface down after a passed check
// would only be undone a moment later, and a link down costs an RCU grace
// period under the node's RTNL lock: in a storm of workload starts the
// downs queue behind each other and behind every other link change on the
// node (100 workloads: a second). An allocation that failed, and one for
// another caller (the API), leaves the interface down as it found it.
func (a *allocation) mainPluginRaises() bool {
	return a.req.Origin != nil && a.req.Origin.Kind == api.OriginCNI
}

// afterProbe is what becomes of the interface raised for the probe, given
// vet's answer err.
func (a *allocation) afterProbe(err error) AfterProbe {
	switch {
	case err != nil || !a.mainPluginRaises():
		return PutDown
	case a.req.MainPluginKeepsDAD:
		return LeaveUp
	}
	return LeaveUpOutOfDAD
}

// poolFull returns err as an *Error when it says a pool is full: a failure
// of that pool alone, which does not stop the others being tried.
func poolFull(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Code == api.CodePoolFull {
		return e
	}
	return nil
}

// poolsFailed is the error of an allocation that failed in one or more of
// its pools: each is named with its reason, in the request's order; the
// code is the first one's (a caller acts on one code).
func poolsFailed(skipped []SkippedIP, errs []*Error) *Error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Msg
	}
	return &Error{Code: errs[0].Code, Msg: strings.Join(msgs, "; "), Skipped: skipped, Err: errs[0].Err}
}

// outOfTries is the error of pool p when MaxTries candidates were skipped:
// conflict when any was in use (the network is busy), blocked when policy
// refused them all.
func (a *allocation) outOfTries(p *Pool) *Error {
	why := a.why[p.Name]
	code, what := api.CodeConflict, "all in use"
	switch {
	case why[OutcomeConflict] && why[OutcomePolicy]:
		what = "in use or refused by policy"
	case why[OutcomePolicy]:
		code, what = api.CodeBlocked, "all refused by policy"
	}
	return ipamErr(code, nil, "pool %q: %d addresses tried, %s: %s", p.Name, len(a.tried[p.Name]), what, skippedText(a.skipped, p.Name))
}

func where(netns, iface string) string {
	if netns == "" {
		return iface
	}
	return iface + " in " + netns
}

func skippedText(s []SkippedIP, pool string) string {
	var parts []string
	for _, x := range s {
		if x.Pool == pool {
			parts = append(parts, x.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

func (a *allocation) addressOf(pool string) AllocatedIP {
	for _, ip := range a.att.Addresses {
		if ip.Pool == pool {
			return ip
		}
	}
	return AllocatedIP{}
}

// skip takes the refused address of p out of the attachment. An address
// in use (res.Outcome OutcomeConflict) is quarantined, with the MAC that
// answered for it, unless the pool's quarantine share is used up; one
// refused by policy, or past the share, is only freed. Either way this
// allocation does not try it again.
func (a *allocation) skip(ctx context.Context, p *Pool, res CheckResult) error {
	m := a.m
	reason, inUse := res.Reason, res.Outcome == OutcomeConflict
	ip := a.addressOf(p.Name)
	addr := ip.Address.Addr()
	quarantine := false
	if inUse {
		m.metrics.ConflictSkipped(p.Name)
		var err error
		if quarantine, err = m.mayQuarantine(ctx, p); err != nil {
			return err
		}
	}
	next := a.att
	next.Addresses = nil
	for _, x := range a.att.Addresses {
		if x.Pool != p.Name {
			next.Addresses = append(next.Addresses, x)
		}
	}
	sk := SkippedIP{Pool: p.Name, Address: addr, Reason: reason, Quarantined: quarantine}
	next.Skipped = append(append([]SkippedIP(nil), a.att.Skipped...), sk)
	attVal, err := json.Marshal(next)
	if err != nil {
		return err
	}
	ops := []Op{{Key: attachmentKey(a.key), Value: attVal}}
	if quarantine {
		now := m.now().UTC()
		rec := AddressRecord{Pool: p.Name, Address: addr, State: StateQuarantined, Node: m.node, Since: now, Until: now.Add(p.Quarantine), Reason: reason, MAC: res.MAC}
		val, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		ops = append(ops, Op{Key: addrKey(p.Domain, addr), Value: val, TTL: p.Quarantine})
	} else {
		ops = append(ops, Op{Key: addrKey(p.Domain, addr), Delete: true})
	}
	conds := []Cond{{Key: attachmentKey(a.key), Revision: a.attRev}, {Key: addrKey(p.Domain, addr), Revision: a.addrRev[addr]}}
	rev, err := m.store.Commit(ctx, conds, ops)
	if err != nil {
		return fmt.Errorf("pool %q: quarantine %s: %w", p.Name, addr, err)
	}
	delete(a.addrRev, addr)
	a.att, a.attRev = next, rev
	a.skipped = append(a.skipped, sk)
	switch {
	case quarantine:
		m.metrics.Quarantined(p.Name)
		m.log.Warn("address in use: quarantined", "pool", p.Name, "address", addr, "for", p.Quarantine, "mac", res.MAC, "reason", reason)
	case inUse:
		m.log.Warn("address in use: skipped (quarantine share of the pool used up)", "pool", p.Name, "address", addr, "reason", reason)
	default:
		m.log.Info("address refused by policy: skipped", "pool", p.Name, "address", addr, "reason", reason)
	}
	return nil
}

// mayQuarantine says whether p can take one more quarantined address.
func (m *IPAM) mayQuarantine(ctx context.Context, p *Pool) (bool, error) {
	limit := p.Size() / QuarantineShare
	if limit == 0 {
		return false, nil
	}
	u, err := m.usage(ctx, p)
	if err != nil {
		return false, err
	}
	return u.Quarantined < limit, nil
}
