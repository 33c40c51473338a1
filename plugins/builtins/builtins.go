// Package builtins is the three built-in plugins as one sdk.Set: the
// components that the shipped executable serves as
// "spiderpool-plugins serve NAME". Both executables that carry the
// built-ins use it: spiderpool-agent itself (the module's root package,
// which links the agent and this set into one multi-call executable) and
// plugins/cmd/spiderpool-plugins (the set on its own).
package builtins

import (
	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// SetBinary is the name the agent runs the set by: its default resolution
// of a built-in is PLUGIN_DIR/spiderpool-plugins serving the plugin's name.
// The multi-call executable serves the set when it is run by this name.
const SetBinary = "spiderpool-plugins"

// Set returns the built-ins, keyed by the plugin block names the agent's
// default resolution looks for.
func Set() sdk.Set {
	return sdk.Set{
		"sysctl-tuner":     func(log sdk.Logger) sdk.Plugin { return sysctltuner.New(log) },
		"ip-conflict":      func(log sdk.Logger) sdk.Plugin { return ipconflict.New(log) },
		"gateway-detector": func(log sdk.Logger) sdk.Plugin { return gatewaydetector.New(log) },
	}
}
