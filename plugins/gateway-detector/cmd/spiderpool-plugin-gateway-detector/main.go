// Command spiderpool-plugin-gateway-detector serves the gateway-detector
// detector.
package main

import (
	"github.com/hashicorp/go-hclog"

	gatewaydetector "github.com/spiderpool-agent/spiderpool-agent/plugins/gateway-detector"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func main() {
	sdk.Serve(func(log hclog.Logger) sdk.Plugin { return gatewaydetector.New(log) })
}
