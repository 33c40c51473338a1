package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
)

// TestDefaultFileListsEveryVariable: /etc/default/spiderpool-agent names
// every SPIDERPOOL_* variable the agent reads, commented out, with the
// built-in default, and sets none.
func TestDefaultFileListsEveryVariable(t *testing.T) {
	path := repoFile(t, "packaging/spiderpool-agent.default")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	commented := regexp.MustCompile(`^#(SPIDERPOOL_[A-Z0-9_]+)=(.*)$`)
	listed := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := commented.FindStringSubmatch(line); m != nil {
			if _, dup := listed[m[1]]; dup {
				t.Errorf("%s:%d: %s listed twice", path, n, m[1])
			}
			listed[m[1]] = m[2]
			continue
		}
		if trimmed := strings.TrimSpace(line); trimmed != "" && !strings.HasPrefix(trimmed, "#") {
			t.Errorf("%s:%d: %q is set; the packaged file must only list variables, commented out", path, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.EnvVars() {
		got, ok := listed[v.Name]
		if !ok {
			t.Errorf("%s does not list %s (default %q)", path, v.Name, v.Default)
			continue
		}
		if got != v.Default {
			t.Errorf("%s shows %s=%s, but the default is %q", path, v.Name, got, v.Default)
		}
		delete(listed, v.Name)
	}
	for name := range listed {
		t.Errorf("%s lists %s, which the agent does not read", path, name)
	}
}

// TestPackagedConfig: the packaged config.hcl loads, matches the package
// layout, and sets nothing that a Spiderpool conf.yml beside it could set
// (HCL files win over conf.yml, so such a setting would silently override
// the operator's conf.yml).
func TestPackagedConfig(t *testing.T) {
	data := readRepoFile(t, "packaging/config.hcl")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.hcl"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Every conf.yml key, each set to something other than its default.
	confYML := "enableIPv6: false\nenableIPConflictDetection: false\nenableGatewayDetection: false\n" +
		"tuneSysctlConfig: false\nipamUnixSocketPath: /run/other/spiderpool.sock\n"
	if err := os.WriteFile(filepath.Join(dir, "conf.yml"), []byte(confYML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{ConfigDir: dir})
	if err != nil {
		t.Fatalf("packaged config.hcl with a conf.yml: %v", err)
	}
	if cfg.PluginDir != "/usr/lib/spiderpool/plugins" {
		t.Errorf("plugin_dir = %q, want the package's /usr/lib/spiderpool/plugins", cfg.PluginDir)
	}
	for _, s := range cfg.Settings() {
		// gops_port = 0: gops is off in the package (no conf.yml key sets it).
		if s.Source.Kind == config.KindFile && s.Key != "plugin_dir" && s.Key != "gops_port" {
			t.Errorf("config.hcl sets %s = %s (%s); keep the packaged file to plugin_dir and gops_port", s.Key, s.Value, s.Source.Where)
		}
	}
	if cfg.SocketPath != "/run/other/spiderpool.sock" || cfg.EnableIPv6 {
		t.Errorf("conf.yml lost to config.hcl: socket_path=%q enable_ipv6=%v", cfg.SocketPath, cfg.EnableIPv6)
	}
	for _, name := range config.BuiltinPlugins {
		if p := cfg.Plugin(name); p == nil || p.Enabled {
			t.Errorf("plugin %s: conf.yml disabled it, got %+v", name, p)
		}
	}

	// Alone it is the default configuration.
	cfg, err = config.Load(config.LoadOptions{ConfigDir: repoFile(t, "packaging/config.hcl")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SocketPath != api.DefaultSocketPath || len(cfg.Plugins) != 3 {
		t.Errorf("socket_path %q, %d plugins; want the defaults", cfg.SocketPath, len(cfg.Plugins))
	}
	// The gops agent lets any local user drive the daemon; the
	// package turns it off.
	if cfg.GopsPort != 0 {
		t.Errorf("gops_port = %d in the packaged config, want 0 (off)", cfg.GopsPort)
	}
	for _, p := range cfg.Plugins {
		if !p.Enabled {
			t.Errorf("plugin %s disabled by the packaged config", p.Name)
		}
	}
}

// TestDebVersion: packaging/debversion.sh turns git describe output into
// Debian versions that start with a digit and sort in build order.
func TestDebVersion(t *testing.T) {
	requireTool(t, "dpkg", "dpkg")
	script := repoFile(t, "packaging/debversion.sh")
	valid := regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	deb := func(v string) string {
		t.Helper()
		cmd := exec.Command("sh", script, v)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("debversion.sh %q: %v\n%s", v, err, out)
		}
		got := strings.TrimSpace(string(out))
		if !valid.MatchString(got) {
			t.Fatalf("debversion.sh %q = %q: not a Debian version without revision", v, got)
		}
		return got
	}
	for in, want := range map[string]string{
		"v1.2.3":                  "1.2.3",
		"1.2.3":                   "1.2.3",
		"v1.2.3-rc1":              "1.2.3~rc1",
		"v1.2.3-4-gabc1234":       "1.2.3+git4.gabc1234",
		"v1.2.3-4-gabc1234-dirty": "1.2.3+git4.gabc1234+dirty",
		"v1.2.3-rc1-2-gdeadbee":   "1.2.3~rc1+git2.gdeadbee",
	} {
		if got := deb(in); got != want {
			t.Errorf("debversion.sh %q = %q, want %q", in, got, want)
		}
	}
	untagged := deb("1feb3ff") // a hash that starts with a digit is no version
	if !strings.HasPrefix(untagged, "0.0.0~git") {
		t.Errorf("untagged build: %q, want 0.0.0~git...", untagged)
	}
	if dirty := deb("1feb3ff-dirty"); !strings.HasSuffix(dirty, "+dirty") {
		t.Errorf("untagged dirty build: %q, want a +dirty suffix", dirty)
	}
	// Each sorts before the next.
	order := []string{untagged, deb("v0.1.0-rc1"), deb("v0.1.0-rc1-3-gdeadbee"), deb("v0.1.0"), deb("v0.1.0-2-gabc1234"), deb("v0.1.0-2-gabc1234-dirty"), deb("v0.1.1")}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
			t.Errorf("dpkg says %s is not before %s", order[i-1], order[i])
		}
	}
}
