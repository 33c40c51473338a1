package config

import (
	"os"
	"path/filepath"
	"strings"
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

// The built-ins ship as one set binary: a built-in with no binary of its
// own runs as a component of spiderpool-plugins, while a separate binary in
// the same directory (an old layout) or an earlier one still wins.
func TestBuiltinFallsBackToPluginSet(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	for _, f := range []string{
		filepath.Join(first, "spiderpool-plugin-ip-conflict"),
		filepath.Join(first, "spiderpool-plugins"),
		filepath.Join(second, "spiderpool-plugin-gateway-detector"), // the first dir's set wins
		filepath.Join(second, "spiderpool-plugin-rackguard"),
		filepath.Join(second, "spiderpool-plugins"),
	} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := writeDir(t, map[string]string{"agent.hcl": `plugin_dir = "` + first + `:` + second + `"
plugin "rackguard" {}
plugin "not-a-builtin" {}
plugin "ipc-second" { component = "ip-conflict" }
plugin "vendor" {
  path      = "/opt/vendor/plugins"
  component = "fence"
}
`})
	c := mustLoad(t, LoadOptions{ConfigDir: dir, Lookup: env(nil)})
	set := filepath.Join(first, "spiderpool-plugins")
	tests := []struct {
		name, path, component string
		found                 bool
	}{
		{"ip-conflict", filepath.Join(first, "spiderpool-plugin-ip-conflict"), "", true},
		{"gateway-detector", set, "gateway-detector", true},
		{"sysctl-tuner", set, "sysctl-tuner", true},
		{"rackguard", filepath.Join(second, "spiderpool-plugin-rackguard"), "", true},
		// Only a built-in is a component of the built-ins' set by default.
		{"not-a-builtin", filepath.Join(first, "spiderpool-plugin-not-a-builtin"), "", false},
		{"ipc-second", set, "ip-conflict", true},
		{"vendor", "/opt/vendor/plugins", "fence", true},
	}
	for _, tt := range tests {
		path, comp, found := c.Plugin(tt.name).Binary(c.PluginDirs())
		if path != tt.path || comp != tt.component || found != tt.found {
			t.Errorf("Binary(%s) = %q, %q, %v; want %q, %q, %v", tt.name, path, comp, found, tt.path, tt.component, tt.found)
		}
	}
}

func TestComponentMustBeAName(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.hcl": "plugin \"x\" {\n  component = \"Ip_Conflict\"\n}\n"})
	_, err := Load(LoadOptions{ConfigDir: dir, Lookup: env(nil)})
	if err == nil || !strings.Contains(err.Error(), `a.hcl:2:15: Invalid value for "plugin.x.component"`) {
		t.Fatalf("Load = %v; want a positioned error on plugin.x.component", err)
	}
}
