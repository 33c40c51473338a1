// Command spiderpool-plugin-mtu-guard is the mtu-guard plugin of
// spiderpool-agent. Install it as PLUGIN_DIR/spiderpool-plugin-mtu-guard and
// enable it with plugin "mtu-guard" { } in the agent's config.
package main

import (
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/examples/mtuguard"
)

func main() {
	sdk.Serve(func(log sdk.Logger) sdk.Plugin { return mtuguard.New(log) })
}
