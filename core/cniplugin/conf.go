package cniplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
)

// MaxNetconfBytes bounds the network configuration read from stdin. A
// conflist with a prevResult of a few addresses is a few KiB.
const MaxNetconfBytes = 1 << 20

// IPAMConf is the "ipam" block of a network configuration:
//
//	"ipam": {"type": "spiderpool", "pools": ["v4", "v6"], "socket": "/path"}
//	"ipam": {"type": "spiderpool", "ipv4_pool": "v4", "ipv6_pool": "v6"}
//	"ipam": {"type": "spiderpool", "pools": ["v4"], "agent_wait": "5s", "spool_dir": "/path"}
type IPAMConf struct {
	Type     string
	Pools    []string // in request order: one pool per family at most
	Socket   string
	IPv4Pool string
	IPv6Pool string
	// AgentWait is how long ADD, DEL and CHECK wait for an agent that is
	// not there (stopped, restarting) or not ready before they give up;
	// "agent_wait", default DefaultAgentWait, at most MaxAgentWait.
	AgentWait time.Duration
	// SpoolDir is where a DEL that could not reach the agent within
	// AgentWait is spooled for the agent to apply; "spool_dir", default
	// cnispool.DefaultDir (the agent's ipam.cni_spool_dir).
	SpoolDir string
}

// Bounds of agent_wait. An agent restart takes ~150 ms; 5 s rides through
// it on a loaded node. The most is kept so that an ADD's whole deadline,
// MaxAgentWait + AllocateTimeout = 60 s, stays well inside what runtimes
// give a CNI ADD (kubelet's runtime request timeout is 2 min; Podman and
// Nomad set none of their own).
const (
	DefaultAgentWait = 5 * time.Second
	MaxAgentWait     = 30 * time.Second
)

// NetConf is what the plugin reads of the network configuration. Fields
// outside "ipam" belong to the main plugin and the runtime, so only the ones
// used here are decoded, and only "ipam" is decoded strictly.
type NetConf struct {
	CNIVersion string
	Name       string
	IPAM       IPAMConf
	// PrevResult is the main plugin's result (CHECK, DEL); nil if absent.
	PrevResult json.RawMessage
	// ValidAttachments is GC's cni.dev/valid-attachments, or the legacy
	// cni.dev/attachments when only that is present. HasValid says whether
	// either key was present with a list (null counts as absent).
	ValidAttachments []types.GCAttachment
	HasValid         bool
	// Skips are the detections the main plugin's configuration makes
	// impossible or pointless (see mainPluginSkips).
	Skips []api.DetectionSkip
	// KeepsDAD: the main plugin raises the interface with its IPv6 DAD as
	// it finds it (see mainPluginKeepsDAD).
	KeepsDAD bool
}

// mainPlugin is what the IPAM plugin reads of the main plugin's own
// configuration (the same object on stdin): enough to know whether the
// main plugin will itself be the gateway, or leaves nothing to probe.
// Its fields are decoded leniently - they are the main plugin's, which
// has parsed them before it ran IPAM - and a value of another type counts
// as absent.
type mainPlugin struct {
	Type             string
	IsGateway        bool // bridge: the bridge gets the gateway address
	IsDefaultGateway bool // bridge: implies isGateway
	EnableDAD        bool // bridge: keeps the container side's DAD on
	Mode             string
}

func decodeMainPlugin(top map[string]json.RawMessage) mainPlugin {
	var mp mainPlugin
	_ = json.Unmarshal(top["type"], &mp.Type)
	_ = json.Unmarshal(top["isGateway"], &mp.IsGateway)
	_ = json.Unmarshal(top["isDefaultGateway"], &mp.IsDefaultGateway)
	_ = json.Unmarshal(top["mode"], &mp.Mode)
	_ = json.Unmarshal(top["enabledad"], &mp.EnableDAD)
	return mp
}

// mainPluginKeepsDAD says whether the main plugin mp raises the interface
// with its IPv6 DAD as it finds it, so that the agent may leave an
// interface it raised for the probe up with its link-local address still
// in DAD (api.AllocateRequest.MainPluginKeepsDAD). Of the
// containernetworking/plugins main plugins only bridge touches DAD: it
// turns it off on the container side (unless enabledad) after IPAM answers
// and before it raises the interface, then waits for every tentative
// address to settle. An unknown main plugin is not assumed to keep it.
func mainPluginKeepsDAD(mp mainPlugin) bool {
	switch mp.Type {
	case "macvlan", "ipvlan", "host-device", "vlan":
		return true
	case "bridge":
		return mp.EnableDAD
	}
	return false
}

