package config

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Source is where the problem is: a file position ("file"), a conf.yml
	// line ("conf.yml"), a variable ("env"), a flag ("flag"), a LoadOptions
	// field ("option") or several settings at once ("config").
	Source Source
	// Message is the whole message, beginning with the place:
	// "/etc/x/a.hcl:3:15: Invalid value for \"health_port\": ...",
	// "SPIDERPOOL_HEALTH_PORT=\"abc\": not a port number (1-65535)".
	Message string
}

// Error is a configuration that cannot be used. It lists every problem
// found, not just the first.
type Error struct {
	Problems []Problem
	// Diagnostics are the problems found in HCL files, as HCL reported them
	// (also in Problems).
	Diagnostics hcl.Diagnostics
}

// Error renders one problem per line.
func (e *Error) Error() string {
	switch len(e.Problems) {
	case 0:
		return "invalid configuration"
	case 1:
		return "invalid configuration: " + e.Problems[0].Message
	}
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n")
		b.WriteString(p.Message)
	}
	return b.String()
}
