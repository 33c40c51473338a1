// Package version says which build of the agent this is. Version and Commit
// are set at link time by the Makefile (-ldflags -X).
package version

import (
	"fmt"
	"runtime"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

var (
	// Version is the release, e.g. "0.1.0"; "dev" for an untagged build.
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
)

// String is the one-line description `version` prints.
func String() string {
	return fmt.Sprintf("spiderpool-agent %s (commit %s, %s, plugin API %s, wire protocol %d)",
		Version, Commit, runtime.Version(), sdk.APIVersion, sdk.ProtocolVersion)
}
