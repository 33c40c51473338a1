// Command spiderpool-plugin-ip-conflict serves the ip-conflict detector.
package main

import (
	"github.com/hashicorp/go-hclog"

	ipconflict "github.com/spiderpool-agent/spiderpool-agent/plugins/ip-conflict"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func main() {
	sdk.Serve(func(log hclog.Logger) sdk.Plugin { return ipconflict.New(log) })
}
