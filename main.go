// Command spiderpool-agent is the node agent (see `spiderpool-agent -h`)
// and, in the same executable, its three built-in plugins.
//
// One multi-call executable instead of an agent and a plugin set: the agent
// and the plugins link the same Go runtime, gRPC, protobuf and go-plugin,
// so two executables carried them twice on disk and in the page cache
// (test/bench/README.md, "Memory and package size"). The built-ins still
// run as processes of their own, one per plugin, with their own handshake,
// health, restarts and checksum: the agent runs PLUGIN_DIR/spiderpool-plugins,
// which the package installs as a symlink to this executable, as
// "spiderpool-plugins serve NAME".
//
// This is the only package that links both core and plugins: it is the
// wiring, outside both trees, so that the design's rule (core never imports
// a plugin, a plugin never imports core) still holds for everything else
// (test/layout checks it).
package main

import (
	"os"
	"path/filepath"

	"github.com/spiderpool-agent/spiderpool-agent/core/command"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/builtins"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func main() {
	if servesPlugins(os.Args) {
		sdk.ServeSet(builtins.Set())
		return
	}
	os.Exit(command.Run(os.Args[1:], command.OSEnv()))
}

// servesPlugins reports whether argv asks for the built-ins' set rather
// than the agent's CLI: run by the set's name (the symlink, as the agent
// runs it, or for "spiderpool-plugins list"), or as
// "spiderpool-agent serve NAME" (a plugin block whose path is this
// executable itself). "serve" is no command of the agent's CLI.
func servesPlugins(argv []string) bool {
	if len(argv) == 0 {
		return false
	}
	return filepath.Base(argv[0]) == builtins.SetBinary || len(argv) > 1 && argv[1] == sdk.SetServeCommand
}
