package sdk

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is go-plugin's wire protocol version: it changes when the
// gRPC services change incompatibly. go-plugin negotiates it at start.
const ProtocolVersion = 1

// APIVersion is the semantic version of the plugin API, "MAJOR.MINOR". A
// plugin reports the one it was built with in Info.APIVersion. The agent
// accepts a plugin with the same major and a minor no newer than its own.
//
// 1.1 added ValidateConfig; 1.2 added CheckResult.BlockKind (a 1.0 or 1.1
// plugin's blocks arrive without one and are taken as BlockFail).
const APIVersion = "1.2"

// PluginName is the name under which every plugin serves its gRPC services in
// go-plugin's plugin set.
const PluginName = "spiderpool"

// Handshake is shared by the agent and every plugin. The cookie only keeps a
// plugin binary from being run by hand by mistake; it is not security.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SPIDERPOOL_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "d1c6b3d4-2f5e-4c77-9a0c-spiderpool-agent",
}

// ParseAPIVersion splits "MAJOR.MINOR".
func ParseAPIVersion(v string) (major, minor int, err error) {
	a, b, ok := strings.Cut(v, ".")
	if !ok {
		return 0, 0, fmt.Errorf("api version %q is not MAJOR.MINOR", v)
	}
	if major, err = strconv.Atoi(a); err != nil || major < 0 {
		return 0, 0, fmt.Errorf("api version %q is not MAJOR.MINOR", v)
	}
	if minor, err = strconv.Atoi(b); err != nil || minor < 0 {
		return 0, 0, fmt.Errorf("api version %q is not MAJOR.MINOR", v)
	}
	return major, minor, nil
}

// CheckAPIVersion compares a plugin's API version with the agent's and, when
// they do not fit, says which side to upgrade.
func CheckAPIVersion(agent, plugin string) error {
	am, an, err := ParseAPIVersion(agent)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	pm, pn, err := ParseAPIVersion(plugin)
	if err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	switch {
	case pm < am:
		return fmt.Errorf("plugin API version %s is older than the agent's %s: upgrade the plugin (rebuild it against a current sdk)", plugin, agent)
	case pm > am || pn > an:
		return fmt.Errorf("plugin API version %s is newer than the agent's %s: upgrade the agent", plugin, agent)
	}
	return nil
}
