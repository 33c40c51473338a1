package cniplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/api/apitest"
)

// TestGCStale: what GC may release. Each case changes one thing from an
// allocation GC must release; every other case must be left alone.
func TestGCStale(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	ours := map[string]bool{"v4": true, "v6": true}
	key := api.AttachmentKey{ContainerID: "c1", Interface: "net1"}
	addr := func(pool string) api.AllocatedIP {
		return api.AllocatedIP{Pool: pool, Address: netip.MustParsePrefix("10.0.0.5/24")}
	}
	stale := func() api.Attachment {
		return api.Attachment{AttachmentKey: key, State: "allocated", Node: "node-a",
			Created: now.Add(-time.Minute), Addresses: []api.AllocatedIP{addr("v4"), addr("v6")},
			Origin: &api.Origin{Kind: api.OriginCNI, Network: "net-n", Interface: "net1"}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*api.Attachment, map[api.AttachmentKey]bool)
		stale bool
	}{
		{"not in the list", func(*api.Attachment, map[api.AttachmentKey]bool) {}, true},
		{"no node recorded", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Node = "" }, true},
		{"exactly the minimum age", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Created = now.Add(-GCMinAge) }, true},
		{"in the list", func(_ *api.Attachment, v map[api.AttachmentKey]bool) { v[key] = true }, false},
		{"reserved: an ADD in flight", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.State = "reserved" }, false},
		{"younger than the list may be", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Created = now.Add(-time.Second) }, false},
		{"another node's", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Node = "node-b" }, false},
		{"an address of another network's pool", func(a *api.Attachment, _ map[api.AttachmentKey]bool) {
			a.Addresses = append(a.Addresses, addr("other"))
		}, false},
		{"no address", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Addresses = nil }, false},
		// Who made it: only an ADD of this very network.
		{"made by the API (a VM, a script)", func(a *api.Attachment, _ map[api.AttachmentKey]bool) {
			a.Origin = &api.Origin{Kind: api.OriginAPI, Interface: "net1"}
		}, false},
		{"made by another network from the same pools", func(a *api.Attachment, _ map[api.AttachmentKey]bool) {
			a.Origin.Network = "net-m"
		}, false},
		{"another network whose name only differs in case", func(a *api.Attachment, _ map[api.AttachmentKey]bool) {
			a.Origin.Network = "Net-N"
		}, false},
		{"recorded before origins were", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Origin = nil }, false},
		{"an origin of an unknown kind", func(a *api.Attachment, _ map[api.AttachmentKey]bool) { a.Origin.Kind = "cni2" }, false},
	} {
		a, valid := stale(), map[api.AttachmentKey]bool{{ContainerID: "c2", Interface: "net1"}: true}
		tc.edit(&a, valid)
		if got := gcStale(a, "net-n", valid, ours, "node-a", now); got != tc.stale {
			t.Errorf("%s: gcStale = %v, want %v", tc.name, got, tc.stale)
		}
	}
}

// fakeAgent serves the IPAM routes GC and ADD use on a unix socket, with
// net/http (the agent's own server), as root so that the client's peer
// check believes it. It answers List with list and records each release
// and allocate request.
type fakeAgent struct {
	sock string

	mu        sync.Mutex
	releases  []api.ReleaseRequest
	allocates []api.AllocateRequest
}

func newFakeAgent(t *testing.T, list []api.Attachment) *fakeAgent {
	t.Helper()
	f := &fakeAgent{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.AllocationsPath, func(w http.ResponseWriter, r *http.Request) {
		pool := r.URL.Query().Get("pool")
		out := []api.Attachment{}
		for _, a := range list {
			for _, ip := range a.Addresses {
				if ip.Pool == pool {
					out = append(out, a)
					break
				}
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST "+api.ReleasePath, func(w http.ResponseWriter, r *http.Request) {
		record(t, f, "release", r, &f.releases)
		_ = json.NewEncoder(w).Encode(api.ReleaseResponse{Released: []api.Attachment{}})
	})
	mux.HandleFunc("POST "+api.AllocatePath, func(w http.ResponseWriter, r *http.Request) {
		req := record(t, f, "allocate", r, &f.allocates)
		_ = json.NewEncoder(w).Encode(api.Attachment{AttachmentKey: api.AttachmentKey{ContainerID: req.ContainerID, Interface: req.Interface},
			State: "allocated", Origin: req.Origin,
			Addresses: []api.AllocatedIP{{Pool: "v4", Address: netip.MustParsePrefix("10.0.0.9/24")}}})
	})
	f.sock = apitest.Serve(t, mux)
	return f
}

// record decodes the body of a request r the fake agent got and appends
// it to *to, under f.mu.
func record[T any](t *testing.T, f *fakeAgent, what string, r *http.Request, to *[]T) T {
	var req T
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		t.Errorf("%s body: %v", what, err)
	}
	f.mu.Lock()
	*to = append(*to, req)
	f.mu.Unlock()
	return req
}

// seen returns the requests recorded so far.
func (f *fakeAgent) seen() ([]api.AllocateRequest, []api.ReleaseRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.allocates), slices.Clone(f.releases)
}

