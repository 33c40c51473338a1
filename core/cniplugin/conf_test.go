package cniplugin

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
)

func TestParseNetConf(t *testing.T) {
	wrap := func(ipam string) string {
		return `{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth0","ipam":` + ipam + `}`
	}
	good := []struct {
		name, conf string
		pools      []string
		socket     string
	}{
		{"pools", wrap(`{"type":"spiderpool","pools":["v4","v6"]}`), []string{"v4", "v6"}, api.DefaultSocketPath},
		{"by family", wrap(`{"type":"spiderpool","ipv6_pool":"v6","ipv4_pool":"v4"}`), []string{"v4", "v6"}, api.DefaultSocketPath},
		{"v6 only", wrap(`{"type":"spiderpool","ipv6_pool":"v6"}`), []string{"v6"}, api.DefaultSocketPath},
		{"socket", wrap(`{"type":"spiderpool","pools":["a"],"socket":"/run/x/s.sock"}`), []string{"a"}, "/run/x/s.sock"},
	}
	nc, err := ParseNetConf([]byte(wrap(`{"type":"spiderpool","pools":["a"]}`)))
	if err != nil || nc.IPAM.AgentWait != DefaultAgentWait || nc.IPAM.SpoolDir != cnispool.DefaultDir {
		t.Errorf("defaults: agent_wait %v, spool_dir %q, %v; want %v and %s", nc.IPAM.AgentWait, nc.IPAM.SpoolDir, err, DefaultAgentWait, cnispool.DefaultDir)
	}
	nc, err = ParseNetConf([]byte(wrap(`{"type":"spiderpool","pools":["a"],"agent_wait":"0s","spool_dir":"/run/spool"}`)))
	if err != nil || nc.IPAM.AgentWait != 0 || nc.IPAM.SpoolDir != "/run/spool" {
		t.Errorf("agent_wait 0s, spool_dir /run/spool: %+v %v", nc, err)
	}
	for _, tc := range good {
		nc, err := ParseNetConf([]byte(tc.conf))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(nc.IPAM.Pools, tc.pools) || nc.IPAM.Socket != tc.socket || nc.Name != "n" || nc.CNIVersion != "1.1.0" {
			t.Errorf("%s: got %+v", tc.name, nc)
		}
	}

	bad := []struct {
		name, conf, field, msg string
	}{
		{"no ipam", `{"cniVersion":"1.1.0","name":"n"}`, "ipam", "missing"},
		{"ipam null", `{"name":"n","ipam":null}`, "ipam", "missing"},
		{"ipam list", wrap(`[1]`), "ipam", "must be an object"},
		{"unknown key", wrap(`{"type":"spiderpool","pools":["a"],"pool":"b"}`), "ipam.pool", "not a field"},
		{"miscased key", wrap(`{"type":"spiderpool","Pools":["a"]}`), "ipam.Pools", "not a field"},
		{"key twice", wrap(`{"type":"spiderpool","pools":["a"],"pools":["b"]}`), "ipam.pools", "twice"},
		{"wrong type", wrap(`{"type":"host-local","pools":["a"]}`), "ipam.type", "host-local"},
		{"pools not a list", wrap(`{"type":"spiderpool","pools":"a"}`), "ipam.pools", "list of strings"},
		{"pool a number", wrap(`{"type":"spiderpool","pools":["a",7]}`), "ipam.pools", "number"},
		{"empty pools", wrap(`{"type":"spiderpool","pools":[]}`), "ipam.pools", "empty"},
		{"no pools", wrap(`{"type":"spiderpool"}`), "ipam.pools", "missing"},
		{"both forms", wrap(`{"type":"spiderpool","pools":["a"],"ipv4_pool":"b"}`), "ipam.pools", "not both"},
		{"three pools", wrap(`{"type":"spiderpool","pools":["a","b","c"]}`), "ipam.pools", "at most 2"},
		{"same pool twice", wrap(`{"type":"spiderpool","pools":["a","a"]}`), "ipam.pools[1]", "twice"},
		{"bad pool name", wrap(`{"type":"spiderpool","pools":["a","-x"]}`), "ipam.pools[1]", "pool name"},
		{"bad v6 pool name", wrap(`{"type":"spiderpool","ipv4_pool":"a","ipv6_pool":"b c"}`), "ipam.ipv6_pool", "pool name"},
		{"empty v4 pool", wrap(`{"type":"spiderpool","ipv4_pool":""}`), "ipam.ipv4_pool", "empty"},
		{"relative socket", wrap(`{"type":"spiderpool","pools":["a"],"socket":"run/s.sock"}`), "ipam.socket", "absolute"},
		{"unclean socket", wrap(`{"type":"spiderpool","pools":["a"],"socket":"/run/../s.sock"}`), "ipam.socket", "clean"},
		{"long socket", wrap(`{"type":"spiderpool","pools":["a"],"socket":"/` + strings.Repeat("s", 120) + `"}`), "ipam.socket", "107"},
		{"agent_wait not a duration", wrap(`{"type":"spiderpool","pools":["a"],"agent_wait":"soon"}`), "ipam.agent_wait", "not a duration"},
		{"agent_wait a number", wrap(`{"type":"spiderpool","pools":["a"],"agent_wait":5}`), "ipam.agent_wait", "number"},
		{"agent_wait negative", wrap(`{"type":"spiderpool","pools":["a"],"agent_wait":"-1s"}`), "ipam.agent_wait", "30s"},
		{"agent_wait too long", wrap(`{"type":"spiderpool","pools":["a"],"agent_wait":"31s"}`), "ipam.agent_wait", "30s"},
		{"relative spool_dir", wrap(`{"type":"spiderpool","pools":["a"],"spool_dir":"var/spool"}`), "ipam.spool_dir", "absolute"},
		{"unclean spool_dir", wrap(`{"type":"spiderpool","pools":["a"],"spool_dir":"/var/../spool"}`), "ipam.spool_dir", "clean"},
		{"cut off", `{"name":"n","ipam":{"type":"spiderpool"`, "netconf", "JSON"},
		{"bad valid-attachments", `{"name":"n","cni.dev/valid-attachments":[{"containerID":"a"}],"ipam":{"type":"spiderpool","pools":["a"]}}`, "cni.dev/valid-attachments[0]", "ifname"},
		{"valid-attachments not a list", `{"name":"n","cni.dev/valid-attachments":{},"ipam":{"type":"spiderpool","pools":["a"]}}`, "cni.dev/valid-attachments", "list"},
		// The keys this plugin reads follow the agent's one rule for input
		// (core/input): encoding/json alone would keep the last of two
		// "ipam" blocks and take "IPAM" or "Name" for its keys.
		{"ipam twice", `{"name":"n","ipam":{"type":"spiderpool","pools":["a"]},"ipam":{"type":"spiderpool","pools":["b"]}}`, "ipam", "given twice"},
		{"IPAM", `{"name":"n","IPAM":{"type":"spiderpool","pools":["a"]}}`, "IPAM", `did you mean "ipam"?`},
		{"name in two cases", `{"name":"n","Name":"m","ipam":{"type":"spiderpool","pools":["a"]}}`, "Name", "name the same field"},
		{"attachment key twice", `{"name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0","ifname":"eth1"}],"ipam":{"type":"spiderpool","pools":["a"]}}`, "cni.dev/valid-attachments[0].ifname", "given twice"},
		{"long type cut", wrap(`{"type":"` + strings.Repeat("t", 10240) + `","pools":["a"]}`), "ipam.type", "(10240 bytes, cut)"},
		{"long unknown key cut", wrap(`{"type":"spiderpool","pools":["a"],"` + strings.Repeat("k", 10240) + `":1}`), "ipam." + strings.Repeat("k", 128) + "... (10240 bytes, cut)", "not a field"},
	}
	for _, tc := range bad {
		_, err := ParseNetConf([]byte(tc.conf))
		var ce *input.FieldError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want an *input.FieldError", tc.name, err)
			continue
		}
		if ce.Field != tc.field || !strings.Contains(ce.Msg, tc.msg) || len(err.Error()) > 1024 {
			t.Errorf("%s: %q, want field %q and a message with %q", tc.name, err, tc.field, tc.msg)
		}
	}
}

