package agenttest

import "strings"

// DetectorsOff is agent config that turns the built-in detectors off, so
// that the one plugin a test or a benchmark row is about answers alone.
const DetectorsOff = `
plugin "ip-conflict" { enabled = false }
plugin "gateway-detector" { enabled = false }
`

// QuickRestarts is agent config for a supervisor that restarts a plugin
// within a second and gives up after 3 restarts, so that restart tests
// stay short and their timing predictable; more are further supervisor
// settings, one a line.
func QuickRestarts(more ...string) string {
	var b strings.Builder
	b.WriteString(`
supervisor {
  restart_initial_backoff = "300ms"
  restart_max_backoff     = "1s"
  restart_budget          = 3
  health_interval         = "200ms"
`)
	for _, m := range more {
		b.WriteString("  " + m + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}
