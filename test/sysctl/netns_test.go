package sysctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
)

// hostKeys are read in the host namespace before and after every test:
// none may change. They include every key a test asks the tuner for.
var hostKeys = []string{
	"net/ipv4/neigh/default/gc_thresh3",
	"net/ipv6/neigh/default/gc_thresh3",
	"net/ipv4/conf/all/arp_notify",
	"net/ipv4/conf/all/forwarding",
	"net/ipv6/conf/all/forwarding",
	"net/ipv4/conf/all/rp_filter",
	"net/ipv4/conf/default/forwarding",
	"net/ipv6/conf/default/forwarding",
	"net/ipv4/ip_forward",
	"net/ipv4/ip_forward_update_priority",
	"net/core/rmem_max",
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the sysctl namespace tests create network namespaces with `ip netns add` and join them with setns: run them as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the sysctl namespace tests need iproute2's ip: %v", err)
	}
}

// procSys reads a key under /proc/sys in the namespace of the calling
// thread, normalised the way the tuner compares values.
func procSys(rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", rel))
	if err != nil {
		return "", err
	}
	return tuner.Normalize(string(b)), nil
}

func setProcSys(rel, v string) error {
	return os.WriteFile(filepath.Join("/proc/sys", rel), []byte(v+"\n"), 0)
}

// hostValues reads hostKeys on the calling goroutine, which must be in the
// host namespace.
func hostValues(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range hostKeys {
		v, err := procSys(k)
		if err != nil {
			v = "error: " + err.Error()
		}
		m[k] = v
	}
	return m
}

// guardHost records the host's values now and checks at cleanup that the
// test changed none of them.
func guardHost(t *testing.T) {
	t.Helper()
	before := hostValues(t)
	t.Cleanup(func() {
		after := hostValues(t)
		if !reflect.DeepEqual(before, after) {
			for _, k := range hostKeys {
				if before[k] != after[k] {
					t.Errorf("HOST sysctl %s changed from %q to %q", k, before[k], after[k])
				}
			}
		}
	})
}

// testNS is a fresh network namespace for one test.
type testNS struct {
	name   string
	handle netns.NsHandle
	host   netns.NsHandle
}

func newNS(t *testing.T) *testNS {
	t.Helper()
	requireRoot(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("spsysctl-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	host, err := hostNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	if h.Equal(host) {
		t.Fatalf("namespace %s is the host's", name)
	}
	return &testNS{name: name, handle: h, host: host}
}

// hostNS opens the network namespace of the calling thread, which is the
// process's own: threads that joined a test namespace stay locked until
// they end and never run anything else. Not /proc/<pid>/ns/net: that is the
// main thread's, and when a locked goroutine that joined a test namespace
// ends on the main thread, Go cannot end that thread and parks it, still
// in the test's namespace.
func hostNS() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return netns.Get()
}