// TestValidAttachments: cni.dev/valid-attachments wins; the legacy
// cni.dev/attachments counts when it is alone; null is no list at all.
func TestValidAttachments(t *testing.T) {
	ipam := `"ipam":{"type":"spiderpool","pools":["a"]}`
	for _, tc := range []struct {
		conf     string
		has      bool
		nIDs     []string
		describe string
	}{
		{`{"name":"n",` + ipam + `}`, false, nil, "absent"},
		{`{"name":"n","cni.dev/valid-attachments":null,` + ipam + `}`, false, nil, "null"},
		{`{"name":"n","cni.dev/valid-attachments":[],` + ipam + `}`, true, nil, "empty"},
		{`{"name":"n","cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}],` + ipam + `}`, true, []string{"c1"}, "legacy"},
		{`{"name":"n","cni.dev/valid-attachments":[{"containerID":"c2","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}],` + ipam + `}`, true, []string{"c2"}, "both"},
	} {
		nc, err := ParseNetConf([]byte(tc.conf))
		if err != nil {
			t.Fatalf("%s: %v", tc.describe, err)
		}
		var ids []string
		for _, a := range nc.ValidAttachments {
			ids = append(ids, a.ContainerID)
		}
		if nc.HasValid != tc.has || !slices.Equal(ids, tc.nIDs) {
			t.Errorf("%s: HasValid %v ids %v, want %v %v", tc.describe, nc.HasValid, ids, tc.has, tc.nIDs)
		}
	}
}