func netconf(name, sock, extra string) []byte {
	return fmt.Appendf(nil, `{"cniVersion": "1.1.0", "name": %q, %s "ipam": {"type": "spiderpool", "pools": ["v4"], "socket": %q}}`, name, extra, sock)
}

// TestGCReleasesOnlyItsNetwork: the plugin's GC of net-n, against an agent
// holding a VM's API allocation, another network's and an old record
// without an origin from the same pool, releases only net-n's stale
// allocation, and asks the agent to release it only if net-n still made
// it (if_network).
func TestGCReleasesOnlyItsNetwork(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	att := func(id string, o *api.Origin) api.Attachment {
		return api.Attachment{AttachmentKey: api.AttachmentKey{ContainerID: id, Interface: "net1"}, State: "allocated",
			Created: old, Origin: o, Addresses: []api.AllocatedIP{{Pool: "v4", Address: netip.MustParsePrefix("10.0.0.5/24")}}}
	}
	cni := func(network string) *api.Origin {
		return &api.Origin{Kind: api.OriginCNI, Network: network, Interface: "net1"}
	}
	f := newFakeAgent(t, []api.Attachment{
		att("pod", cni("net-n")),
		att("stale", cni("net-n")),
		att("vm-17", &api.Origin{Kind: api.OriginAPI, Interface: "net1"}),
		att("other", cni("net-m")),
		att("before-origins", nil),
	})
	var stderr strings.Builder
	p := &Plugin{Stdout: io.Discard, Stderr: &stderr, Now: time.Now}
	valid := `"cni.dev/valid-attachments": [{"containerID": "pod", "ifname": "net1"}],`
	if err := p.GC(&skel.CmdArgs{StdinData: netconf("net-n", f.sock, valid)}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	want := []api.ReleaseRequest{{ContainerID: "stale", Interface: "net1", IfNetwork: "net-n"}}
	if _, rel := f.seen(); !slices.Equal(rel, want) {
		t.Errorf("GC of net-n asked to release %+v, want %+v", rel, want)
	}
}

// TestNetworkNameRequired: ADD records the network's name as the origin
// and GC compares it, so both refuse a configuration without a valid one,
// naming the field, before asking the agent anything.
func TestNetworkNameRequired(t *testing.T) {
	f := newFakeAgent(t, nil)
	p := &Plugin{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}
	valid := `"cni.dev/valid-attachments": [{"containerID": "pod", "ifname": "net1"}],`
	for _, name := range []string{"", "-lead", "a/b", strings.Repeat("n", api.MaxNetworkName+1)} {
		args := &skel.CmdArgs{ContainerID: "c1", IfName: "net1", StdinData: netconf(name, f.sock, "")}
		err := p.Add(args)
		var e *types.Error
		if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "name:") {
			t.Errorf("ADD with network name %.20q: %v, want error %d naming the field", name, err, types.ErrInvalidNetworkConfig)
		}
		args.StdinData = netconf(name, f.sock, valid)
		if err := p.GC(args); !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig {
			t.Errorf("GC with network name %.20q: %v, want error %d", name, err, types.ErrInvalidNetworkConfig)
		}
	}
	if alloc, rel := f.seen(); len(alloc)+len(rel) != 0 {
		t.Errorf("the agent was asked %+v %+v", alloc, rel)
	}
}

// TestAddSendsOrigin: ADD tells the agent which network asks.
func TestAddSendsOrigin(t *testing.T) {
	f := newFakeAgent(t, nil)
	p := &Plugin{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}
	if err := p.Add(&skel.CmdArgs{ContainerID: "c1", IfName: "net1", Netns: "/var/run/netns/x", StdinData: netconf("net-n", f.sock, "")}); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	want := api.Origin{Kind: api.OriginCNI, Network: "net-n", Interface: "net1"}
	if alloc, _ := f.seen(); len(alloc) != 1 || alloc[0].Origin == nil || *alloc[0].Origin != want {
		t.Fatalf("ADD asked %+v, want origin %+v", alloc, want)
	}
}
