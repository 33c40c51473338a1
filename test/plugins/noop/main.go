// Command noop is a detector plugin that does nothing: every Check passes at
// once, without touching the network. test/bench runs a check through it to
// measure the plugin hop (agent -> go-plugin gRPC -> plugin -> back) apart
// from any detection work.
package main

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Detector passes every check at once.
type Detector struct{ sdk.Base }

var _ sdk.Detector = Detector{}

// Info implements sdk.Plugin.
func (Detector) Info() sdk.Info {
	return sdk.Info{Name: "noop", Kind: sdk.KindDetector, Version: "0.0.1", APIVersion: sdk.APIVersion,
		Description: "passes every check at once (benchmark of the plugin hop)"}
}

// Configure implements sdk.Plugin: there is nothing to configure.
func (Detector) Configure(context.Context, sdk.ConfigureRequest) error { return nil }

// Check implements sdk.Detector.
func (Detector) Check(context.Context, sdk.CheckRequest) (sdk.CheckResult, error) {
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: "noop"}, nil
}

func main() {
	sdk.Serve(func(hclog.Logger) sdk.Plugin { return Detector{} })
}