// mainPluginSkips says which detections cannot work for an interface the
// main plugin mp sets up, and why; each reason is what the operator reads
// in the allocation. The containernetworking/plugins main plugins, in the
// order their cmdAdd runs things:
//
//   - bridge with isGateway (or isDefaultGateway, which sets isGateway):
//     the plugin calls IPAM, then gives the bridge the gateway address
//     (calcGateways, then ensureAddr). Nobody holds the gateway address
//     while IPAM runs - the first workload of the network would always
//     fail gateway detection - and afterwards the gateway is this host.
//     Skip gateway detection; keep conflict detection: the veth is in
//     the bridge already, and other hosts or VMs on the bridge (or the
//     LAN behind an enslaved NIC) may use the address.
//   - ptp: IPAM runs before the veth pair exists, and the host side of the
//     pair gets the gateway address afterwards (setupHostVeth); the link
//     has no one else on it. There is no interface to probe on and nobody
//     to find: skip both.
//   - ipvlan in mode l3 or l3s: the kernel sets NOARP on the slave
//     (ipvlan_set_port_mode) and drops the broadcast and multicast it
//     sends, so neither ARP nor NDP exists on it - the workload reaches
//     its gateway through a device route, not a neighbour. A duplicate
//     among slaves of one master the kernel refuses itself (EADDRINUSE);
//     a duplicate elsewhere is a routing matter of the host, invisible
//     from the slave. Skip both.
//   - dummy: NOARP and no wire at all. Skip both.
//   - macvlan, ipvlan l2, host-device, vlan, bridge without isGateway, and
//     anything else: the interface is on a real layer-2 segment with the
//     gateway somewhere on it. Keep both.
func mainPluginSkips(mp mainPlugin) []api.DetectionSkip {
	skip := func(reason string, ds ...string) []api.DetectionSkip {
		var out []api.DetectionSkip
		for _, d := range ds {
			out = append(out, api.DetectionSkip{Detection: d, Reason: reason})
		}
		return out
	}
	const gw, conflict = api.DetectionGateway, api.DetectionConflict
	switch mp.Type {
	case "bridge":
		if mp.IsGateway || mp.IsDefaultGateway {
			return skip("the bridge plugin (isGateway) gives the bridge the gateway address after IPAM answers", gw)
		}
	case "ptp":
		return skip("the ptp plugin creates the veth after IPAM answers and gives its host side the gateway address", gw, conflict)
	case "ipvlan":
		if mp.Mode == "l3" || mp.Mode == "l3s" {
			return skip("ipvlan in "+mp.Mode+" mode has no ARP or neighbour discovery (NOARP)", gw, conflict)
		}
	case "dummy":
		return skip("a dummy interface has no link to probe (NOARP)", gw, conflict)
	}
	return nil
}

