package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginPackageBesideTheAgent builds the SDK's example plugin into a
// package of its own (`make deb-denylist`, as packaging/README.md tells a
// vendor), installs it with dpkg after the agent's package, and sees the
// agent run it: ready, from its own directory, pinned by the checksum its
// drop-in got at build time.
//
// Both packages go into a throwaway root: a private mount namespace where
// /usr, /etc and /var are overlays on this machine's (dpkg's database
// included) and /run is empty (no systemd to talk to), and a network
// namespace of its own, so that nothing reaches the host or the other tests.
func TestPluginPackageBesideTheAgent(t *testing.T) {
	for tool, pkg := range map[string]string{"dpkg": "dpkg", "unshare": "util-linux", "mount": "mount", "make": "make"} {
		requireTool(t, tool, pkg)
	}
	agentDeb := buildDeb(t)
	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	run(t, repoRoot(t), "make", "deb-denylist", "BIN="+filepath.Join(dir, "bin"), "DIST="+dist)
	pluginDebs, err := filepath.Glob(filepath.Join(dist, "spiderpool-plugin-denylist_*_amd64.deb"))
	if err != nil || len(pluginDebs) != 1 {
		t.Fatalf("make deb-denylist made %v (%v), want one package", pluginDebs, err)
	}

	work := t.TempDir()
	script := `set -eu
W=` + work + `
for d in usr etc var; do
	mkdir -p "$W/$d.up" "$W/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$d.up,workdir=$W/$d.work" "/$d"
done
mount -t tmpfs tmpfs /run
ip link set lo up
dpkg --install "$1"
dpkg --install "$2"
echo "== installed: $(dpkg-query -W -f='${Status}' spiderpool-plugin-denylist)"
# The operator's own file: the sysctl-tuner stays off (it would set this
# namespace's sysctls, nothing else, but the test is about the plugin), and
# the plugin's config { } beside the vendor's path and checksum.
cat > /etc/spiderpool/60-local.hcl <<'EOF'
plugin "sysctl-tuner" { enabled = false }
plugin "denylist" {
  config {
    deny = ["192.0.2.0/29"]
  }
}
EOF
spiderpool-agent config validate --config-dir /etc/spiderpool
spiderpool-agent daemon --config-dir /etc/spiderpool --socket "$W/agent.sock" >"$W/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
# Bounded poll of the agent's own answer: status exits 0 once the agent and
# every enabled plugin are ready (the denylist among them: checked below).
i=0
until spiderpool-agent status --socket "$W/agent.sock" >/dev/null 2>&1; do
	i=$((i+1))
	if [ $i -gt 300 ]; then
		echo "== the agent not ready after 60s"; spiderpool-agent status --socket "$W/agent.sock" || true; cat "$W/daemon.log"; exit 1
	fi
	sleep 0.2
done
spiderpool-agent status --socket "$W/agent.sock" --json | tr -d ' \n' | grep -q '"name":"denylist","kind":"detector",[^}]*"state":"ready"' || { echo "== denylist is not ready"; exit 1; }
spiderpool-agent status --socket "$W/agent.sock"
spiderpool-agent check --socket "$W/agent.sock" --interface lo --ip 192.0.2.3/24 || echo "== check exit $?"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--net", "--", "sh", "-c", script, "sh", agentDeb, pluginDebs[0])
	cmd.Env = append(cleanCommand("true").Env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	t.Logf("install and run:\n%s", out)
	if err != nil {
		t.Fatalf("the two packages did not install and run: %v", err)
	}
	text := string(out)
	for _, want := range []string{
		"== installed: install ok installed",
		"configuration is valid",
		"192.0.2.3 is inside 192.0.2.0/29: reserved for infrastructure",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Nothing of it reached this machine.
	if _, err := os.Stat("/usr/lib/spiderpool-denylist"); err == nil {
		t.Errorf("/usr/lib/spiderpool-denylist exists on the host after the test")
	}
}
