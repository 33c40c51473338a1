// Command spiderpool-plugins is the three built-in plugins in one
// executable (an sdk.Set), on its own. The package ships the same set
// inside spiderpool-agent (the multi-call executable at the module's root,
// reached through the symlink PLUGIN_DIR/spiderpool-plugins); this build is
// for an operator who wants the built-ins apart from the agent, and for the
// memory table of make bench that compares the layouts.
// "spiderpool-plugins list" prints the components.
package main

import (
	"github.com/spiderpool-agent/spiderpool-agent/plugins/builtins"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func main() { sdk.ServeSet(builtins.Set()) }