// confErr is a malformed network configuration: an *input.FieldError
// whose Field names where, as a JSON path ("ipam.pools[1]").
func confErr(field, format string, a ...any) error {
	return &input.FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ParseNetConf decodes and checks a network configuration.
func ParseNetConf(data []byte) (*NetConf, error) {
	var top struct {
		CNIVersion string                `json:"cniVersion"`
		Name       string                `json:"name"`
		IPAM       json.RawMessage       `json:"ipam"`
		PrevResult json.RawMessage       `json:"prevResult"`
		Valid      *[]types.GCAttachment `json:"cni.dev/valid-attachments"`
		Legacy     *[]types.GCAttachment `json:"cni.dev/attachments"`
	}
	// Keys outside "ipam" may belong to the main plugin, but the ones
	// read here follow the agent's one rule for input (no key twice, no
	// key in another case): the main plugin and this one must not read
	// two different networks out of one document.
	if err := input.Decode(data, &top, input.Options{AllowUnknown: true}); err != nil {
		var fe *input.FieldError
		if errors.As(err, &fe) {
			field := fe.Field
			if field == "" {
				field = "netconf"
			}
			return nil, confErr(field, "%s", fe.Msg)
		}
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, describeJSONError("", err)
	}
	mp := decodeMainPlugin(all)
	nc := &NetConf{CNIVersion: top.CNIVersion, Name: top.Name, Skips: mainPluginSkips(mp), KeepsDAD: mainPluginKeepsDAD(mp)}
	if len(top.PrevResult) > 0 && !bytes.Equal(bytes.TrimSpace(top.PrevResult), []byte("null")) {
		nc.PrevResult = top.PrevResult
	}
	switch {
	case top.Valid != nil:
		nc.ValidAttachments, nc.HasValid = *top.Valid, true
	case top.Legacy != nil:
		nc.ValidAttachments, nc.HasValid = *top.Legacy, true
	}
	for i, a := range nc.ValidAttachments {
		if a.ContainerID == "" || a.IfName == "" {
			return nil, confErr(fmt.Sprintf("cni.dev/valid-attachments[%d]", i), "needs both containerID and ifname")
		}
	}
	if len(top.IPAM) == 0 || bytes.Equal(bytes.TrimSpace(top.IPAM), []byte("null")) {
		return nil, confErr("ipam", `is missing: the network needs "ipam": {"type": "spiderpool", "pools": [...]}`)
	}
	ic, err := parseIPAM(top.IPAM)
	if err != nil {
		return nil, err
	}
	nc.IPAM = *ic
	return nc, nil
}

// parseIPAM decodes the ipam object key by key, so that an unknown key, a
// key spelt in another case (encoding/json would accept "Pools") and a key
// given twice are errors that name it.
func parseIPAM(raw json.RawMessage) (*IPAMConf, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, describeJSONError("ipam", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, confErr("ipam", "must be an object, not %s", jsonKind(tok))
	}
	ic := &IPAMConf{}
	seen := map[string]bool{}
	var pools *[]string
	var agentWait string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, describeJSONError("ipam", err)
		}
		key := tok.(string) // object keys are strings
		field := "ipam." + input.Cut(key)
		if seen[key] {
			return nil, confErr(field, "is given twice")
		}
		seen[key] = true
		var target any
		switch key {
		case "type":
			target = &ic.Type
		case "pools":
			pools = &[]string{}
			target = pools
		case "ipv4_pool":
			target = &ic.IPv4Pool
		case "ipv6_pool":
			target = &ic.IPv6Pool
		case "socket":
			target = &ic.Socket
		case "agent_wait":
			target = &agentWait
		case "spool_dir":
			target = &ic.SpoolDir
		default:
			return nil, confErr(field, "is not a field of the spiderpool IPAM block (known: type, pools, ipv4_pool, ipv6_pool, socket, agent_wait, spool_dir)")
		}
		if err := dec.Decode(target); err != nil {
			return nil, describeJSONError(field, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, describeJSONError("ipam", err)
	}
	if ic.Type != "spiderpool" {
		return nil, confErr("ipam.type", "is %s; this plugin is \"spiderpool\"", input.Quote(ic.Type))
	}
	var fields []string // the field each pool came from, for errors
	switch {
	case pools != nil && (seen["ipv4_pool"] || seen["ipv6_pool"]):
		return nil, confErr("ipam.pools", `give either "pools" or "ipv4_pool"/"ipv6_pool", not both`)
	case pools != nil:
		if len(*pools) == 0 {
			return nil, confErr("ipam.pools", "is empty: name one pool, or one IPv4 and one IPv6 pool")
		}
		ic.Pools = *pools
		for i := range ic.Pools {
			fields = append(fields, fmt.Sprintf("ipam.pools[%d]", i))
		}
	default:
		if seen["ipv4_pool"] {
			ic.Pools, fields = append(ic.Pools, ic.IPv4Pool), append(fields, "ipam.ipv4_pool")
		}
		if seen["ipv6_pool"] {
			ic.Pools, fields = append(ic.Pools, ic.IPv6Pool), append(fields, "ipam.ipv6_pool")
		}
		if len(ic.Pools) == 0 {
			return nil, confErr("ipam.pools", `is missing: name the pools ("pools": ["v4", "v6"], or "ipv4_pool"/"ipv6_pool")`)
		}
	}
	if len(ic.Pools) > api.MaxPools {
		return nil, confErr("ipam.pools", "names %d pools; at most %d (one per family)", len(ic.Pools), api.MaxPools)
	}
	for i, p := range ic.Pools {
		field := fields[i]
		var fe *api.FieldError
		if err := api.ValidatePoolName(field, p); errors.As(err, &fe) {
			return nil, confErr(fe.Field, "%s", fe.Msg)
		}
		for j := 0; j < i; j++ {
			if ic.Pools[j] == p {
				return nil, confErr(field, "%q is named twice", p)
			}
		}
	}
	if seen["socket"] {
		s := ic.Socket
		if s == "" || !filepath.IsAbs(s) || filepath.Clean(s) != s || strings.ContainsRune(s, 0) || len(s) > 107 {
			return nil, confErr("ipam.socket", "%s is not a clean absolute path of at most 107 bytes (a unix socket path), such as %s", input.Quote(s), api.DefaultSocketPath)
		}
	} else {
		ic.Socket = api.DefaultSocketPath
	}
	ic.AgentWait = DefaultAgentWait
	if seen["agent_wait"] {
		d, err := time.ParseDuration(agentWait)
		if err != nil || d < 0 || d > MaxAgentWait {
			return nil, confErr("ipam.agent_wait", "%q is not a duration from \"0s\" to %v (such as \"5s\")", agentWait, MaxAgentWait)
		}
		ic.AgentWait = d
	}
	if seen["spool_dir"] {
		s := ic.SpoolDir
		if s == "" || !filepath.IsAbs(s) || filepath.Clean(s) != s || strings.ContainsRune(s, 0) || len(s) > 1024 {
			return nil, confErr("ipam.spool_dir", "%q is not a clean absolute path, such as %s", s, cnispool.DefaultDir)
		}
	} else {
		ic.SpoolDir = cnispool.DefaultDir
	}
	return ic, nil
}

// describeJSONError turns encoding/json's errors into one that names the
// field and says what was expected.
func describeJSONError(field string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	isType := errors.As(err, &te)
	if isType && te.Field != "" {
		if field != "" {
			field += "."
		}
		field += te.Field
	}
	if field == "" {
		field = "netconf"
	}
	switch {
	case isType:
		return confErr(field, "is a JSON %s; want %s", te.Value, goTypeName(te.Type.String()))
	case errors.As(err, &se):
		return confErr(field, "is not valid JSON (at byte %d): %v", se.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return confErr(field, "ends early: the JSON is cut off")
	}
	return confErr(field, "%v", err)
}

func goTypeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "[]types.GCAttachment":
		return `a list of {"containerID", "ifname"} objects`
	}
	return t
}

