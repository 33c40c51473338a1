package sdktest_test

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest/lan"
)

// newPlugin stands for the plugin under test (New(sdktest.Logger(t)) in a
// plugin's own package).
func newPlugin(testing.TB) sdk.Plugin { return nil }

// A table of bad configs, each refused at the value it names: line and
// column within the body.
func ExampleBadConfig() {
	var t *testing.T // the test's own
	sdktest.Run(t, newPlugin(t), sdktest.Options{
		GoodConfig: `deny = ["10.1.0.0/16"]`,
		BadConfigs: []sdktest.BadConfig{
			{Body: `max_prefix = 33`, At: "1:14"},
			{Body: `deny = ["10.0.0.0/8", "10.1.0.1/16"]`, At: "1:23", Contains: "host bits"},
		},
	})
}

// A verdict table: address to verdict, checked through the plugin's gRPC
// server as the agent would ask.
func ExampleVerdicts() {
	var t *testing.T // the test's own
	sdktest.Verdicts(t, newPlugin(t), sdktest.VerdictTable{
		Config: `deny = ["10.1.0.0/16"]`,
		Want: map[string]sdk.Verdict{
			"10.1.2.3/24": sdk.VerdictBlock,
			"10.2.0.1/24": sdk.VerdictPass,
		},
	})
}

// A verdict table on a LAN of network namespaces, where a host's kernel
// answers for 10.0.0.2 (root and iproute2 needed).
func ExampleVerdicts_lan() {
	var t *testing.T // the test's own
	l := lan.New(t, "10.0.0.10/24")
	l.AddHost(t, "10.0.0.2/24")
	sdktest.Verdicts(t, newPlugin(t), sdktest.VerdictTable{
		Request: sdk.CheckRequest{Interface: l.Interface, Netns: l.Netns},
		Want: map[string]sdk.Verdict{
			"10.0.0.2/24": sdk.VerdictBlock,
			"10.0.0.3/24": sdk.VerdictPass,
		},
	})
}
