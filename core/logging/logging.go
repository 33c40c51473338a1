// Package logging builds the agent's hclog logger from the configured level
// and format, mapping Spiderpool's level names onto hclog's.
package logging

import (
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Level maps a Spiderpool log level onto hclog's. "fatal" and "panic" have
// no hclog counterpart: they log errors only, as in Spiderpool. An unknown
// name is Info; the config loader has already rejected it.
func Level(name string) hclog.Level {
	switch strings.ToLower(name) {
	case "debug":
		return hclog.Debug
	case "warn", "warning":
		return hclog.Warn
	case "error", "fatal", "panic":
		return hclog.Error
	default:
		return hclog.Info
	}
}

// New returns the agent's root logger.
func New(out io.Writer, level, format string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "spiderpool-agent",
		Level:      Level(level),
		Output:     out,
		JSONFormat: format == "json",
	})
}
