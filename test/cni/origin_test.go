package cni

import (
	"context"
	"encoding/json"
	"maps"
	"regexp"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"
)

// TestGCReleasesOnlyWhatItsNetworkMade: a runtime's GC of network N
// releases the stale allocations that ADDs of N made, and nothing else: not
// a VM's address allocated through the CLI, not the allocations of another
// network drawing from the same pool.
func TestGCReleasesOnlyWhatItsNetworkMade(t *testing.T) {
	l := newLab(t)
	ctx := ctxFor(t, 3*time.Minute)
	checks := []func(){
		GCSparesAPIAllocation(t, l, ctx),
		GCSparesSharedPoolNetwork(t, l, ctx),
	}
	waitGCAge(t, l, ctx)
	for _, check := range checks {
		check()
	}
}

// waitGCAge waits until every allocation is old enough for the plugin's GC
// to consider it: younger ones are left alone whatever the list says (the
// runtime's list may predate them), which would hide what the scenarios
// check. A wait for an age on the clock both sides read, not a stand-in
// for synchronisation.
func waitGCAge(t *testing.T, l *lab, ctx context.Context) {
	t.Helper()
	all, err := l.api.List(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var youngest time.Time
	for _, a := range all {
		if a.Created.After(youngest) {
			youngest = a.Created
		}
	}
	time.Sleep(time.Until(youngest.Add(cniplugin.GCMinAge)))
}

// GCSparesAPIAllocation is the runtime's GC freeing a VM's address: vm-17
// allocated with `spiderpool-agent ipam allocate` (no namespace), a pod
// ADDed on network net-n from the same pool, then GC of net-n listing only
// the pod. vm-17 must keep its address, and the next pod must not get it.
// It sets up and returns the check to run once the allocations are older
// than cniplugin.GCMinAge.
func GCSparesAPIAllocation(t *testing.T, l *lab, ctx context.Context) (check func()) {
	t.Helper()
	out, errOut, code := l.agent.CLI("ipam", "allocate", "--socket", l.sock, "--container-id", "vm-17",
		"--interface", "eth0", "--pool", "vm-v4", "--json")
	if code != 0 {
		t.Fatalf("ipam allocate vm-17: exit %d: %s", code, errOut)
	}
	var vm api.Attachment
	if err := json.Unmarshal([]byte(out), &vm); err != nil || len(vm.Addresses) != 1 {
		t.Fatalf("ipam allocate vm-17 printed %q (%v)", out, err)
	}
	vmAddr := vm.Addresses[0].Address
	if want := (api.Origin{Kind: api.OriginAPI, Interface: "eth0"}); vm.Origin == nil || *vm.Origin != want {
		t.Errorf("ipam allocate recorded origin %+v, want %+v", vm.Origin, want)
	}
	netN := network(t, "net-n", l.withSocket(`"pools": ["vm-v4"]`))
	pod, stale := workload(t, "pod-n"), workload(t, "stale-n")
	l.mustAdd(t, ctx, netN, pod, stale)
	return func() {
		if _, err := l.rt.IPAMGC(ctx, netN, []types.GCAttachment{{ContainerID: pod.ContainerID, IfName: pod.IfName}}); err != nil {
			t.Fatalf("GC of net-n: %v", err)
		}
		att, ok := l.held(api.AttachmentKey{ContainerID: "vm-17", Interface: "eth0"})
		if !ok || len(att.Addresses) != 1 || att.Addresses[0].Address != vmAddr {
			t.Fatalf("after GC of net-n vm-17 holds %+v (%v); it held %v, allocated through the API, which no runtime's GC may release", att.Addresses, ok, vmAddr)
		}
		if _, ok := l.held(key(pod)); !ok {
			t.Error("GC of net-n released pod-n, which its list names")
		}
		if _, ok := l.held(key(stale)); ok {
			t.Error("GC of net-n kept stale-n, an ADD of net-n its list no longer names")
		}
		// vm-v4 has three addresses; vm-17 and pod-n hold two. The next pod
		// gets stale-n's, and the one after finds the pool full.
		next := workload(t, "next-n")
		if v4, _ := l.mustAddAddrs(t, ctx, netN, next); v4 == vmAddr {
			t.Fatalf("next-n got %v, vm-17's address", v4)
		}
		full := workload(t, "full-n")
		_, err := l.rt.Add(ctx, netN, full)
		cniErr(t, err, cniplugin.CodePoolFull, "vm-v4")
		l.delAfterFailedAdd(ctx, netN, full)
		// Who made what, as an operator sees it.
		out, errOut, code := l.agent.CLI("ipam", "list", "--socket", l.sock, "--pool", "vm-v4")
		if code != 0 || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(vmAddr.String())+`\s+vm-17\s+eth0\s+vm-17\s+allocated\s+-\s+api\s`).MatchString(out) ||
			!regexp.MustCompile(`(?m)\spod-n\s+net1\s+cni/pod-n\s+allocated\s+\S+\s+cni:net-n\s`).MatchString(out) {
			t.Errorf("ipam list (exit %d, %s) does not show vm-17 of origin api and pod-n of cni:net-n:\n%s", code, errOut, out)
		}
		out, errOut, code = l.agent.CLI("ipam", "show", "cni/next-n", "--socket", l.sock, "--json")
		var recs []api.HistoryRecord
		if err := json.Unmarshal([]byte(out), &recs); code != 0 || err != nil || len(recs) != 1 || recs[0].Origin == nil ||
			*recs[0].Origin != (api.Origin{Kind: api.OriginCNI, Network: "net-n", Interface: "net1"}) {
			t.Errorf("ipam show cni/next-n --json (exit %d, %s): %s", code, errOut, out)
		}
	}
}

