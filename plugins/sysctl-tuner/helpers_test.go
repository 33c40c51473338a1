package sysctltuner

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// initNS is a sysctl tree like the initial network namespace's, with the
// kernel's defaults for the six tuned keys.
var initNS = tunertest.InitNS()

// the six defaults and their values.
var defaultKeys = map[string]string{
	"net.ipv4.neigh.default.gc_thresh3": "28160",
	"net.ipv6.neigh.default.gc_thresh3": "28160",
	"net.ipv4.conf.all.arp_notify":      "1",
	"net.ipv4.conf.all.forwarding":      "1",
	"net.ipv6.conf.all.forwarding":      "1",
	"net.ipv4.conf.all.rp_filter":       "0",
}

func keyPath(key string) string { return strings.ReplaceAll(key, ".", "/") }

// mkTree builds a sysctl tree in a temporary directory from initNS plus
// extra (an empty value removes a file).
func mkTree(t *testing.T, extra map[string]string) string {
	return tunertest.Tree(t, initNS, extra)
}

func readKey(t *testing.T, root, rel string) string {
	return strings.TrimSpace(tunertest.Read(t, root, rel))
}

func writeKey(t *testing.T, root, rel, v string) { tunertest.Write(t, root, rel, v+"\n") }

var both = sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: "info"}

// rawAt is a config block that starts at line 20, column 3 of agent.hcl, as
// a plugin block inside a larger file does.
func rawAt(body string) sdk.RawConfig {
	return sdk.RawConfig{Filename: "agent.hcl", Body: []byte(body), Start: hcl.Pos{Line: 20, Column: 3, Byte: 400}}
}

// configure configures p with body plus proc_sys_root = root.
func configure(t *testing.T, p *Plugin, root, body string, agent sdk.AgentSettings) error {
	t.Helper()
	return p.Configure(context.Background(), sdk.ConfigureRequest{
		Config: rawAt(fmt.Sprintf("proc_sys_root = %q\n%s", root, body)),
		Agent:  agent,
	})
}

func mustConfigure(t *testing.T, p *Plugin, root, body string, agent sdk.AgentSettings) {
	t.Helper()
	if err := configure(t, p, root, body, agent); err != nil {
		t.Fatalf("Configure: %v", err)
	}
}

// newPlugin returns a plugin that is shut down when the test ends.
func newPlugin(t *testing.T) *Plugin {
	t.Helper()
	p := New(hclog.NewNullLogger())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

// configuredPlugin returns a plugin configured with body on a new tree of
// initNS plus extra, and the tree's root; the plugin is shut down when the
// test ends.
func configuredPlugin(t *testing.T, extra map[string]string, body string, agent sdk.AgentSettings) (*Plugin, string) {
	t.Helper()
	root := mkTree(t, extra)
	p := newPlugin(t)
	mustConfigure(t, p, root, body, agent)
	return p, root
}

func statusKey(t *testing.T, st sdk.TunerStatus, key string) sdk.TunedKey {
	return tunertest.Key(t, st.Keys, key, func(k sdk.TunedKey) string { return k.Key })
}

func statusKeys(st sdk.TunerStatus) []string {
	var out []string
	for _, k := range st.Keys {
		out = append(out, k.Key)
	}
	sort.Strings(out)
	return out
}

// sample finds the sample with name and labels; ok is false if absent.
func sample(samples []sdk.Sample, name string, labels map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.Name == name && (len(labels) == 0 && len(s.Labels) == 0 || reflect.DeepEqual(s.Labels, labels)) {
			return s.Value, true
		}
	}
	return 0, false
}

func mustSample(t *testing.T, p *Plugin, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := sample(p.Metrics(context.Background()), name, labels)
	if !ok {
		t.Fatalf("no sample %s%v", name, labels)
	}
	return v
}

// eventually polls cond until it holds or 5s pass (test/poll).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, poll.Bool(cond))
}

// applyNow runs a pass now, as the reconcile loop would.
func (p *Plugin) applyNow(ctx context.Context) (sdk.TunerStatus, error) {
	rep, ok := p.pass(ctx)
	if !ok {
		return sdk.TunerStatus{}, ctx.Err()
	}
	return toSDK(rep), nil
}