func TestWorkload(t *testing.T) {
	for args, want := range map[string]string{
		"": "",
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=x": "default/web-0",
		"K8S_POD_NAME=web-0":                   "web-0",
		"SPIDERPOOL_WORKLOAD=nomad-alloc-1":    "nomad-alloc-1",
		"K8S_POD_NAME=p;SPIDERPOOL_WORKLOAD=w": "p",
		"IgnoreUnknown=true;":                  "",
	} {
		got, err := Workload(args)
		if err != nil || got != want {
			t.Errorf("Workload(%q) = %q, %v; want %q", args, got, err, want)
		}
	}
	for _, args := range []string{"K8S_POD_NAME", "=x", "SPIDERPOOL_WORKLOAD=a\x01b"} {
		var ce *input.FieldError
		if _, err := Workload(args); !errors.As(err, &ce) || ce.Field != "CNI_ARGS" {
			t.Errorf("Workload(%q): err %v, want a CNI_ARGS error", args, err)
		}
	}
}

// TestLongWorkloadName: Kubernetes allows a 63-byte namespace and a
// 253-byte pod name; the agent takes 253 bytes. A longer name is shortened
// the same way every time, and two long names stay apart.
func TestLongWorkloadName(t *testing.T) {
	ns, pod := strings.Repeat("n", 63), strings.Repeat("p", 253)
	args := "K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + pod
	got, err := Workload(args)
	if err != nil {
		t.Fatalf("Workload of a %d-byte name: %v", len(ns)+1+len(pod), err)
	}
	if len(got) > api.MaxWorkload || !strings.HasPrefix(got, ns+"/ppp") {
		t.Errorf("shortened to %q (%d bytes)", got, len(got))
	}
	if again, _ := Workload(args); again != got {
		t.Errorf("the same name shortened to %q and %q", got, again)
	}
	other, _ := Workload("K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + pod[:252] + "q")
	if other == got {
		t.Errorf("two long names shortened to the same %q", got)
	}
	// Multi-byte characters are not cut in two.
	long := strings.Repeat("é", 200)
	w, err := Workload("SPIDERPOOL_WORKLOAD=" + long)
	if err != nil || !utf8.ValidString(w) || len(w) > api.MaxWorkload {
		t.Errorf("Workload of %d bytes of é: %q, %v", len(long), w, err)
	}
}

// TestLinksNoHeavyDependencies: the plugin is exec'd once per workload
// interface; it must link no HCL, gRPC, go-plugin, prometheus or agent
// internals. Outside the standard library it may use only these.
func TestLinksNoHeavyDependencies(t *testing.T) {
	allowed := []string{
		"github.com/spiderpool-agent/spiderpool-agent/core/cmd/spiderpool-cni",
		"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin",
		"github.com/spiderpool-agent/spiderpool-agent/core/api",
		"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool",
		"github.com/spiderpool-agent/spiderpool-agent/core/peercred",
		"github.com/spiderpool-agent/spiderpool-agent/core/input", // the rule for input, standard library only
		"github.com/spiderpool-agent/spiderpool-agent/core/retry", // the backoff while the agent is away, standard library only
		"github.com/containernetworking/cni/pkg/",
		"github.com/vishvananda/netns", // skel's netns check (cni/pkg/ns)
		"golang.org/x/sys/unix",
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/spiderpool-agent/spiderpool-agent/core/cmd/spiderpool-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		if !slices.ContainsFunc(allowed, func(a string) bool { return pkg == a || strings.HasSuffix(a, "/") && strings.HasPrefix(pkg, a) }) {
			t.Errorf("the spiderpool CNI plugin links %s; keep it to the standard library, the CNI types and core/api", pkg)
		}
	}
	if n < 3 {
		t.Fatalf("go list -deps listed %d packages: %s", n, out)
	}
}

// The main plugin's configuration decides which detections cannot work:
// a bridge that becomes the gateway (isGateway, or isDefaultGateway which
// implies it) skips gateway detection only; ptp, ipvlan l3/l3s and dummy
// skip both; everything else keeps both. A main-plugin field of another
// type is the main plugin's error, not ours: it counts as absent.
func TestMainPluginSkips(t *testing.T) {
	const ipam = `"ipam": {"type": "spiderpool", "pools": ["v4", "v6"]}`
	for _, tc := range []struct {
		main string
		want string // detections skipped, in order
	}{
		{`"type": "bridge", "isGateway": true`, "gateway"},
		{`"type": "bridge", "isDefaultGateway": true`, "gateway"},
		{`"type": "bridge", "isGateway": false`, ""},
		{`"type": "bridge"`, ""},
		{`"type": "bridge", "isGateway": "yes"`, ""},
		{`"type": "ptp"`, "gateway conflict"},
		{`"type": "ipvlan", "mode": "l3"`, "gateway conflict"},
		{`"type": "ipvlan", "mode": "l3s"`, "gateway conflict"},
		{`"type": "ipvlan", "mode": "l2"`, ""},
		{`"type": "ipvlan"`, ""},
		{`"type": "macvlan", "mode": "bridge", "isGateway": true`, ""},
		{`"type": "host-device"`, ""},
		{`"type": "dummy"`, "gateway conflict"},
		{`"isGateway": true`, ""},
	} {
		nc, err := ParseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", ` + tc.main + `, ` + ipam + `}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.main, err)
		}
		var got []string
		for _, s := range nc.Skips {
			if s.Pool != "" || s.Reason == "" {
				t.Errorf("%s: skip %+v, want all pools and a reason", tc.main, s)
			}
			got = append(got, s.Detection)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: skips %q, want %q", tc.main, got, tc.want)
		}
		req := api.AllocateRequest{ContainerID: "c", Interface: "eth0", Pools: nc.IPAM.Pools, SkipDetection: nc.Skips}
		if err := req.Validate(); err != nil {
			t.Errorf("%s: the request the plugin sends is invalid: %v", tc.main, err)
		}
	}
}