// GCSparesSharedPoolNetwork: two networks draw from one pool; GC of one
// releases its own stale allocation and leaves the other network's, which
// its list cannot name, alone. It sets up and returns the check, like
// GCSparesAPIAllocation.
func GCSparesSharedPoolNetwork(t *testing.T, l *lab, ctx context.Context) (check func()) {
	t.Helper()
	netA := network(t, "net-a", l.withSocket(`"pools": ["shared-v4"]`))
	netB := network(t, "net-b", l.withSocket(`"pools": ["shared-v4"]`))
	a1, a2, b1 := workload(t, "a1"), workload(t, "a2"), workload(t, "b1")
	l.mustAdd(t, ctx, netA, a1, a2)
	l.mustAdd(t, ctx, netB, b1)
	return func() {
		if _, err := l.rt.IPAMGC(ctx, netA, []types.GCAttachment{{ContainerID: a1.ContainerID, IfName: a1.IfName}}); err != nil {
			t.Fatalf("GC of net-a: %v", err)
		}
		if _, ok := l.held(key(b1)); !ok {
			t.Error("GC of net-a released b1, an allocation of net-b from the same pool")
		}
		if _, ok := l.held(key(a1)); !ok {
			t.Error("GC of net-a released a1, which its list names")
		}
		if _, ok := l.held(key(a2)); ok {
			t.Error("GC of net-a kept a2, an ADD of net-a its list no longer names")
		}
		if _, err := l.rt.IPAMGC(ctx, netB, []types.GCAttachment{{ContainerID: b1.ContainerID, IfName: b1.IfName}}); err != nil {
			t.Fatalf("GC of net-b: %v", err)
		}
		if _, ok := l.held(key(a1)); !ok {
			t.Error("GC of net-b released a1, an allocation of net-a from the same pool")
		}
		out, errOut, code := l.agent.CLI("ipam", "list", "--socket", l.sock, "--pool", "shared-v4", "--json")
		var list []api.Attachment
		if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
			t.Fatalf("ipam list --json: exit %d, %v: %s", code, err, errOut)
		}
		origins := map[string]string{}
		for _, a := range list {
			origins[a.ContainerID] = a.Origin.String()
		}
		if want := map[string]string{"a1": "cni:net-a", "b1": "cni:net-b"}; !maps.Equal(origins, want) {
			t.Errorf("ipam list --json: origins %v, want %v", origins, want)
		}
	}
}
