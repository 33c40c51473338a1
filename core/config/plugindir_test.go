package config

import (
	"os"
	"path/filepath"
	"testing"
)

// plugin_dir is a list: a vendor's folder beside the built-ins' loses none.
func TestPluginDirIsASearchList(t *testing.T) {
	builtins, vendor := t.TempDir(), t.TempDir()
	for _, f := range []string{
		filepath.Join(builtins, "spiderpool-plugin-ip-conflict"),
		filepath.Join(vendor, "spiderpool-plugin-rackguard"),
		filepath.Join(vendor, "spiderpool-plugin-ip-conflict"), // shadowed by the first dir
	} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := writeDir(t, map[string]string{"agent.hcl": `plugin_dir = "` + builtins + `:` + vendor + `"
plugin "rackguard" {}
`})
	c := mustLoad(t, LoadOptions{ConfigDir: dir, Lookup: env(nil)})
	if got := c.PluginDirs(); len(got) != 2 || got[0] != builtins || got[1] != vendor {
		t.Fatalf("PluginDirs = %v", got)
	}
	tests := []struct {
		name, want string
		found      bool
	}{
		{"ip-conflict", filepath.Join(builtins, "spiderpool-plugin-ip-conflict"), true},
		{"rackguard", filepath.Join(vendor, "spiderpool-plugin-rackguard"), true},
		{"gateway-detector", filepath.Join(builtins, "spiderpool-plugin-gateway-detector"), false},
	}
	for _, tt := range tests {
		got, found := c.Plugin(tt.name).BinaryPath(c.PluginDirs())
		if got != tt.want || found != tt.found {
			t.Errorf("BinaryPath(%s) = %q, %v; want %q, %v", tt.name, got, found, tt.want, tt.found)
		}
	}
}
