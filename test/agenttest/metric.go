package agenttest

import (
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric runs `metric --port PORT` through the agent's CLI, as an operator
// reads the exposition, and returns it parsed and as text (for promlint).
// A non-zero exit or text that does not parse fails t.
func (a *Agent) Metric(t testing.TB, port int) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	out, errOut, code := a.CLI("metric", "--port", strconv.Itoa(port))
	if code != 0 {
		t.Fatalf("metric: exit %d: %s", code, errOut)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("metric output does not parse: %v\n%s", err, out)
	}
	return families, out
}
