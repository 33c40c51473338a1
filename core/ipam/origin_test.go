package ipam_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// plain is a pool with nothing to check, shared by two CNI networks and
// the API in these tests.
var plain = PoolSpec{Name: "shared", Subnet: "10.50.0.0/24", Ranges: []string{"10.50.0.10-10.50.0.19"}}

func cniReq(cid, network string) AllocateRequest {
	r := req(cid, "shared")
	r.Interface = "net1"
	r.Origin = &api.Origin{Kind: api.OriginCNI, Network: network, Interface: "net1"}
	return r
}

// TestOriginRecorded: every allocation records who made it, in the
// attachment and in the workload's history; a request without one is the
// API's. The caller's request is not changed.
func TestOriginRecorded(t *testing.T) {
	f := newFixture(t, plain)
	ctx := context.Background()
	byAPI := req("vm-17", "shared")
	att := f.allocate(t, byAPI)
	if want := (api.Origin{Kind: api.OriginAPI, Interface: "eth0"}); att.Origin == nil || *att.Origin != want {
		t.Errorf("API allocation's origin %+v, want %+v", att.Origin, want)
	}
	if byAPI.Origin != nil {
		t.Errorf("Allocate changed the caller's request: origin %+v", byAPI.Origin)
	}
	cni := cniReq("pod", "net-a")
	cni.Origin.Interface = "" // the agent fills it in
	att = f.allocate(t, cni)
	want := api.Origin{Kind: api.OriginCNI, Network: "net-a", Interface: "net1"}
	if att.Origin == nil || *att.Origin != want {
		t.Errorf("CNI allocation's origin %+v, want %+v", att.Origin, want)
	}
	// What the store holds, not only what was answered.
	got, ok, err := f.m.Get(ctx, att.AttachmentKey)
	if err != nil || !ok || got.Origin == nil || *got.Origin != want {
		t.Errorf("stored origin %+v (%v, %v), want %+v", got.Origin, ok, err, want)
	}
	ep, err := f.m.History(ctx, "default/pod")
	if err != nil || len(ep.History) != 1 || ep.History[0].Origin == nil || *ep.History[0].Origin != want {
		t.Errorf("history %+v (%v), want one entry of origin %+v", ep.History, err, want)
	}
	assertConsistent(t, f)
}

// TestOriginValidation: a malformed origin is refused naming the field,
// and nothing is written.
func TestOriginValidation(t *testing.T) {
	f := newFixture(t, plain)
	ctx := context.Background()
	for _, tc := range []struct {
		o     api.Origin
		field string
		msg   string
	}{
		{api.Origin{}, "origin.kind", "is required"},
		{api.Origin{Kind: "k8s"}, "origin.kind", `"k8s" is not an origin`},
		{api.Origin{Kind: strings.Repeat("x", 5000)}, "origin.kind", "is not an origin"},
		{api.Origin{Kind: api.OriginCNI}, "origin.network", "is required"},
		{api.Origin{Kind: api.OriginCNI, Network: "-net"}, "origin.network", "CNI network name"},
		{api.Origin{Kind: api.OriginCNI, Network: "net a"}, "origin.network", "CNI network name"},
		{api.Origin{Kind: api.OriginCNI, Network: strings.Repeat("n", api.MaxNetworkName+1)}, "origin.network", "at most 253"},
		{api.Origin{Kind: api.OriginAPI, Network: "net-a"}, "origin.network", "only for kind"},
		{api.Origin{Kind: api.OriginCNI, Network: "net-a", Interface: "eth0"}, "origin.interface", "differs from interface"},
		{api.Origin{Kind: api.OriginCNI, Network: "net-a", Interface: "a/b"}, "origin.interface", "interface name"},
	} {
		r := cniReq("c1", "net-a")
		r.Origin = &tc.o
		_, err := f.m.Allocate(ctx, r)
		var fe *api.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("origin %.40v: %v, want a field error on %s saying %q", tc.o, err, tc.field, tc.msg)
		}
		if len(err.Error()) > 400 {
			t.Errorf("origin %.40v: a %d-byte error", tc.o, len(err.Error()))
		}
	}
	assertEmpty(t, f)
}

