package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// fakeBusy is the watcher's busy list as the allocator sees it.
type fakeBusy struct {
	mu   sync.Mutex
	list map[netip.Addr]ipamapi.BusyAddress
}

func (b *fakeBusy) BusyIn(domain string, a netip.Addr) (ipamapi.BusyAddress, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.list[a]
	return e, ok && e.Domain == domain
}

func (b *fakeBusy) Busy() []ipamapi.BusyAddress {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ipamapi.BusyAddress
	for _, e := range b.list {
		out = append(out, e)
	}
	return out
}

// wireChecker answers in use for the addresses hosts on the LAN hold, free
// otherwise, and records every address it was asked about: each is a probe
// window spent.
type wireChecker struct {
	mu      sync.Mutex
	owned   map[netip.Addr]bool
	checked map[netip.Addr]int
}

func (c *wireChecker) Check(_ context.Context, req CheckRequest) ([]CheckResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]CheckResult, len(req.Addresses))
	for i, a := range req.Addresses {
		addr := a.Address.Addr()
		c.checked[addr]++
		out[i] = CheckResult{Outcome: OutcomeFree}
		if c.owned[addr] {
			out[i] = CheckResult{Outcome: OutcomeConflict, Reason: fmt.Sprintf("%s is in use", addr), MAC: "02:00:00:00:0b:01"}
		}
	}
	return out, nil
}

// A third of the pool is held by hosts that announced themselves: with the
// busy list the allocator never probes them (no probe window spent, nothing
// quarantined), lists them as skipped with the wire's evidence, hands out
// every other address, and then says the pool is full naming the busy
// ones; ipam pools counts them. Without the list the same allocations
// probe every one of them and quarantine
// what the pool's quarantine share allows.
func TestBusyAddressesSkippedWithoutProbe(t *testing.T) {
	seen := time.Date(2026, 11, 29, 23, 58, 0, 0, time.UTC)
	run := func(t *testing.T, learn bool) (*fixture, *wireChecker, []Attachment, map[netip.Addr]bool) {
		chk := &wireChecker{owned: map[netip.Addr]bool{}, checked: map[netip.Addr]int{}}
		busy := &fakeBusy{list: map[netip.Addr]ipamapi.BusyAddress{}}
		opts := Options{Checker: chk, MaxTries: 40}
		if learn {
			opts.Busy = busy
		}
		spec := v4
		spec.GatewayDetection = false
		f := newFixtureOpts(t, opts, spec)
		p := f.m.Pools()[0]
		owned := map[netip.Addr]bool{}
		for i := 0; i < p.Size(); i += 3 {
			a := p.At(i)
			owned[a], chk.owned[a] = true, true
			busy.list[a] = ipamapi.BusyAddress{Address: a, Pool: p.Name, Domain: p.Domain, MAC: "02:00:00:00:0b:01",
				Evidence: "gratuitous-arp", Seen: seen, Until: seen.Add(10 * time.Minute)}
		}
		var atts []Attachment
		for i := 0; i < p.Size()-len(owned); i++ {
			att, err := f.m.Allocate(context.Background(), req(fmt.Sprint("c", i), "lan4"))
			if err != nil {
				t.Fatalf("allocation %d: %v", i, err)
			}
			atts = append(atts, att)
		}
		return f, chk, atts, owned
	}

	t.Run("learned", func(t *testing.T) {
		f, chk, atts, owned := run(t, true)
		for a := range owned {
			if chk.checked[a] != 0 {
				t.Errorf("%s, seen busy on the wire, was probed %d times", a, chk.checked[a])
			}
		}
		listed := 0
		for _, att := range atts {
			if owned[att.Addresses[0].Address.Addr()] {
				t.Errorf("%s/%s got %s, which a host holds", att.ContainerID, att.Interface, att.Addresses[0].Address)
			}
			if len(att.Skipped) > 8 {
				t.Errorf("%s lists %d skipped addresses, want at most 8", att.ContainerID, len(att.Skipped))
			}
			for _, sk := range att.Skipped {
				listed++
				want := "seen on the wire from 02:00:00:00:0b:01 at 2026-11-29T23:58:00Z (gratuitous-arp)"
				if !owned[sk.Address] || sk.Quarantined || sk.Reason != want {
					t.Errorf("skipped %+v, want a busy address, not quarantined, reason %q", sk, want)
				}
			}
		}
		if listed == 0 {
			t.Error("no allocation lists a busy address among its skipped ones")
		}
		ctx := context.Background()
		us, err := f.m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u := us[0]; u.Quarantined != 0 || u.Busy != len(owned) || u.Free != len(owned) {
			t.Errorf("usage %+v: want nothing quarantined, %d free and all of them busy", u, len(owned))
		}
		_, err = f.m.Allocate(ctx, req("one-more", "lan4"))
		if code(err) != ipamapi.CodePoolFull || !strings.Contains(err.Error(), fmt.Sprintf("%d of them free in the store but claimed on the wire", len(owned))) {
			t.Errorf("one more allocation: %v, want pool_full naming the %d busy addresses", err, len(owned))
		}
		// Detection stays the proof: a busy address is only ever skipped,
		// and one no longer busy is probed like any other.
		assertConsistent(t, f)
	})

	t.Run("not learned", func(t *testing.T) {
		f, chk, _, owned := run(t, false)
		probed := 0
		for a := range owned {
			if chk.checked[a] > 0 {
				probed++
			}
		}
		us, _ := f.m.Usage(context.Background())
		if probed != len(owned) || us[0].Quarantined == 0 || us[0].Busy != 0 {
			t.Errorf("without the busy list: %d of %d owned addresses probed, usage %+v; want each probed and some quarantined (up to the pool's share)", probed, len(owned), us[0])
		}
	})
}

