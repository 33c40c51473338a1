package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
)

// TestMakeInstall: `make install DESTDIR=... PREFIX=/usr/local` lays out the
// package's files for /usr/local, with the unit and the config pointing
// there, keeps an existing configuration, and gives a unit systemd accepts.
func TestMakeInstall(t *testing.T) {
	requireTool(t, "make", "make")
	analyze := requireTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	dest := filepath.Join(dir, "root")
	args := []string{"install", "DESTDIR=" + dest, "PREFIX=/usr/local", "BIN=" + filepath.Join(dir, "bin")}
	run(t, repoRoot(t), "make", args...)

	for p, mode := range map[string]string{
		"/usr/local/bin/spiderpool-agent":                                             "-rwxr-xr-x",
		"/usr/local/lib/spiderpool/plugins/spiderpool-plugins":                        "lrwxrwxrwx",
		"/usr/local/lib/systemd/system/spiderpool-agent.service":                      "-rw-r--r--",
		"/usr/local/share/doc/spiderpool-agent/README.md":                             "-rw-r--r--",
		"/usr/local/share/doc/spiderpool-agent/config.hcl.example":                    "-rw-r--r--",
		"/etc/spiderpool/config.hcl":                                                  "-rw-r--r--",
		"/etc/default/spiderpool-agent":                                               "-rw-r--r--",
		"/usr/local/share/man/man8/spiderpool-agent.8":                                "-rw-r--r--",
		"/usr/local/share/bash-completion/completions/spiderpool-agent":               "-rw-r--r--",
		"/usr/local/share/zsh/vendor-completions/_spiderpool-agent":                   "-rw-r--r--",
		"/usr/local/share/doc/spiderpool-agent/monitoring/spiderpool-agent.rules.yml": "-rw-r--r--",
		"/opt/cni/bin/spiderpool":                                                     "-rwxr-xr-x",
		"/usr/local/share/doc/spiderpool-agent/cni/macvlan.conflist":                  "-rw-r--r--",
	} {
		fi, err := os.Lstat(filepath.Join(dest, p))
		if err != nil {
			t.Errorf("make install: %v", err)
			continue
		}
		if got := modeString(fi); got != mode {
			t.Errorf("%s is %s, want %s", p, got, mode)
		}
	}
	checkSetLink(t, filepath.Join(dest, "usr/local/lib/spiderpool/plugins/spiderpool-plugins"), filepath.Join(dest, "usr/local/bin/spiderpool-agent"))

	u := parseUnit(t, filepath.Join(dest, "usr/local/lib/systemd/system", unitName))
	if got, want := u.get("Service", "ExecStart"), "/usr/local/bin/spiderpool-agent daemon --config-dir /etc/spiderpool --ipam-config-dir /etc/spiderpool/ipam.d"; got != want {
		t.Errorf("installed unit: ExecStart=%q, want %q", got, want)
	}
	cfg, err := config.Load(config.LoadOptions{ConfigDir: filepath.Join(dest, "etc/spiderpool")})
	if err != nil {
		t.Fatalf("installed config: %v", err)
	}
	if cfg.PluginDir != "/usr/local/lib/spiderpool/plugins" {
		t.Errorf("installed config: plugin_dir %q, want /usr/local/lib/spiderpool/plugins", cfg.PluginDir)
	}

	// systemd looks in /usr/local/lib/systemd/system too; the targets the
	// unit names come from the host.
	if err := os.MkdirAll(filepath.Join(dest, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", "cp", "-a", "/usr/lib/systemd/system", filepath.Join(dest, "usr/lib/systemd/system"))
	if err := os.MkdirAll(filepath.Join(dest, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "bin/kill"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", "--root="+dest, unitName).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify of the unit make install wrote: %v\n%s", err, out)
	}

	// A second install keeps the administrator's configuration.
	conf := filepath.Join(dest, "etc/spiderpool/config.hcl")
	const mine = "log_level = \"debug\"\n"
	if err := os.WriteFile(conf, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, repoRoot(t), "make", args...)
	if data, err := os.ReadFile(conf); err != nil || string(data) != mine {
		t.Errorf("a second make install replaced %s (%v):\n%s", conf, err, out)
	}
	if !strings.Contains(out, "keeping") {
		t.Errorf("make install did not say it kept the configuration:\n%s", out)
	}
}