// ip runs `ip -n <ns> args...`.
func (n *testNS) ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// run calls fn on a new OS thread that has joined the namespace, after
// checking that it really has: fn is never called in the host namespace.
// The thread is not unlocked, so it ends with fn.
func (n *testNS) run(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime discards the thread on return.
		errc <- func() error {
			if err := netns.Set(n.handle); err != nil {
				return fmt.Errorf("setns %s: %w", n.name, err)
			}
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			if !cur.Equal(n.handle) || cur.Equal(n.host) {
				return fmt.Errorf("thread is not in namespace %s; refusing to touch /proc/sys", n.name)
			}
			// neigh/default exists only in the initial namespace.
			if _, err := os.Stat("/proc/sys/net/ipv4/neigh/default"); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("/proc/sys/net/ipv4/neigh/default is visible (%v): this looks like the initial namespace; refusing", err)
			}
			return fn()
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func byKey(t *testing.T, r tuner.Report, key string) tuner.KeyStatus {
	return tunertest.Key(t, r.Keys, key, func(k tuner.KeyStatus) string { return k.Key })
}

// perNS are the defaults that every network namespace has, with a value
// other than the desired one to start from.
var perNS = []struct {
	key, path, desired, start string
}{
	{"net.ipv4.conf.all.arp_notify", "net/ipv4/conf/all/arp_notify", "1", "0"},
	{"net.ipv4.conf.all.forwarding", "net/ipv4/conf/all/forwarding", "1", "0"},
	{"net.ipv6.conf.all.forwarding", "net/ipv6/conf/all/forwarding", "1", "0"},
	{"net.ipv4.conf.all.rp_filter", "net/ipv4/conf/all/rp_filter", "0", "2"},
}

// preparePerNS sets each of perNS to its start value; it runs in the
// namespace under test.
func preparePerNS() error {
	for _, k := range perNS {
		if err := setProcSys(k.path, k.start); err != nil {
			return fmt.Errorf("prepare %s: %w", k.path, err)
		}
	}
	return nil
}

// readPerNS reads each of perNS, by path; it runs in the namespace under
// test.
func readPerNS() (map[string]string, error) {
	got := map[string]string{}
	for _, k := range perNS {
		v, err := procSys(k.path)
		if err != nil {
			return nil, err
		}
		got[k.path] = v
	}
	return got, nil
}

// TestDefaultsInNamespace applies the six defaults in a fresh namespace:
// the four per-namespace keys are applied and read back there, both
// gc_thresh3 keys are unsupported, and the host keeps its values.
func TestDefaultsInNamespace(t *testing.T) {
	ns := newNS(t)
	guardHost(t)

	var (
		rep, rep2 tuner.Report
		readBack  map[string]string
	)
	ns.run(t, func() error {
		if err := preparePerNS(); err != nil {
			return err
		}
		tu := tuner.New("")
		if err := tu.Configure(tuner.DefaultSettings()); err != nil {
			return err
		}
		rep = tu.Apply(context.Background())
		var err error
		if readBack, err = readPerNS(); err != nil {
			return err
		}
		rep2 = tu.Reconcile(context.Background())
		return nil
	})

	if rep.Degraded || rep.Err != "" {
		t.Errorf("report degraded=%v err=%q: %+v", rep.Degraded, rep.Err, rep.Keys)
	}
	if len(rep.Keys) != 6 {
		t.Errorf("%d keys, want 6", len(rep.Keys))
	}
	for _, k := range perNS {
		ks := byKey(t, rep, k.key)
		if ks.State != tuner.StateApplied || ks.Actual != k.desired || ks.Previous != k.start || ks.Error != "" {
			t.Errorf("%s: %+v, want applied %s (previous %s)", k.key, ks, k.desired, k.start)
		}
		if readBack[k.path] != k.desired {
			t.Errorf("%s reads %q in the namespace, want %q", k.path, readBack[k.path], k.desired)
		}
	}
	for _, key := range []string{"net.ipv4.neigh.default.gc_thresh3", "net.ipv6.neigh.default.gc_thresh3"} {
		if ks := byKey(t, rep, key); ks.State != tuner.StateUnsupported || ks.Error != "" || ks.Failures != 0 {
			t.Errorf("%s: %+v, want unsupported", key, ks)
		}
	}
	if len(rep.Changes) != 4 {
		t.Errorf("changes %+v, want the 4 per-namespace keys", rep.Changes)
	}
	if len(rep2.Changes) != 0 || rep2.Degraded {
		t.Errorf("second pass: changes %+v degraded %v", rep2.Changes, rep2.Degraded)
	}
}

// TestDriftInNamespace changes tuned keys behind the tuner's back and
// checks that Reconcile puts them back and counts it.
func TestDriftInNamespace(t *testing.T) {
	ns := newNS(t)
	guardHost(t)

	var (
		first, drifted, quiet tuner.Report
		after                 = map[string]string{}
	)
	ns.run(t, func() error {
		tu := tuner.New("")
		if err := tu.Configure(tuner.DefaultSettings()); err != nil {
			return err
		}
		first = tu.Apply(context.Background())
		// Someone else changes two keys in the namespace.
		if err := setProcSys("net/ipv4/conf/all/arp_notify", "0"); err != nil {
			return err
		}
		if err := setProcSys("net/ipv4/conf/all/rp_filter", "1"); err != nil {
			return err
		}
		drifted = tu.Reconcile(context.Background())
		for _, p := range []string{"net/ipv4/conf/all/arp_notify", "net/ipv4/conf/all/rp_filter"} {
			v, err := procSys(p)
			if err != nil {
				return err
			}
			after[p] = v
		}
		quiet = tu.Reconcile(context.Background())
		return nil
	})

	if first.Degraded {
		t.Fatalf("first pass degraded: %+v", first.Keys)
	}
	want := map[string]tuner.Change{
		"net.ipv4.conf.all.arp_notify": {Key: "net.ipv4.conf.all.arp_notify", Path: "net/ipv4/conf/all/arp_notify", Old: "0", New: "1", Drift: true},
		"net.ipv4.conf.all.rp_filter":  {Key: "net.ipv4.conf.all.rp_filter", Path: "net/ipv4/conf/all/rp_filter", Old: "1", New: "0", Drift: true},
	}
	if len(drifted.Changes) != len(want) {
		t.Errorf("changes %+v, want %+v", drifted.Changes, want)
	}
	for _, c := range drifted.Changes {
		if c != want[c.Key] {
			t.Errorf("change %+v, want %+v", c, want[c.Key])
		}
	}
	for key, c := range want {
		ks := byKey(t, drifted, key)
		if ks.Drifts != 1 || ks.LastDrift.IsZero() || ks.Actual != c.New || ks.State != tuner.StateApplied {
			t.Errorf("%s after drift: %+v", key, ks)
		}
		if after[c.Path] != c.New {
			t.Errorf("%s reads %q in the namespace after reconcile, want %q", c.Path, after[c.Path], c.New)
		}
	}
	if ks := byKey(t, drifted, "net.ipv4.conf.all.forwarding"); ks.Drifts != 0 {
		t.Errorf("undrifted key counted: %+v", ks)
	}
	if len(quiet.Changes) != 0 || byKey(t, quiet, "net.ipv4.conf.all.arp_notify").Drifts != 1 {
		t.Errorf("pass after the correction: %+v", quiet)
	}
}

// TestKernelRefusalsInNamespace: keys the kernel refuses even to root are
// failed, the report degraded, the other keys applied.
//   - net.core.rmem_max is visible but 0444 outside the initial namespace
//     (EACCES; sysctl permissions bind root too).
//   - net.ipv4.ip_forward_update_priority accepts only 0 and 1 (EINVAL).
//   - arp_notify written as "01" reads back "1" (the kernel's own form).
func TestKernelRefusalsInNamespace(t *testing.T) {
	ns := newNS(t)
	guardHost(t)

	hostRmem, err := procSys("net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(hostRmem)
	if err != nil {
		t.Fatalf("rmem_max %q: %v", hostRmem, err)
	}
	wantRmem := strconv.Itoa(n + 4096)

	var rep tuner.Report
	var rmemInNS, fwdStart string
	ns.run(t, func() error {
		// A new namespace starts with the host's IPv4 conf/all values
		// (net.core.devconf_inherit_init_net 0 or 1 copies init_net's),
		// so on a forwarding host forwarding is 1 here already.
		var err error
		if fwdStart, err = procSys("net/ipv4/conf/all/forwarding"); err != nil {
			return err
		}
		tu := tuner.New("")
		s := tuner.DefaultSettings()
		s.Set = map[string]string{
			"net.core.rmem_max":                   wantRmem,
			"net.ipv4.ip_forward_update_priority": "5",
			"net.ipv4.conf.all.arp_notify":        "01",
		}
		if err := tu.Configure(s); err != nil {
			return err
		}
		rep = tu.Apply(context.Background())
		v, err := procSys("net/core/rmem_max")
		rmemInNS = v
		return err
	})

	if !rep.Degraded {
		t.Error("report not degraded")
	}
	for key, part := range map[string]string{
		"net.core.rmem_max":                   "permission denied",
		"net.ipv4.ip_forward_update_priority": "invalid argument",
		"net.ipv4.conf.all.arp_notify":        `wrote "01" but the kernel reads back "1"`,
	} {
		ks := byKey(t, rep, key)
		if ks.State != tuner.StateFailed || !strings.Contains(ks.Error, part) || ks.Failures != 1 {
			t.Errorf("%s: %+v, want failed with %q", key, ks, part)
		}
	}
	if rmemInNS != hostRmem {
		t.Errorf("rmem_max in the namespace %q, host %q", rmemInNS, hostRmem)
	}
	wantFwd := tuner.StateApplied
	if fwdStart == "1" {
		wantFwd = tuner.StateUnchanged
	}
	if ks := byKey(t, rep, "net.ipv4.conf.all.forwarding"); ks.State != wantFwd || ks.Actual != "1" || ks.Previous != fwdStart {
		t.Errorf("forwarding (starting at %s): %+v, want %s", fwdStart, ks, wantFwd)
	}
	if ks := byKey(t, rep, "net.ipv4.neigh.default.gc_thresh3"); ks.State != tuner.StateUnsupported {
		t.Errorf("gc_thresh3: %+v", ks)
	}
}

// TestInterfaceNamesWithDots tunes per-interface keys of veths named
// v0.100 and v1.100, dotted and with slashes.
func TestInterfaceNamesWithDots(t *testing.T) {
	ns := newNS(t)
	guardHost(t)
	ns.ip(t, "link", "add", "v0.100", "type", "veth", "peer", "name", "v1.100")

	type want struct{ path, value string }
	keys := map[string]want{
		"net.ipv4.conf.v0.100.rp_filter":        {"net/ipv4/conf/v0.100/rp_filter", "2"},
		"net/ipv4/conf/v1.100/arp_notify":       {"net/ipv4/conf/v1.100/arp_notify", "1"},
		"net.ipv6.conf.v1.100.forwarding":       {"net/ipv6/conf/v1.100/forwarding", "1"},
		"net.ipv4.neigh.v0.100.gc_stale_time":   {"net/ipv4/neigh/v0.100/gc_stale_time", "120"},
		"net/ipv6/neigh/v0.100/retrans_time_ms": {"net/ipv6/neigh/v0.100/retrans_time_ms", "2000"},
	}
	var rep tuner.Report
	got := map[string]string{}
	ns.run(t, func() error {
		tu := tuner.New("")
		s := tuner.Settings{Set: map[string]string{"net.ipv4.conf.v9.100.rp_filter": "2"}}
		for k, w := range keys {
			s.Set[k] = w.value
		}
		if err := tu.Configure(s); err != nil {
			return err
		}
		rep = tu.Apply(context.Background())
		for _, w := range keys {
			v, err := procSys(w.path)
			if err != nil {
				return err
			}
			got[w.path] = v
		}
		return nil
	})

	if rep.Degraded {
		t.Errorf("degraded: %+v", rep.Keys)
	}
	for k, w := range keys {
		ks := byKey(t, rep, k)
		if ks.Path != w.path || ks.Actual != w.value || (ks.State != tuner.StateApplied && ks.State != tuner.StateUnchanged) {
			t.Errorf("%s: %+v, want %s=%s", k, ks, w.path, w.value)
		}
		if got[w.path] != w.value {
			t.Errorf("%s reads %q in the namespace, want %q", w.path, got[w.path], w.value)
		}
	}
	if ks := byKey(t, rep, "net.ipv4.conf.v9.100.rp_filter"); ks.State != tuner.StateUnsupported || ks.Path != "net/ipv4/conf/v9.100/rp_filter" {
		t.Errorf("missing interface: %+v", ks)
	}
}
