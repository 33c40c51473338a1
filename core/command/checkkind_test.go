package command

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// `check` shows what each block means for an allocation.
func TestCheckShowsBlockKind(t *testing.T) {
	var out bytes.Buffer
	writeCheck(Env{Stdout: &out}, api.CheckResult{Verdict: api.VerdictBlock, Addresses: []api.AddressResult{{
		Address: "10.0.0.7/24", Verdict: api.VerdictBlock,
		Detectors: []api.DetectorResult{
			{Name: "cmdb", Verdict: api.VerdictBlock, BlockKind: api.BlockPolicy, Reason: "10.0.0.7 is reserved"},
			{Name: "arp", Verdict: api.VerdictPass, Reason: "free"},
		},
	}}})
	if got := out.String(); !strings.Contains(got, "cmdb             block 10.0.0.7 is reserved [policy] (") || strings.Contains(got, "free [") {
		t.Errorf("check output:\n%s", got)
	}
}
