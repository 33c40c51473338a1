package sdktest

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

func TestFindSampleMatchesTheExactLabelSet(t *testing.T) {
	ss := []sdk.Sample{
		{Name: "x_total", Type: sdk.Counter, Value: 1, Labels: map[string]string{"family": "ipv4", "verdict": "pass"}},
		{Name: "x_total", Type: sdk.Counter, Value: 2, Labels: map[string]string{"family": "ipv4"}},
		{Name: "y_total", Type: sdk.Counter, Value: 3},
	}
	if got := FindSample(t, ss, "x_total", "family", "ipv4").Value; got != 2 {
		t.Errorf("x_total{family=ipv4} = %v, want 2 (the sample with one more label is another series)", got)
	}
	if got := FindSample(t, ss, "x_total", "verdict", "pass", "family", "ipv4").Value; got != 1 {
		t.Errorf("x_total{family=ipv4,verdict=pass} = %v, want 1", got)
	}
	if got := FindSample(t, ss, "y_total").Value; got != 3 {
		t.Errorf("y_total = %v, want 3", got)
	}
}
