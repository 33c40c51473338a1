package main

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/builtins"
)

// The name the agent runs the set by (core) and the name this executable
// answers to (plugins) are two constants, one on each side of the
// dependency rule; this package is where they meet.
func TestSetNamesAgree(t *testing.T) {
	if builtins.SetBinary != config.PluginSetBinary {
		t.Errorf("plugins/builtins.SetBinary %q != core/config.PluginSetBinary %q: the agent would run a name this executable does not serve", builtins.SetBinary, config.PluginSetBinary)
	}
}

func TestServesPlugins(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{nil, false},
		{[]string{"spiderpool-agent"}, false},
		{[]string{"/usr/bin/spiderpool-agent", "daemon"}, false},
		{[]string{"/usr/bin/spiderpool-agent", "plugin", "list"}, false},
		{[]string{"/usr/lib/spiderpool/plugins/spiderpool-plugins", "serve", "ip-conflict"}, true},
		{[]string{"spiderpool-plugins", "list"}, true},
		{[]string{"spiderpool-plugins"}, true},
		{[]string{"/usr/bin/spiderpool-agent", "serve", "sysctl-tuner"}, true},
		// Only the base name counts: a directory of that name is not the set.
		{[]string{"/opt/spiderpool-plugins/spiderpool-agent", "status"}, false},
	} {
		if got := servesPlugins(c.argv); got != c.want {
			t.Errorf("servesPlugins(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}
