package packaging

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

const pkgName = "spiderpool-agent"

// Where the package's enablement lives (deb-systemd-helper, run by the
// postinst even without a running systemd).
const (
	wantsLink = "/etc/systemd/system/multi-user.target.wants/spiderpool-agent.service"
	dshState  = "/var/lib/systemd/deb-systemd-helper-enabled/spiderpool-agent.service"
)

// debEntry is one member of the package's data archive.
type debEntry struct {
	mode  string // "-rwxr-xr-x", "drwxr-xr-x"
	owner string // "root/root"
}

// wantFiles are the package's files and their modes.
var wantFiles = map[string]string{
	"/usr/bin/spiderpool-agent":                                                  "-rwxr-xr-x",
	"/usr/lib/spiderpool/plugins/spiderpool-plugins":                             "lrwxrwxrwx",
	"/etc/spiderpool/config.hcl":                                                 "-rw-r--r--",
	"/etc/default/spiderpool-agent":                                              "-rw-r--r--",
	"/lib/systemd/system/spiderpool-agent.service":                               "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/README.md":                                  "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/config.hcl.example":                         "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/copyright":                                  "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/changelog.gz":                               "-rw-r--r--",
	"/usr/share/man/man8/spiderpool-agent.8.gz":                                  "-rw-r--r--",
	"/usr/share/bash-completion/completions/spiderpool-agent":                    "-rw-r--r--",
	"/usr/share/zsh/vendor-completions/_spiderpool-agent":                        "-rw-r--r--",
	"/usr/share/lintian/overrides/spiderpool-agent":                              "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/monitoring/README.md":                       "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/monitoring/spiderpool-agent.rules.yml":      "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/monitoring/spiderpool-agent.dashboard.json": "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/ipam.d/pools.hcl.example":                   "-rw-r--r--",
	"/etc/spiderpool/ipam.d":                                                     "drwxr-xr-x",
	"/etc/spiderpool":                                                            "drwxr-xr-x",
	"/usr/lib/spiderpool/plugins":                                                "drwxr-xr-x",
	"/usr/lib/spiderpool":                                                        "drwxr-xr-x",
	"/usr/share/doc/spiderpool-agent":                                            "drwxr-xr-x",
	"/usr/share/doc/spiderpool-agent/monitoring":                                 "drwxr-xr-x",
	"/opt/cni/bin/spiderpool":                                                    "-rwxr-xr-x",
	"/usr/share/doc/spiderpool-agent/cni/macvlan.conflist":                       "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/cni/ipvlan.conflist":                        "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/cni/bridge.conflist":                        "-rw-r--r--",
	"/usr/share/doc/spiderpool-agent/cni/README.md":                              "-rw-r--r--",
}

var wantConffiles = []string{"/etc/default/spiderpool-agent", "/etc/spiderpool/config.hcl"}

// buildDeb runs `make deb` with its output in a scratch directory (so that
// it neither needs nor disturbs bin/ and dist/) and returns the package.
func buildDeb(t *testing.T) string {
	t.Helper()
	requireTool(t, "make", "make")
	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	run(t, repoRoot(t), "make", "deb", "BIN="+filepath.Join(dir, "bin"), "DIST="+dist)
	debs, err := filepath.Glob(filepath.Join(dist, pkgName+"_*_amd64.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("make deb made %v (%v), want one %s_*_amd64.deb", debs, err, pkgName)
	}
	return debs[0]
}

// debContents lists the data archive: path -> entry.
func debContents(t *testing.T, deb string) map[string]debEntry {
	t.Helper()
	out := run(t, "", "dpkg-deb", "--contents", deb)
	entries := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: cannot parse %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if p == "" {
			continue
		}
		entries[p] = debEntry{mode: f[0], owner: f[1]}
	}
	return entries
}

func dpkgStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkgName).Output()
	if err != nil {
		return "not-installed"
	}
	return string(out)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// agentProcesses lists running processes of the installed binary.
