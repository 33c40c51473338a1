// Command spiderpool-plugin-sysctl-tuner serves the sysctl-tuner plugin;
// spiderpool-agent starts it. See plugins/sysctl-tuner/README.md.
package main

import (
	"github.com/hashicorp/go-hclog"

	sysctltuner "github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func main() {
	sdk.Serve(func(log hclog.Logger) sdk.Plugin { return sysctltuner.New(log) })
}