// A pool that does not detect conflicts, or a request that skips
// conflict detection, takes busy addresses like any other: the busy list
// stands in for a probe, and where nobody probes nobody judges by the
// wire.
func TestBusyIgnoredWithoutConflictDetection(t *testing.T) {
	busy := &fakeBusy{list: map[netip.Addr]ipamapi.BusyAddress{}}
	spec := v4
	spec.ConflictDetection = false
	f := newFixtureOpts(t, Options{Busy: busy}, spec)
	p := f.m.Pools()[0]
	for i := range p.Size() {
		a := p.At(i)
		busy.list[a] = ipamapi.BusyAddress{Address: a, Pool: p.Name, Domain: p.Domain, MAC: "02:00:00:00:0b:01", Until: time.Now().Add(time.Hour)}
	}
	att, err := f.m.Allocate(context.Background(), req("c1", "lan4"))
	if err != nil || len(att.Skipped) != 0 {
		t.Fatalf("pool without conflict detection: %+v %v, want an address and nothing skipped", att, err)
	}
	g := newFixtureOpts(t, Options{Busy: busy}, v4)
	r := req("c2", "lan4")
	r.SkipDetection = []ipamapi.DetectionSkip{{Detection: ipamapi.DetectionConflict, Reason: "ptp"}}
	if att, err := g.m.Allocate(context.Background(), r); err != nil || len(att.Skipped) != 0 {
		t.Fatalf("request skipping conflict detection: %+v %v, want an address and nothing skipped", att, err)
	}
}

// Busy entries are per layer-2 domain: a claim seen in one domain does not
// skip the same address in another.
func TestBusyIsPerDomain(t *testing.T) {
	busy := &fakeBusy{list: map[netip.Addr]ipamapi.BusyAddress{}}
	spec := v4
	spec.GatewayDetection = false
	spec.Domain = "vlan20"
	f := newFixtureOpts(t, Options{Busy: busy}, spec)
	p := f.m.Pools()[0]
	for i := range p.Size() {
		a := p.At(i)
		busy.list[a] = ipamapi.BusyAddress{Address: a, Pool: p.Name, Domain: "vlan30", MAC: "02:00:00:00:0b:01", Until: time.Now().Add(time.Hour)}
	}
	if att, err := f.m.Allocate(context.Background(), req("c1", "lan4")); err != nil || len(att.Skipped) != 0 {
		t.Fatalf("busy in another domain: %+v %v, want an address and nothing skipped", att, err)
	}
}
