package command

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

// `check` shows what each block means for an allocation.
func TestCheckShowsBlockKind(t *testing.T) {
	var out bytes.Buffer
	writeCheck(Env{Stdout: &out}, state.CheckResult{Verdict: state.VerdictBlock, Addresses: []state.AddressResult{{
		Address: "10.0.0.7/24", Verdict: state.VerdictBlock,
		Detectors: []state.DetectorResult{
			{Name: "cmdb", Verdict: state.VerdictBlock, BlockKind: state.BlockPolicy, Reason: "10.0.0.7 is reserved"},
			{Name: "arp", Verdict: state.VerdictPass, Reason: "free"},
		},
	}}})
	if got := out.String(); !strings.Contains(got, "cmdb             block 10.0.0.7 is reserved [policy] (") || strings.Contains(got, "free [") {
		t.Errorf("check output:\n%s", got)
	}
}