func agentProcesses() []int {
	var pids []int
	for _, pid := range agenttest.PIDs() {
		if strings.HasPrefix(agenttest.Exe(pid), "/usr/bin/spiderpool-agent") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDebPackage builds the package with `make deb`, checks what is in it,
// installs it with dpkg on this machine (where systemd is not running, so
// the maintainer scripts must start nothing), runs the installed binary,
// runs it again with the unit's credentials, and removes and purges it.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	for tool, pkg := range map[string]string{"dpkg": "dpkg", "dpkg-deb": "dpkg", "dpkg-query": "dpkg",
		"deb-systemd-helper": "init-system-helpers", "systemd-analyze": "systemd", "ip": "iproute2",
		"setpriv": "util-linux", "unshare": "util-linux", "mount": "mount"} {
		requireTool(t, tool, pkg)
	}
	if st := dpkgStatus(t); !strings.Contains(st, "not-installed") {
		t.Fatalf("%s is already on this machine (dpkg status %q); this test installs and purges it: run `dpkg -P %s` first", pkgName, st, pkgName)
	}
	for _, p := range []string{"/etc/spiderpool", "/usr/lib/spiderpool", wantsLink} {
		if exists(p) {
			t.Fatalf("%s exists without the package installed; this test would remove it: clear it first", p)
		}
	}
	if pids := agentProcesses(); len(pids) > 0 {
		t.Fatalf("spiderpool-agent processes already run from /usr/bin: %v", pids)
	}

	denyServiceStarts(t)

	deb := buildDeb(t)
	t.Logf("built %s", filepath.Base(deb))

	// --- What is in the package ---------------------------------------
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Description", "Homepage", "Depends", "Recommends", "Section"} {
		fields[f] = strings.TrimSpace(run(t, "", "dpkg-deb", "--field", deb, f))
	}
	if fields["Package"] != pkgName || fields["Architecture"] != "amd64" || fields["Maintainer"] == "" || fields["Description"] == "" || fields["Homepage"] == "" {
		t.Errorf("control fields %+v", fields)
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(fields["Version"]) {
		t.Errorf("Version %q is not a Debian version starting with a digit", fields["Version"])
	}
	// Static binaries that execute only their plugins: nothing to depend on.
	if fields["Depends"] != "" || !strings.Contains(fields["Recommends"], "iproute2") {
		t.Errorf("Depends %q Recommends %q, want no Depends and iproute2 recommended", fields["Depends"], fields["Recommends"])
	}
	contents := debContents(t, deb)
	for p, mode := range wantFiles {
		e, ok := contents[p]
		if !ok {
			t.Errorf("the package lacks %s", p)
			continue
		}
		if e.mode != mode || e.owner != "root/root" {
			t.Errorf("%s is %s %s in the package, want %s root/root", p, e.mode, e.owner, mode)
		}
	}
	for p, e := range contents {
		if _, ok := wantFiles[p]; !ok && !strings.HasPrefix(e.mode, "d") {
			t.Errorf("the package holds %s, which this test does not know", p)
		}
	}
	conffiles := strings.Fields(run(t, "", "dpkg-deb", "--info", deb, "conffiles"))
	slices.Sort(conffiles)
	if !slices.Equal(conffiles, wantConffiles) {
		t.Errorf("conffiles %v, want %v", conffiles, wantConffiles)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		script := run(t, "", "dpkg-deb", "--info", deb, s)
		if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.Contains(script, "set -e") {
			t.Errorf("%s is not a /bin/sh script with set -e", s)
		}
		if !strings.Contains(script, "[ -d /run/systemd/system ]") {
			t.Errorf("%s does not check for a running systemd", s)
		}
	}

	// Paths of the package that were already there (shared directories
	// such as /usr/bin) must stay; the others must go on purge.
	preexisting := map[string]bool{}
	for p := range contents {
		preexisting[p] = exists(p)
	}

	t.Cleanup(func() {
		if !strings.Contains(dpkgStatus(t), "not-installed") {
			if out, err := exec.Command("dpkg", "--purge", pkgName).CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge %s: %v\n%s", pkgName, err, out)
			}
		}
		if pids := agentProcesses(); len(pids) > 0 {
			t.Errorf("cleanup: spiderpool-agent processes left: %v", pids)
		}
	})

	// --- Install ------------------------------------------------------
	out := run(t, "", "dpkg", "--install", deb)
	t.Logf("dpkg --install:\n%s", out)
	if st := dpkgStatus(t); st != "install ok installed" {
		t.Fatalf("dpkg status %q after install", st)
	}
	if pids := agentProcesses(); len(pids) > 0 {
		t.Errorf("the install started spiderpool-agent %v although systemd is not running", pids)
	}
	for p, mode := range wantFiles {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if got := modeString(fi); got != mode {
			t.Errorf("installed %s is %s, want %s", p, got, mode)
		}
	}
	checkSetLink(t, "/usr/lib/spiderpool/plugins/spiderpool-plugins", "/usr/bin/spiderpool-agent")
	listed := strings.Fields(run(t, "", "dpkg-query", "--listfiles", pkgName))
	for p := range contents {
		if !slices.Contains(listed, p) {
			t.Errorf("dpkg -L %s does not list %s", pkgName, p)
		}
	}
	got, _ := os.ReadFile("/var/lib/dpkg/info/" + pkgName + ".conffiles")
	if gotConf := strings.Fields(string(got)); !slices.Equal(sorted(gotConf), wantConffiles) {
		t.Errorf("dpkg knows conffiles %v, want %v", gotConf, wantConffiles)
	}
	if target, err := os.Readlink(wantsLink); err != nil || target != "/lib/systemd/system/spiderpool-agent.service" {
		t.Errorf("the postinst did not enable the unit: %s -> %q (%v)", wantsLink, target, err)
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/"+unitName).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
		}
	})

	t.Run("version and config validate", func(t *testing.T) {
		out, err := cleanCommand("/usr/bin/spiderpool-agent", "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "spiderpool-agent ") {
			t.Errorf("spiderpool-agent version: %v\n%s", err, out)
		}
		// config validate starts each plugin only to read its schema; it
		// runs in a namespace of its own all the same, so that nothing it
		// could do reaches the host's network settings.
		ns := netlab.NewNS(t, "validate")
		cmd := cleanCommand("ip", "netns", "exec", ns, "/usr/bin/spiderpool-agent", "config", "validate", "--config-dir", "/etc/spiderpool")
		out, err = cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configuration is valid") || !strings.Contains(string(out), "3 plugins enabled") {
			t.Errorf("spiderpool-agent config validate --config-dir /etc/spiderpool: %v\n%s", err, out)
		}
	})

	t.Run("lintian", func(t *testing.T) {
		lintian := requireTool(t, "lintian", "lintian")
		// Errors fail; warnings are reported. --allow-root: this test runs
		// as root to install the package.
		out, err := exec.Command(lintian, "--allow-root", "--fail-on", "error", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
		}
		if bytes.Contains(out, []byte("E: ")) {
			t.Errorf("lintian reports errors:\n%s", out)
		}
		t.Logf("lintian:\n%s", out)
	})

	t.Run("man page", func(t *testing.T) {
		requireTool(t, "man", "man-db")
		cmd := exec.Command("man", "-P", "cat", "spiderpool-agent")
		cmd.Env = append(cleanCommand("true").Env, "MANWIDTH=100", "LC_ALL=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("man spiderpool-agent after dpkg -i: %v\n%s", err, out)
		}
		for _, want := range []string{"SPIDERPOOL-AGENT(8)", "COMMANDS", "check --interface IF", "ENVIRONMENT", "SPIDERPOOL_HEALTH_PORT", "CONFIGURATION"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("man spiderpool-agent lacks %q", want)
			}
		}
		// The page's warnings (groff -ww) are errors here.
		w := exec.Command("sh", "-c", "zcat /usr/share/man/man8/spiderpool-agent.8.gz | groff -man -ww -z")
		w.Env = append(cleanCommand("true").Env, "LC_ALL=C.UTF-8")
		if out, err := w.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, out)
		}
	})

	t.Run("shell completion", func(t *testing.T) {
		cmd := exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/spiderpool-agent && complete -p spiderpool-agent")
		out, err := cmd.CombinedOutput()
		if err != nil || !regexp.MustCompile(`complete -C '?spiderpool-agent'? spiderpool-agent`).Match(out) {
			t.Errorf("bash completion not registered: %v\n%s", err, out)
		}
		for line, want := range map[string]string{
			"spiderpool-agent con":          "config",
			"spiderpool-agent check --inte": "--interface",
			"spiderpool-agent config v":     "validate",
		} {
			c := cleanCommand("/usr/bin/spiderpool-agent")
			c.Env = append(c.Env, "COMP_LINE="+line)
			out, err := c.Output()
			if err != nil || !strings.Contains(string(out), want) {
				t.Errorf("COMP_LINE=%q: %v %q, want %q", line, err, out, want)
			}
		}
	})

	t.Run("unit credentials", func(t *testing.T) { testUnitCredentials(t) })

	t.Run("reinstall keeps a changed conffile", func(t *testing.T) {
		const local = "\n# changed by the administrator\n"
		f, err := os.OpenFile("/etc/spiderpool/config.hcl", os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.WriteString(local)
		if err := errors.Join(werr, f.Close()); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("dpkg", "--install", deb)
		cmd.Stdin = nil // a conffile prompt would fail instead of waiting
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg --install again: %v\n%s", err, out)
		}
		data, err := os.ReadFile("/etc/spiderpool/config.hcl")
		if err != nil || !strings.HasSuffix(string(data), local) {
			t.Errorf("the administrator's change to config.hcl is gone after a reinstall (%v)", err)
		}
	})

	// --- Remove: only the conffiles stay ------------------------------
	out = run(t, "", "dpkg", "--remove", pkgName)
	t.Logf("dpkg --remove:\n%s", out)
	if st := dpkgStatus(t); st != "deinstall ok config-files" {
		t.Errorf("dpkg status %q after remove, want deinstall ok config-files", st)
	}
	for p := range contents {
		switch {
		case slices.Contains(wantConffiles, p) || p == "/etc/spiderpool":
			if !exists(p) {
				t.Errorf("dpkg --remove deleted %s; conffiles stay until purge", p)
			}
		case !preexisting[p] && exists(p):
			t.Errorf("dpkg --remove left %s", p)
		}
	}

	// --- Purge: nothing stays -----------------------------------------
	out = run(t, "", "dpkg", "--purge", pkgName)
	t.Logf("dpkg --purge:\n%s", out)
	if st := dpkgStatus(t); !strings.Contains(st, "not-installed") {
		t.Errorf("dpkg status %q after purge", st)
	}
	for p := range contents {
		if !preexisting[p] && exists(p) {
			t.Errorf("dpkg --purge left %s", p)
		}
	}
	for _, p := range []string{"/etc/spiderpool", wantsLink, dshState, dshState + ".dsh-also"} {
		if exists(p) {
			t.Errorf("dpkg --purge left %s", p)
		}
	}

	// --- Purge keeps what the administrator added ---------------------
	t.Run("purge keeps the administrator's files", func(t *testing.T) {
		run(t, "", "dpkg", "--install", deb)
		const mine = "/etc/spiderpool/local.hcl"
		if err := os.WriteFile(mine, []byte("log_level = \"debug\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(mine); os.Remove("/etc/spiderpool") })
		run(t, "", "dpkg", "--purge", pkgName)
		if !exists(mine) {
			t.Errorf("dpkg --purge deleted %s, which the package does not own", mine)
		}
		for _, p := range wantConffiles {
			if exists(p) {
				t.Errorf("dpkg --purge left the conffile %s", p)
			}
		}
	})
}

// denyServiceStarts makes sure that installing the package starts nothing
// here. Where systemd is not running (this machine, CI containers) the
// maintainer scripts start nothing by themselves. Where it is, they start
// the agent through deb-systemd-invoke, which asks policy-rc.d: the agent
// on the host's network namespace would tune the host's sysctls, so a
// policy-rc.d that denies every start is put in place for the test.
func denyServiceStarts(t *testing.T) {
	t.Helper()
	if !exists("/run/systemd/system") {
		return
	}
	const policy = "/usr/sbin/policy-rc.d"
	if exists(policy) {
		err := exec.Command(policy, unitName, "start").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 101 {
			t.Fatalf("systemd is running and %s does not deny starting %s (%v): installing the package would start the agent on this host", policy, unitName, err)
		}
		return
	}
	if err := os.WriteFile(policy, []byte("#!/bin/sh\n# test/packaging: deny every start while the test runs\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(policy) })
	t.Logf("systemd is running: %s denies service starts during the test", policy)
}

// cleanCommand is a command with the environment of a systemd service: no
// SPIDERPOOL_* variables from the test's shell.
func cleanCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	return cmd
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// checkSetLink: the built-ins' set is the agent's own executable, reached
// through a relative symlink (within /usr, as Debian policy asks), so that
// the agent and its three plugins share one file's pages.
func checkSetLink(t *testing.T, link, agent string) {
	t.Helper()
	target, err := os.Readlink(link)
	if err != nil {
		t.Errorf("%s: %v", link, err)
		return
	}
	if filepath.IsAbs(target) {
		t.Errorf("%s -> %s: want a relative link", link, target)
	}
	a, err1 := os.Stat(agent)
	l, err2 := os.Stat(link)
	if err1 != nil || err2 != nil || !os.SameFile(a, l) {
		t.Errorf("%s -> %s is not %s (%v, %v)", link, target, agent, err1, err2)
	}
}

// modeString renders a FileMode as ls and dpkg-deb do.
func modeString(fi fs.FileInfo) string {
	s := fi.Mode().Perm().String() // "-rwxr-xr-x"
	switch {
	case fi.IsDir():
		return "d" + s[1:]
	case fi.Mode()&fs.ModeSymlink != 0:
		return "l" + s[1:]
	}
	return s
}