func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "a list"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// Workload derives the workload name from CNI_ARGS: K8S_POD_NAMESPACE and
// K8S_POD_NAME ("namespace/name"), else SPIDERPOOL_WORKLOAD (what a runtime
// without Kubernetes, such as Nomad's cni args, can pass), else "" (the
// agent then uses the container id). Other keys are ignored: runtimes pass
// many (K8S_POD_UID, IgnoreUnknown, ...).
func Workload(cniArgs string) (string, error) {
	kv := map[string]string{}
	if cniArgs != "" {
		for i, pair := range strings.Split(cniArgs, ";") {
			if pair == "" {
				continue
			}
			k, v, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return "", confErr("CNI_ARGS", "item %d (%s) is not KEY=VALUE", i+1, input.Quote(pair))
			}
			kv[k] = v
		}
	}
	name := ""
	switch ns, pod := kv["K8S_POD_NAMESPACE"], kv["K8S_POD_NAME"]; {
	case pod != "" && ns != "":
		name = ns + "/" + pod
	case pod != "":
		name = pod
	default:
		name = kv["SPIDERPOOL_WORKLOAD"]
	}
	name = fitWorkload(name)
	var fe *api.FieldError
	if err := api.ValidateWorkload("CNI_ARGS workload", name); errors.As(err, &fe) {
		return "", confErr("CNI_ARGS", "the workload name %s", fe.Msg)
	}
	return name, nil
}

// fitWorkload shortens a name longer than the agent takes: Kubernetes
// allows a 63-byte namespace and a 253-byte pod name, so "namespace/name"
// can exceed api.MaxWorkload. The same long name always gives the same
// short one (a prefix and a hash of the whole), so the workload keeps its
// history and its sticky addresses.
func fitWorkload(name string) string {
	if len(name) <= api.MaxWorkload {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	suffix := fmt.Sprintf("~%016x", h.Sum64())
	prefix := name[:api.MaxWorkload-len(suffix)]
	for !utf8.ValidString(prefix) { // do not cut a character in two
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + suffix
}
