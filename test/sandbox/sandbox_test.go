// Package sandbox tests `make run`'s sandbox (sandbox.sh): the real agent on
// a namespace LAN of its own that blocks the neighbour's address, passes a
// free one, and leaves the host's sysctls and namespaces as they were.
package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func TestMain(m *testing.M) { os.Exit(agenttest.MainLazy(m)) }

// hostKeys are host sysctls the sysctl-tuner would change if the sandbox
// leaked onto the host, plus neighbours of them that it must not touch.
var hostKeys = []string{
	"net/ipv4/conf/all/forwarding",
	"net/ipv6/conf/all/forwarding",
	"net/ipv4/conf/all/rp_filter",
	"net/ipv4/conf/all/arp_notify",
	"net/ipv4/neigh/default/gc_thresh3",
	"net/ipv6/neigh/default/gc_thresh3",
	"net/ipv4/conf/default/rp_filter",
}

func readHost(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range hostKeys {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatalf("read host sysctl %s: %v", k, err)
		}
		m[k] = strings.TrimSpace(string(b))
	}
	return m
}

func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var ns []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			ns = append(ns, f[0])
		}
	}
	return ns
}

func TestSandboxBlocksTheNeighbourAndLeavesTheHostAlone(t *testing.T) {
	netlab.RequireRoot(t)
	bins, err := agenttest.Build()
	if err != nil {
		t.Fatal(err)
	}
	root, err := agenttest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "test", "sandbox", "sandbox.sh")
	prefix := fmt.Sprintf("spt%d", os.Getpid())
	t.Cleanup(func() {
		c := exec.Command("bash", script, "--clean")
		c.Env = append(os.Environ(), "SANDBOX_PREFIX="+prefix)
		_ = c.Run()
	})

	before := readHost(t)
	cmd := exec.Command("bash", script, bins.Dir)
	cmd.Env = append(os.Environ(), "SANDBOX_DEMO=1", "SANDBOX_PREFIX="+prefix)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sandbox.sh: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"BLOCK 10.0.0.10/24 via 10.0.0.1",
		"10.0.0.10 is in use by 02:00:00:00:00:10",
		"PASS 10.0.0.50/24 via 10.0.0.1",
		"PASS fd00::50/64 via fd00::1",
		"verdict: pass",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("sandbox demo output lacks %q:\n%s", want, s)
		}
	}
	// The busy check must exit 1 (block) and the free one 0.
	for what, want := range map[string]string{"check busy": "exit=1", "check free": "exit=0", "ipam allocate": "exit=0", "ipam pools": "exit=0", "metric": "exit=0"} {
		i := strings.Index(s, "== "+what)
		j := strings.Index(s[max(i, 0):], "exit=")
		if i < 0 || j < 0 || !strings.HasPrefix(s[i+j:], want) {
			t.Errorf("%s check: want %s:\n%s", what, want, s)
		}
	}
	// The demo allocation is a dual-stack pair from the demo pools, never
	// the neighbour's addresses.
	alloc := s[strings.Index(s, "== ipam allocate"):]
	alloc = alloc[:strings.Index(alloc, "exit=")]
	if !regexp.MustCompile(`10\.0\.0\.(1[1-9]|[23][0-9]|40)/24`).MatchString(alloc) || !regexp.MustCompile(`fd00::(1[1-9a-f]|[23][0-9a-f]|40)/64`).MatchString(alloc) {
		t.Errorf("ipam allocate did not print a free dual-stack pair from the demo pools:\n%s", alloc)
	}
	if strings.Contains(alloc, "10.0.0.10/") || strings.Contains(alloc, "fd00::10/") {
		t.Errorf("ipam allocate gave out the neighbour's address:\n%s", alloc)
	}
	// The metric line the sandbox suggests reads the sandbox's own
	// configuration: the metrics, and no word about a directory that is
	// not there.
	metric := s[strings.Index(s, "== metric"):]
	if !strings.Contains(metric, "# TYPE ") || strings.Contains(metric, "does not load") || strings.Contains(metric, "config-map") {
		t.Errorf("the sandbox's metric line did not print the metrics cleanly:\n%s", metric)
	}
	after := readHost(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host sysctl %s changed: %s -> %s", k, v, after[k])
		}
	}
	if left := namespaces(t, prefix); len(left) > 0 {
		t.Errorf("sandbox left namespaces behind: %v", left)
	}
	if _, err := os.Stat("/run/" + prefix); !os.IsNotExist(err) {
		t.Errorf("sandbox left /run/%s behind (%v)", prefix, err)
	}
}
