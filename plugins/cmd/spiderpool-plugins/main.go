// Command spiderpool-plugins is the three built-in plugins in one
// executable (an sdk.Set): spiderpool-agent runs it once per component, as
// "spiderpool-plugins serve ip-conflict" and so on, each still its own
// process. One binary instead of three saves two copies of the Go runtime,
// gRPC and go-plugin on disk and in the page cache (see test/bench/README.md).
// "spiderpool-plugins list" prints the components.
package main

import (
	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// builtins are the components; the names are the plugin block names the
// agent's default resolution looks for.
var builtins = sdk.Set{
	"sysctl-tuner":     func(log sdk.Logger) sdk.Plugin { return sysctltuner.New(log) },
	"ip-conflict":      func(log sdk.Logger) sdk.Plugin { return ipconflict.New(log) },
	"gateway-detector": func(log sdk.Logger) sdk.Plugin { return gatewaydetector.New(log) },
}

func main() { sdk.ServeSet(builtins) }
