// Command spiderpool-plugin-denylist serves the denylist example detector.
package main

import (
	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/examples/denylist"
)

func main() {
	sdk.Serve(func(log hclog.Logger) sdk.Plugin { return denylist.New(log) })
}
