package sysctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// serveEnv turns this test binary into the sysctl-tuner plugin: the plugin
// test starts it again, under `ip netns exec`, with serveEnv set to the
// device and inode of the namespace it must find itself in. The whole
// process, every thread, is then in that namespace, so the plugin's own
// goroutines (the reconcile loop, the gRPC handlers) tune it through the
// default proc_sys_root, /proc/sys, exactly as on a node.
const serveEnv = "SPIDERPOOL_SYSCTL_TEST_SERVE_IN_NETNS"

func TestMain(m *testing.M) {
	if want, ok := os.LookupEnv(serveEnv); ok {
		if err := checkInNamespace(want); err != nil {
			fmt.Fprintf(os.Stderr, "sysctl test plugin: %v; refusing to serve\n", err)
			os.Exit(2)
		}
		sdk.Serve(func(log hclog.Logger) sdk.Plugin { return sysctltuner.New(log) })
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nsID names a network namespace file by device and inode.
func nsID(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// checkInNamespace verifies that this process is in the namespace want
// names and that it is not the initial one.
func checkInNamespace(want string) error {
	got, err := nsID("/proc/self/ns/net")
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("in network namespace %s, want %s", got, want)
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/neigh/default"); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("/proc/sys/net/ipv4/neigh/default is visible (%v): this looks like the initial namespace", err)
	}
	return nil
}

// startPlugin runs this binary as the plugin inside ns and connects to it
// as the agent does (go-plugin, gRPC, AutoMTLS, a lifeline on fd 3).
func startPlugin(t *testing.T, ns *testNS) (*sdk.Client, *agenttest.SyncBuffer) {
	t.Helper()
	want, err := nsID("/var/run/netns/" + ns.name)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer lifeR.Close()
	cmd := exec.Command("ip", "netns", "exec", ns.name, exe)
	cmd.Env = append(os.Environ(),
		serveEnv+"="+want,
		sdk.LifelineEnv+"=3",
		sdk.LogLevelEnv+"=info",
	)
	cmd.ExtraFiles = []*os.File{lifeR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &agenttest.SyncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(nil, nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     10 * time.Second,
		Logger:           hclog.NewNullLogger(),
		Stderr:           stderr,
	})
	t.Cleanup(func() {
		client.Kill()
		lifeW.Close()
		if t.Failed() || testing.Verbose() {
			t.Logf("plugin stderr:\n%s", stderr)
		}
	})
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start the plugin in %s: %v\nstderr:\n%s", ns.name, err, stderr)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*sdk.Client), stderr
}

func tunedKey(t *testing.T, st sdk.TunerStatus, key string) sdk.TunedKey {
	return tunertest.Key(t, st.Keys, key, func(k sdk.TunedKey) string { return k.Key })
}

func metricValue(t *testing.T, c *sdk.Client, name string, labels map[string]string) float64 {
	t.Helper()
	samples, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		if s.Name != name || len(s.Labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && s.Labels[k] == v
		}
		if match {
			return s.Value
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// waitFor polls cond for up to 5s (test/poll).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, poll.Bool(cond))
}

// TestPluginInNamespace serves the real plugin as a process inside a fresh
// network namespace and drives it through gRPC as the agent does: the four
// per-namespace defaults are applied and read back, both gc_thresh3 keys
// are unsupported, the plugin is ready; a value changed behind its back is
// put back by the loop and counted; a key the kernel refuses (rmem_max is
// 0444 in a child namespace) makes it degraded naming the key, and the host
// keeps its values throughout.
func TestPluginInNamespace(t *testing.T) {
	ns := newNS(t)
	guardHost(t)
	ns.run(t, preparePerNS)

	c, stderr := startPlugin(t, ns)
	ctx := context.Background()
	agent := sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}
	cfg := sdk.RawConfig{Filename: "agent.hcl", Body: []byte("reconcile_interval = \"100ms\"\n")}
	if err := c.Configure(ctx, sdk.ConfigureRequest{Config: cfg, Agent: agent}); err != nil {
		t.Fatalf("Configure: %v", err)
	}

	// Defaults: the per-namespace keys applied, gc_thresh3 unsupported.
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 6 {
		t.Errorf("status has %d keys: %+v", len(st.Keys), st.Keys)
	}
	for _, k := range perNS {
		got := tunedKey(t, st, k.key)
		if got.State != "applied" || got.Actual != k.desired || got.Previous != k.start || got.Error != "" {
			t.Errorf("%s: %+v, want applied %s (previous %s)", k.key, got, k.desired, k.start)
		}
	}
	for _, key := range []string{"net.ipv4.neigh.default.gc_thresh3", "net.ipv6.neigh.default.gc_thresh3"} {
		if got := tunedKey(t, st, key); got.State != "unsupported" || got.Error != "" {
			t.Errorf("%s: %+v, want unsupported", key, got)
		}
	}
	var readBack map[string]string
	ns.run(t, func() (err error) {
		readBack, err = readPerNS()
		return err
	})
	for _, k := range perNS {
		if readBack[k.path] != k.desired {
			t.Errorf("%s reads %q in the namespace, want %q", k.path, readBack[k.path], k.desired)
		}
	}
	h, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.State != sdk.HealthReady {
		t.Errorf("health %s %q, want ready", h.State, h.Message)
	}
	var detail []map[string]any
	if err := json.Unmarshal(h.Detail.(json.RawMessage), &detail); err != nil || len(detail) != 6 {
		t.Errorf("health detail %s: %v", h.Detail, err)
	}

	// Drift: someone resets arp_notify in the namespace; the loop puts it
	// back and counts it.
	ns.run(t, func() error { return setProcSys("net/ipv4/conf/all/arp_notify", "0") })
	waitFor(t, "arp_notify set back", func() bool {
		var v string
		ns.run(t, func() error {
			var err error
			v, err = procSys("net/ipv4/conf/all/arp_notify")
			return err
		})
		return v == "1"
	})
	waitFor(t, "drift counted", func() bool {
		return metricValue(t, c, sysctltuner.MetricDriftCorrections, map[string]string{"key": "net.ipv4.conf.all.arp_notify"}) == 1
	})
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k := tunedKey(t, st, "net.ipv4.conf.all.arp_notify"); k.LastDrift.IsZero() || k.State != "applied" {
		t.Errorf("arp_notify after drift: %+v", k)
	}
	waitFor(t, "drift logged at warn", func() bool {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["@level"] == "warn" &&
				e["key"] == "net.ipv4.conf.all.arp_notify" && e["old"] == "0" && e["new"] == "1" {
				return true
			}
		}
		return false
	})

	// A reload that asks for a key the kernel refuses in a child
	// namespace: failed with EACCES, degraded naming it, the rest applied.
	hostRmem, err := procSys("net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(hostRmem)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Body = fmt.Appendf(nil, "reconcile_interval = \"100ms\"\nset = { \"net.core.rmem_max\" = \"%d\" }\n", n+4096)
	if err := c.Configure(ctx, sdk.ConfigureRequest{Config: cfg, Agent: agent}); err != nil {
		t.Fatalf("Configure with rmem_max: %v", err)
	}
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k := tunedKey(t, st, "net.core.rmem_max"); k.State != "failed" || !strings.Contains(k.Error, "permission denied") {
		t.Errorf("rmem_max: %+v, want failed with permission denied", k)
	}
	if k := tunedKey(t, st, "net.ipv4.conf.all.forwarding"); k.State != "applied" {
		t.Errorf("forwarding: %+v", k)
	}
	h, err = c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "net.core.rmem_max") {
		t.Errorf("health %s %q, want degraded naming net.core.rmem_max", h.State, h.Message)
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
