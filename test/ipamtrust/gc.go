package ipamtrust

import (
	"fmt"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

const gcPools = `
pool "vm-v4" {
  subnet             = "10.0.5.0/24"
  ranges             = ["10.0.5.10-10.0.5.12"]
  conflict_detection = false
}
pool "shared-v4" {
  subnet             = "10.0.6.0/24"
  ranges             = ["10.0.6.10-10.0.6.50"]
  conflict_detection = false
}
`

// GC runs a runtime's CNI GC, the real `spiderpool` plugin exec'd with
// CNI_COMMAND=GC, against allocations it must not release. Two rows:
//
//   - a VM's allocation made with `ipam allocate --container-id vm-17` (no
//     namespace) beside pods ADDed on network net-n from the same pool;
//     GC of net-n listing one pod: vm-17 keeps its address;
//   - networks net-a and net-b drawing from one pool; GC of net-a listing
//     one of its pods: net-b's pod keeps its address.
//
// In both, the GC must release its own network's stale allocation (or it
// proves nothing).
func GC(t testing.TB, e Env) []Result {
	t.Helper()
	a := e.start(t, opts{pools: gcPools})
	c := ctx(t, 2*time.Minute)
	rt := cnilab.NewRuntime(e.CNIDir, t.TempDir(), a.NetnsPath)
	network := func(name, pool string) *libcni.NetworkConfigList {
		l, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.1.0", "name": %q, "plugins": [{"type": "macvlan", "master": "eth0",
			"ipam": {"type": "spiderpool", "pools": [%q], "socket": %q}}]}`, name, pool, a.Socket)))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// ADD through the IPAM plugin itself, as a main plugin calls it: the
	// allocations are the plugin's, made with the network's name.
	add := func(list *libcni.NetworkConfigList, cid string) cnilab.Attachment {
		w := cnilab.Attachment{ContainerID: cid, Netns: "/var/run/netns/" + netlab.NewNS(t, "w"), IfName: "net1"}
		if _, err := rt.IPAM(c, list, "ADD", w); err != nil {
			t.Fatalf("ADD %s on %s: %v", cid, list.Name, err)
		}
		return w
	}
	held := func(cid, ifname string) (api.Attachment, bool) {
		att, ok, err := a.API.Get(c, api.AttachmentKey{ContainerID: cid, Interface: ifname})
		if err != nil {
			t.Fatal(err)
		}
		return att, ok
	}
	gc := func(list *libcni.NetworkConfigList, keep cnilab.Attachment) error {
		stderr, err := rt.IPAMGC(c, list, []types.GCAttachment{{ContainerID: keep.ContainerID, IfName: keep.IfName}})
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr)
		}
		return nil
	}

	vmOut, code := a.cli("allocate", "--container-id", "vm-17", "--interface", "eth0", "--pool", "vm-v4")
	if code != 0 {
		t.Fatalf("ipam allocate vm-17: exit %d: %s", code, vmOut)
	}
	vm, _ := held("vm-17", "eth0")
	netN := network("net-n", "vm-v4")
	pod, stale := add(netN, "pod-n"), add(netN, "stale-n")
	netA, netB := network("net-a", "shared-v4"), network("net-b", "shared-v4")
	a1, a2, b1 := add(netA, "a1"), add(netA, "a2"), add(netB, "b1")
	// Allocations younger than GCMinAge are left alone whatever the list
	// says (a runtime's list may predate them): wait out that age, on the
	// clock both sides read.
	time.Sleep(cniplugin.GCMinAge + 100*time.Millisecond)

	vmRow := Result{Attack: "CNI GC against a VM's API allocation",
		Tried: "`ipam allocate --container-id vm-17` (no netns) and pods pod-n, stale-n ADDed on net-n from the same 3-address pool; `spiderpool` exec'd with CNI_COMMAND=GC for net-n listing pod-n only"}
	if err := gc(netN, pod); err != nil {
		vmRow.Failf("GC of net-n: %v", err)
	}
	after, kept := held("vm-17", "eth0")
	_, podKept := held(pod.ContainerID, pod.IfName)
	_, staleKept := held(stale.ContainerID, stale.IfName)
	if !kept || len(after.Addresses) != 1 || len(vm.Addresses) != 1 || after.Addresses[0].Address != vm.Addresses[0].Address {
		vmRow.Failf("vm-17 lost its address to a CNI GC: before %+v, after %+v (held %v)", vm.Addresses, after.Addresses, kept)
	}
	if !podKept {
		vmRow.Failf("the GC released pod-n, which its list names")
	}
	if staleKept {
		vmRow.Failf("the GC kept stale-n, net-n's own stale ADD: it proves nothing")
	}
	vmRow.Did = "released net-n's stale ADD only; vm-17 kept its address"
	vmRow.Numbers = fmt.Sprintf("vm-17 kept: %v; pod-n kept: %v; stale-n released: %v", kept, podKept, !staleKept)

	shared := Result{Attack: "CNI GC of one network against another sharing its pool",
		Tried: "a1, a2 ADDed on net-a and b1 on net-b, one pool; GC of net-a listing a1 only, then GC of net-b listing b1"}
	if err := gc(netA, a1); err != nil {
		shared.Failf("GC of net-a: %v", err)
	}
	_, b1Kept := held(b1.ContainerID, b1.IfName)
	_, a2Kept := held(a2.ContainerID, a2.IfName)
	if err := gc(netB, b1); err != nil {
		shared.Failf("GC of net-b: %v", err)
	}
	_, a1Kept := held(a1.ContainerID, a1.IfName)
	if !b1Kept {
		shared.Failf("GC of net-a released b1, net-b's allocation from the same pool")
	}
	if !a1Kept {
		shared.Failf("a1 is gone after the GCs (net-a's list named it; net-b's GC may not touch it)")
	}
	if a2Kept {
		shared.Failf("GC of net-a kept a2, its own stale ADD: it proves nothing")
	}
	shared.Did = "each GC released only its own network's stale ADD"
	shared.Numbers = fmt.Sprintf("b1 kept through net-a's GC: %v; a1 kept through net-b's GC: %v; a2 released: %v", b1Kept, a1Kept, !a2Kept)
	return []Result{vmRow, shared}
}