// TestRepeatFromAnotherOrigin: an ADD for a key that another origin holds
// is refused, not answered with that origin's addresses; the same origin
// again is a repeat.
func TestRepeatFromAnotherOrigin(t *testing.T) {
	f := newFixture(t, plain)
	ctx := context.Background()
	vm := req("vm-17", "shared")
	vm.Interface = "net1"
	first := f.allocate(t, vm)
	if _, err := f.m.Allocate(ctx, cniReq("vm-17", "net-a")); code(err) != api.CodeMismatch || !strings.Contains(err.Error(), "origin api") {
		t.Errorf("CNI ADD over the API's vm-17: %v, want %s naming origin api", err, api.CodeMismatch)
	}
	f.allocate(t, cniReq("pod", "net-a"))
	if _, err := f.m.Allocate(ctx, cniReq("pod", "net-b")); code(err) != api.CodeMismatch || !strings.Contains(err.Error(), "cni:net-a") {
		t.Errorf("ADD of net-b over net-a's pod: %v, want %s naming cni:net-a", err, api.CodeMismatch)
	}
	again, err := f.m.Allocate(ctx, vm)
	if err != nil || again.Addresses[0].Address != first.Addresses[0].Address {
		t.Errorf("repeated API allocation: %+v %v, want %v", again.Addresses, err, first.Addresses[0].Address)
	}
	assertConsistent(t, f)
}

// stripOrigin rewrites key's stored attachment without its origin: a
// record written before origins were.
func stripOrigin(t *testing.T, f *fixture, key AttachmentKey) {
	t.Helper()
	ctx := context.Background()
	k := PrefixAttachments + key.ContainerID + "/" + key.Interface
	e, err := f.store.Get(ctx, k)
	if err != nil || e.Revision == 0 {
		t.Fatalf("%s: %v (revision %d)", k, err, e.Revision)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Value, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "origin")
	val, _ := json.Marshal(m)
	if _, err := f.store.Commit(ctx, []Cond{{Key: k, Revision: e.Revision}}, []Op{{Key: k, Value: val}}); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseIfNetwork: a CNI GC's release of network net-a frees only
// what ADDs of net-a made: not the API's vm-17, not net-b's allocation
// from the same pool, not a record without an origin. The kept ones come
// back unchanged.
func TestReleaseIfNetwork(t *testing.T) {
	f := newFixture(t, plain)
	ctx := context.Background()
	vm := req("vm-17", "shared")
	vm.Interface = "net1"
	for _, r := range []AllocateRequest{vm, cniReq("a1", "net-a"), cniReq("b1", "net-b"), cniReq("old", "net-a")} {
		f.allocate(t, r)
	}
	stripOrigin(t, f, AttachmentKey{ContainerID: "old", Interface: "net1"})
	for _, tc := range []struct {
		cid      string
		released bool
	}{{"vm-17", false}, {"b1", false}, {"old", false}, {"a1", true}} {
		key := AttachmentKey{ContainerID: tc.cid, Interface: "net1"}
		att, released, err := f.m.ReleaseIfNetwork(ctx, key, "net-a")
		if err != nil || released != tc.released || att.AttachmentKey != key {
			t.Errorf("release %s if net-a made it: %+v released=%v %v; want released=%v", tc.cid, att.AttachmentKey, released, err, tc.released)
		}
		if _, held, _ := f.m.Get(ctx, key); held == tc.released {
			t.Errorf("%s held=%v after the release", tc.cid, held)
		}
	}
	if att, released, err := f.m.ReleaseIfNetwork(ctx, AttachmentKey{ContainerID: "a1", Interface: "net1"}, "net-a"); released || err != nil || att.ContainerID != "" {
		t.Errorf("release of what is not held: %+v %v %v", att, released, err)
	}
	var fe *api.FieldError
	if _, _, err := f.m.ReleaseIfNetwork(ctx, AttachmentKey{ContainerID: "b1", Interface: "net1"}, "net b"); !errors.As(err, &fe) || fe.Field != "if_network" {
		t.Errorf("a malformed network: %v, want a field error on if_network", err)
	}
	if _, _, err := f.m.ReleaseIfNetwork(ctx, AttachmentKey{ContainerID: "b1", Interface: "net1"}, ""); !errors.As(err, &fe) || fe.Field != "if_network" {
		t.Errorf("no network: %v, want a field error on if_network", err)
	}
	list, _ := f.m.List(ctx, "shared", "")
	if len(list) != 3 {
		t.Errorf("%d allocations left, want vm-17, b1 and old", len(list))
	}
	assertConsistent(t, f)
}
