// Package cnilab drives CNI plugins the way a container runtime does, for
// the tests and the benchmark of the `spiderpool` IPAM plugin: it builds the
// upstream reference plugins (macvlan, ipvlan, bridge, ptp, host-local) at a
// pinned version and the spiderpool plugin of this checkout into one
// directory (the runtime's CNI_PATH), and runs libcni inside the network
// namespace that plays the node, so that the main plugins find the node's
// uplink there and move their interfaces into workload namespaces.
package cnilab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// PluginsVersion is the github.com/containernetworking/plugins release the
// tests run against: it speaks CNI 1.1.0 (STATUS) and is built with the
// same cni library version as the spiderpool plugin.
const PluginsVersion = "v1.9.1"

// Upstream are the reference plugins built, by package path in their module.
var Upstream = []string{"plugins/main/macvlan", "plugins/main/ipvlan", "plugins/main/bridge", "plugins/main/ptp", "plugins/ipam/host-local"}

// Build compiles the spiderpool plugin of this checkout (with the race
// detector when race is set) and the upstream plugins into dir.
func Build(dir string, race bool) error {
	if err := BuildSpiderpool(dir, race); err != nil {
		return err
	}
	return BuildUpstream(dir)
}

// BuildSpiderpool compiles the spiderpool plugin of this checkout into dir.
func BuildSpiderpool(dir string, race bool) error {
	root, err := agenttest.ModuleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", filepath.Join(dir, "spiderpool")}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./core/cmd/spiderpool-cni")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the spiderpool CNI plugin: %v\n%s", err, out)
	}
	return nil
}

// BuildUpstream installs the upstream plugins at PluginsVersion into dir,
// from the Go module proxy or the module cache, with the flags of a release
// build (static, stripped).
func BuildUpstream(dir string) error {
	var pkgs []string
	for _, p := range Upstream {
		pkgs = append(pkgs, "github.com/containernetworking/plugins/"+p+"@"+PluginsVersion)
	}
	// Outside this module, so that the plugins build with their own go.mod.
	cmd := exec.Command("go", append([]string{"install", "-trimpath", "-ldflags", "-s -w"}, pkgs...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install containernetworking/plugins %s: %v\n%s", PluginsVersion, err, out)
	}
	return nil
}

// Runtime is libcni as a runtime on the node uses it.
type Runtime struct {
	BinDir string // CNI_PATH
	// NodeNS is the path of the node's network namespace: plugins run there.
	NodeNS string
	CNI    *libcni.CNIConfig
}

// NewRuntime returns a runtime whose plugins are in binDir, with its
// result cache in cacheDir, running plugins in the namespace at nodeNS.
func NewRuntime(binDir, cacheDir, nodeNS string) *Runtime {
	// An explicit Exec: with nil, libcni sets its default on first use,
	// and concurrent first calls race on it.
	ex := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return &Runtime{BinDir: binDir, NodeNS: nodeNS, CNI: libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, ex)}
}

// in runs fn on a thread inside the node's namespace; the plugin processes
// libcni forks there inherit it.
func (r *Runtime) in(fn func() error) error {
	return netns.Do(r.NodeNS, fn)
}

// Attachment names one workload interface.
type Attachment struct {
	ContainerID string
	Netns       string // path
	IfName      string
	// Args are CNI_ARGS, such as K8S_POD_NAMESPACE.
	Args [][2]string
}

func (a Attachment) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: a.Netns, IfName: a.IfName, Args: a.Args}
}

// Add runs ADD of the network list for a.
func (r *Runtime) Add(ctx context.Context, list *libcni.NetworkConfigList, a Attachment) (types.Result, error) {
	var res types.Result
	err := r.in(func() error {
		var err error
		res, err = r.CNI.AddNetworkList(ctx, list, a.rt())
		return err
	})
	return res, err
}

// Del runs DEL.
func (r *Runtime) Del(ctx context.Context, list *libcni.NetworkConfigList, a Attachment) error {
	return r.in(func() error { return r.CNI.DelNetworkList(ctx, list, a.rt()) })
}

// Check runs CHECK (with the result cached by Add).
func (r *Runtime) Check(ctx context.Context, list *libcni.NetworkConfigList, a Attachment) error {
	return r.in(func() error { return r.CNI.CheckNetworkList(ctx, list, a.rt()) })
}