// Whether the agent may leave the probed interface up mid-DAD: every
// reference main plugin but bridge raises it with DAD as it is; bridge
// turns DAD off first unless enabledad; an unknown one is not trusted to.
func TestMainPluginKeepsDAD(t *testing.T) {
	const ipam = `"ipam": {"type": "spiderpool", "pools": ["v4", "v6"]}`
	for _, tc := range []struct {
		main string
		want bool
	}{
		{`"type": "macvlan", "mode": "bridge"`, true},
		{`"type": "ipvlan", "mode": "l2"`, true},
		{`"type": "host-device"`, true},
		{`"type": "vlan"`, true},
		{`"type": "bridge"`, false},
		{`"type": "bridge", "enabledad": false`, false},
		{`"type": "bridge", "enabledad": true`, true},
		{`"type": "bridge", "enabledad": "yes"`, false},
		{`"type": "some-vendor-plugin"`, false},
	} {
		nc, err := ParseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", ` + tc.main + `, ` + ipam + `}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.main, err)
		}
		if nc.KeepsDAD != tc.want {
			t.Errorf("%s: KeepsDAD %v, want %v", tc.main, nc.KeepsDAD, tc.want)
		}
	}
}

// The plugin's errors name the key of the allocation; a 10 KiB container
// id from the runtime is cut there, as in the agent's own errors.
func TestDescribeKeyCutsLongIDs(t *testing.T) {
	got := describeKey(strings.Repeat("c", 10240), "eth0")
	if len(got) > 256 || !strings.Contains(got, "(10240 bytes, cut) interface eth0") {
		t.Errorf("describeKey = %q", got)
	}
}
