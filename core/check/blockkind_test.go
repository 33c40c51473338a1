package check

import (
	"net/netip"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// A block's kind reaches the check's result as the core's word; a block
// without one (a plugin older than API 1.2) is fail, as such a block
// always was; no other verdict carries a kind, whatever the plugin sent.
func TestBlockKindMapping(t *testing.T) {
	tests := []struct {
		verdict sdk.Verdict
		kind    sdk.BlockKind
		want    api.BlockKind
	}{
		{sdk.VerdictBlock, sdk.BlockInUse, api.BlockInUse},
		{sdk.VerdictBlock, sdk.BlockUnreachable, api.BlockUnreachable},
		{sdk.VerdictBlock, sdk.BlockPolicy, api.BlockPolicy},
		{sdk.VerdictBlock, sdk.BlockFail, api.BlockFail},
		{sdk.VerdictBlock, sdk.BlockUnspecified, api.BlockFail},
		{sdk.VerdictPass, sdk.BlockPolicy, ""},
		{sdk.VerdictSkip, sdk.BlockInUse, ""},
	}
	for _, tt := range tests {
		d := &fakeDetectors{
			list: []supervisor.Detector{{Name: "cmdb", Available: true}},
			answers: answerTable{
				"cmdb": func(sdk.CheckRequest) (sdk.CheckResult, error) {
					return sdk.CheckResult{Verdict: tt.verdict, BlockKind: tt.kind, Reason: "r"}, nil
				},
			},
		}
		res := Run(t.Context(), d, &nopMetrics{}, api.Check{Interface: "eth0", Addresses: []api.CheckAddress{{Address: netip.MustParsePrefix("10.0.0.7/24")}}})
		if got := res.Addresses[0].Detectors[0].BlockKind; got != tt.want {
			t.Errorf("%s with kind %q: block kind %q, want %q", tt.verdict, tt.kind, got, tt.want)
		}
	}
}
