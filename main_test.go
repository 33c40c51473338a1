package main

import "testing"

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
