package sdktest

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// FindSample returns the sample among ss named name whose labels are exactly
// the pairs kv (name, value, ...), and fails the test when there is none: a
// plugin's test reads one series of its Metrics without depending on their
// order.
func FindSample(t testing.TB, ss []sdk.Sample, name string, kv ...string) sdk.Sample {
	t.Helper()
next:
	for _, s := range ss {
		if s.Name != name || len(s.Labels) != len(kv)/2 {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.Labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return s
	}
	t.Fatalf("no sample %s%v in %+v", name, kv, ss)
	return sdk.Sample{}
}
