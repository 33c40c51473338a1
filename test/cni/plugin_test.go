package cni

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// execPlugin runs the spiderpool binary as a main plugin would, and returns
// its CNI error (nil on success) and stdout.
func execPlugin(t *testing.T, cmd string, stdin io.Reader, extraEnv ...string) (*types.Error, string) {
	t.Helper()
	return execPluginVia(t, nil, cmd, stdin, extraEnv...)
}

// execPluginVia is execPlugin through a wrapper command (via, then the
// plugin's path), such as setpriv dropping a capability.
func execPluginVia(t *testing.T, via []string, cmd string, stdin io.Reader, extraEnv ...string) (*types.Error, string) {
	t.Helper()
	argv := append(append([]string{}, via...), filepath.Join(cniBin, "spiderpool"))
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append([]string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=c1", "CNI_NETNS=/var/run/netns/none",
		"CNI_IFNAME=net1", "CNI_PATH=" + cniBin, "PATH=/usr/bin:/bin"}, extraEnv...)
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if err == nil {
		return nil, out.String()
	}
	var e types.Error
	if jerr := json.Unmarshal(out.Bytes(), &e); jerr != nil {
		t.Fatalf("spiderpool %s: %v; stdout %q is not a CNI error (%v); stderr %q", cmd, err, out.String(), jerr, errb.String())
	}
	return &e, out.String()
}

// TestNetconfOnStdin: the configuration on stdin is bounded before skel
// reads it, and a malformed IPAM block is error 7 naming the field.
func TestNetconfOnStdin(t *testing.T) {
	conf := `{"cniVersion": "1.1.0", "name": "n", "type": "macvlan", "ipam": {"type": "spiderpool", "pools": ["a"], "socket": "/nonexistent/agent.sock"}}`
	// Valid JSON, padded past the bound: refused before anything else.
	big := io.MultiReader(strings.NewReader(conf), strings.NewReader(strings.Repeat(" ", cniplugin.MaxNetconfBytes)))
	e, _ := execPlugin(t, "ADD", big)
	if e == nil || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "larger than 1048576 bytes") {
		t.Errorf("ADD with %d bytes on stdin: %+v, want error 7 about the size", len(conf)+cniplugin.MaxNetconfBytes, e)
	}
	// Within the bound, the same configuration gets as far as the agent.
	e, _ = execPlugin(t, "ADD", strings.NewReader(conf))
	if e == nil || e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "spiderpool-agent is not running") {
		t.Errorf("ADD without an agent: %+v, want error 11 saying the agent is not running", e)
	}
	e, _ = execPlugin(t, "ADD", strings.NewReader(strings.Replace(conf, `"pools"`, `"Pools"`, 1)))
	if e == nil || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "ipam.Pools") {
		t.Errorf("ADD with ipam.Pools: %+v, want error 7 naming ipam.Pools", e)
	}
	e, _ = execPlugin(t, "ADD", strings.NewReader(conf), "CNI_ARGS=K8S_POD_NAME")
	if e == nil || e.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, "CNI_ARGS") {
		t.Errorf("ADD with a malformed CNI_ARGS: %+v, want error 4 naming CNI_ARGS", e)
	}
	e, out := execPlugin(t, "VERSION", strings.NewReader(""))
	if e != nil || !strings.Contains(out, `"1.1.0"`) || !strings.Contains(out, `"0.3.0"`) {
		t.Errorf("VERSION: %+v %s", e, out)
	}
}

// TestStdinThatNeverEnds: a stdin that is never closed does not hold the
// plugin: it gives up after cniplugin.StdinTimeout with error 5.
func TestStdinThatNeverEnds(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString(`{"cniVersion": "1.1.0", "name": "n", `); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e, _ := execPlugin(t, "ADD", r)
	took := time.Since(start)
	r.Close()
	if e == nil || e.Code != types.ErrIOFailure || !strings.Contains(e.Msg, "did not end within") {
		t.Errorf("ADD with a stdin that never ends: %+v, want error 5", e)
	}
	// Room for a loaded machine above the timeout, far below forever.
	if took < cniplugin.StdinTimeout || took > cniplugin.StdinTimeout+20*time.Second {
		t.Errorf("the plugin gave up after %v; its bound is %v", took, cniplugin.StdinTimeout)
	}
}

