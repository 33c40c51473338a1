// Package examples gives the agent's `plugin new` the source it writes
// plugins from: its skeletons are mtuguard/mtuguard.go with the places an
// author fills in emptied again, so that the example stays exactly the
// generated file filled in.
package examples

import _ "embed" // for MTUGuard

// MTUGuard is the text of mtuguard/mtuguard.go.
//
//go:embed mtuguard/mtuguard.go
var MTUGuard string