// Status runs STATUS.
func (r *Runtime) Status(ctx context.Context, list *libcni.NetworkConfigList) error {
	return r.in(func() error { return r.CNI.GetStatusNetworkList(ctx, list) })
}

// IPAMGC runs GC on the IPAM plugin of the list's first plugin with the
// given valid attachments (nil: no list at all), the way a main plugin that
// forwards GC would: libcni injects the keys, the IPAM plugin is exec'd
// with the main plugin's configuration. The upstream main plugins of
// PluginsVersion do not forward GC to their IPAM plugin, so libcni's
// GCNetworkList alone would never reach it.
func (r *Runtime) IPAMGC(ctx context.Context, list *libcni.NetworkConfigList, valid []types.GCAttachment) (stderr string, err error) {
	inject := map[string]any{"name": list.Name, "cniVersion": list.CNIVersion}
	if valid != nil {
		inject["cni.dev/valid-attachments"] = valid
		inject["cni.dev/attachments"] = valid
	}
	conf, err := libcni.InjectConf(list.Plugins[0], inject)
	if err != nil {
		return "", err
	}
	var ipam struct {
		IPAM struct {
			Type string `json:"type"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(conf.Bytes, &ipam); err != nil {
		return "", err
	}
	var buf strings.Builder
	ex := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: &buf}}
	err = r.in(func() error {
		return invoke.ExecPluginWithoutResult(ctx, filepath.Join(r.BinDir, ipam.IPAM.Type), conf.Bytes,
			&invoke.Args{Command: "GC", Path: r.BinDir}, ex)
	})
	return buf.String(), err
}

// IPAMDel runs DEL of the list's IPAM plugin directly for a.
func (r *Runtime) IPAMDel(ctx context.Context, list *libcni.NetworkConfigList, a Attachment) error {
	_, err := r.IPAM(ctx, list, "DEL", a)
	return err
}

// IPAM runs the list's IPAM plugin directly with command cmd for a, as its
// main plugin would (a repeated ADD after a runtime's retry, for example).
func (r *Runtime) IPAM(ctx context.Context, list *libcni.NetworkConfigList, cmd string, a Attachment) (types.Result, error) {
	conf, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
	if err != nil {
		return nil, err
	}
	var ipam struct {
		IPAM struct {
			Type string `json:"type"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(conf.Bytes, &ipam); err != nil {
		return nil, err
	}
	var cniArgs []string
	for _, kv := range a.Args {
		cniArgs = append(cniArgs, kv[0]+"="+kv[1])
	}
	args := &invoke.Args{Command: cmd, ContainerID: a.ContainerID, NetNS: a.Netns, IfName: a.IfName,
		PluginArgsStr: strings.Join(cniArgs, ";"), Path: r.BinDir}
	var res types.Result
	err = r.in(func() error {
		path := filepath.Join(r.BinDir, ipam.IPAM.Type)
		if cmd == "ADD" {
			var err error
			res, err = invoke.ExecPluginWithResult(ctx, path, conf.Bytes, args, nil)
			return err
		}
		return invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, nil)
	})
	return res, err
}

// Ping sends ICMP echo requests from src to dst inside the network
// namespace at nsPath, one every 200 ms, until a reply comes back (nil) or
// timeout passes. It proves that a workload can use the address it got:
// the reply is addressed to src.
func Ping(nsPath string, src, dst netip.Addr, timeout time.Duration) error {
	network, proto, echo, reply := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	if dst.Is6() {
		network, proto, echo, reply = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var conn *icmp.PacketConn
	if err := netns.Do(nsPath, func() error {
		var err error
		conn, err = icmp.ListenPacket(network, src.String())
		return err
	}); err != nil {
		return fmt.Errorf("ping %s from %s: open an ICMP socket in %s: %w", dst, src, nsPath, err)
	}
	defer conn.Close()
	id := int(pingID.Add(1) & 0xffff)
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("spiderpool-cni")}}
		b, err := msg.Marshal(nil) // the kernel sums ICMPv6
		if err != nil {
			return err
		}
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, src, err)
		}
		wait := time.Now().Add(200 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		_ = conn.SetReadDeadline(wait)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				break // this round's window is over: send again
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != reply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && peer.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s from %s in %s: no reply within %v", dst, src, nsPath, timeout)
}

var pingID atomic.Int64