// serveEnv makes the test binary, re-executed, an impostor of the agent.
const serveEnv = "SPIDERPOOL_CNI_TEST_IMPOSTOR"

// serveImpostor listens on path and answers every request with an
// allocation of 192.0.2.66: what an impostor would hand a workload.
func serveImpostor(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	att := api.Attachment{AttachmentKey: api.AttachmentKey{ContainerID: "c1", Interface: "net1"}, State: "allocated"}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("request", r.URL.Path)
		att.Addresses = []api.AllocatedIP{{Pool: "a"}}
		att.Addresses[0].Address.UnmarshalText([]byte("192.0.2.66/24"))
		_ = json.NewEncoder(w).Encode(att)
	}))
}

// TestUntrustedAgent: a process of another user that put its socket where
// the plugin looks (a directory under the world-writable /tmp) is refused
// before any request is sent: error 109 naming its pid and uid.
func TestUntrustedAgent(t *testing.T) {
	const nobody = 65534
	dir := agenttest.ShortTempDir(t, "cni-impostor")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "impostor")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the impostor did not start: %q", lines.Text())
	}

	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "n", "ipam": {"type": "spiderpool", "pools": ["a"], "socket": %q}}`, sock)
	e, out := execPlugin(t, "ADD", strings.NewReader(conf))
	if e == nil {
		t.Fatalf("ADD believed the impostor: %s", out)
	}
	if e.Code != cniplugin.CodeUntrustedAgent || !strings.Contains(e.Msg, fmt.Sprintf("pid %d, uid %d", cmd.Process.Pid, nobody)) ||
		!strings.Contains(e.Msg, "writable by group or others") {
		t.Errorf("ADD with an impostor on the socket: %+v, want error %d naming pid %d and uid %d and why", e, cniplugin.CodeUntrustedAgent, cmd.Process.Pid, nobody)
	}
}

// TestPackagedConflists: the conflists of packaging/cni load with libcni,
// and their IPAM blocks are what the plugin accepts, naming the pools of
// the README. (The macvlan one runs in TestEcosystem; this machine's kernel
// may lack ipvlan, so the ipvlan one is checked here as configuration.)
func TestPackagedConflists(t *testing.T) {
	for file, mainType := range map[string]string{"macvlan.conflist": "macvlan", "ipvlan.conflist": "ipvlan", "bridge.conflist": "bridge"} {
		_, list := readPackaged(t, file)
		// 0.4.0: the highest version the distributions' packaged plugins
		// all accept (Ubuntu 22.04's 0.9.1 stop there; Debian 12/13's and
		// Ubuntu 24.04's 1.1.1 at 1.0.0).
		if list.CNIVersion != "0.4.0" || list.Plugins[0].Network.Type != mainType {
			t.Errorf("%s: version %s, first plugin %s; want %s at 0.4.0", file, list.CNIVersion, list.Plugins[0].Network.Type, mainType)
			continue
		}
		conf, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := cniplugin.ParseNetConf(conf.Bytes)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		want := "underlay-v4,underlay-v6"
		if mainType == "bridge" {
			want = "bridge-v4"
		}
		if got := strings.Join(nc.IPAM.Pools, ","); got != want || nc.IPAM.Socket != api.DefaultSocketPath {
			t.Errorf("%s: pools %s, socket %s", file, got, nc.IPAM.Socket)
		}
	}
}

// distroCNI is where Debian and Ubuntu's containernetworking-plugins put
// the plugins (test/prereq.sh installs them).
const distroCNI = "/usr/lib/cni"

// TestConflistsAcceptedByDistributionPlugins: each shipped conflist passes
// libcni's validation against the distribution's packaged plugins and this
// plugin - what Podman's CNI backend runs before it uses a network, and
// drops the network with only a warning when it fails. The version the
// conflists used to say, 1.1.0, is refused by the same plugins.
func TestConflistsAcceptedByDistributionPlugins(t *testing.T) {
	ctx := context.Background()
	cni := libcni.NewCNIConfig([]string{distroCNI, cniBin}, nil)
	for _, file := range []string{"macvlan.conflist", "ipvlan.conflist", "bridge.conflist"} {
		data, list := readPackaged(t, file)
		if _, err := cni.ValidateNetworkList(ctx, list); err != nil {
			t.Errorf("%s (cniVersion %s) with the plugins of %s: %v", file, list.CNIVersion, distroCNI, err)
		}
		newer, err := libcni.ConfListFromBytes([]byte(strings.Replace(string(data), `"cniVersion": "0.4.0"`, `"cniVersion": "1.1.0"`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cni.ValidateNetworkList(ctx, newer); err == nil || !strings.Contains(err.Error(), "does not support config version") {
			t.Errorf("%s at 1.1.0 with the plugins of %s: %v; want them to refuse it (which the README says)", file, distroCNI, err)
		}
	}
}

// TestOwnNetnsRefused: CNI_NETNS naming the namespace the plugin runs in is
// the spec's error 4, found before the agent is asked (the agent is absent
// here: reaching it would be error 11), unless the runtime set
// CNI_NETNS_OVERRIDE. A DEL releases (here: spools) first and then says so,
// as skel does. Another namespace, or one already gone, passes.
func TestOwnNetnsRefused(t *testing.T) {
	spool := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "n", "type": "macvlan", "ipam": {"type": "spiderpool", "pools": ["a"], "socket": "/nonexistent/agent.sock", "agent_wait": "0s", "spool_dir": %q}}`, spool)
	own := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	other := "/var/run/netns/" + netlab.NewNS(t, "own")
	for _, tc := range []struct {
		what  string
		netns string
		env   []string
		code  uint
	}{
		{"the test's namespace, which the plugin runs in", own, nil, types.ErrInvalidNetNS},
		{"the plugin's own, through /proc/self", "/proc/self/ns/net", nil, types.ErrInvalidNetNS},
		{"its own with CNI_NETNS_OVERRIDE=1", own, []string{"CNI_NETNS_OVERRIDE=1"}, types.ErrTryAgainLater},
		{"its own with CNI_NETNS_OVERRIDE=true", own, []string{"CNI_NETNS_OVERRIDE=true"}, types.ErrTryAgainLater},
		{"another namespace", other, nil, types.ErrTryAgainLater},
		{"a namespace already gone", "/var/run/netns/gone-" + t.Name(), nil, types.ErrTryAgainLater},
	} {
		e, _ := execPlugin(t, "ADD", strings.NewReader(conf), append([]string{"CNI_NETNS=" + tc.netns}, tc.env...)...)
		if e == nil || e.Code != tc.code {
			t.Errorf("ADD in %s: %+v, want error %d", tc.what, e, tc.code)
		}
	}
	// Without CAP_NET_ADMIN (SIOCGSKNS needs it) the plugin finds its
	// namespace through /proc instead.
	for _, tc := range []struct {
		netns string
		code  uint
	}{{own, types.ErrInvalidNetNS}, {other, types.ErrTryAgainLater}} {
		e, _ := execPluginVia(t, []string{"setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", "--"}, "ADD", strings.NewReader(conf), "CNI_NETNS="+tc.netns)
		if e == nil || e.Code != tc.code {
			t.Errorf("ADD without CAP_NET_ADMIN, CNI_NETNS %s: %+v, want error %d", tc.netns, e, tc.code)
		}
	}
	e, _ := execPlugin(t, "DEL", strings.NewReader(conf), "CNI_NETNS="+own)
	if e == nil || e.Code != types.ErrInvalidNetNS {
		t.Errorf("DEL in the plugin's own namespace: %+v, want error 4", e)
	}
	if ents, err := os.ReadDir(spool); err != nil || len(ents) != 1 {
		t.Errorf("DEL in the plugin's own namespace did not spool its release first: %v %v", ents, err)
	}
}
