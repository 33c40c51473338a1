package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

const module = "github.com/spiderpool-agent/spiderpool-agent"

// pkg is the part of `go list -json` this test reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs `go list` for every package matching patterns in
// dir, with its transitive imports (tests' imports not included: a test
// may use what the package may not).
func list(t *testing.T, dir string, patterns ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Imports,Deps"}, patterns...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v in %s: %v\n%s", patterns, dir, err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %v found no packages", patterns)
	}
	return pkgs
}

// rule says which repository packages a set of packages must not depend on.
type rule struct {
	name      string
	forbidden func(dep string) bool
}

func under(prefix string) func(string) bool {
	return func(dep string) bool {
		return dep == module+"/"+prefix || strings.HasPrefix(dep, module+"/"+prefix+"/")
	}
}

func violations(pkgs []pkg, r rule) []string {
	var out []string
	for _, p := range pkgs {
		for _, d := range p.Deps {
			if r.forbidden(d) {
				out = append(out, fmt.Sprintf("%s imports %s (%s)", p.ImportPath, d, r.name))
			}
		}
	}
	return out
}

// The dependency rule of design.md: core -> sdk <- plugins. The core never
// imports a plugin; a plugin never imports the core; the sdk, a module of
// its own, imports nothing of the repository outside itself.
func TestDependencyRule(t *testing.T) {
	root := moduleRoot(t)
	checks := []struct {
		dir      string
		patterns []string
		rule     rule
	}{
		{root, []string{"./core/..."}, rule{"core must not import plugins", under("plugins")}},
		{root, []string{"./plugins/..."}, rule{"plugins must not import core", under("core")}},
		{filepath.Join(root, "sdk"), []string{"./..."}, rule{"sdk must not import the repository outside sdk/", func(d string) bool {
			return strings.HasPrefix(d, module+"/") && !under("sdk")(d)
		}}},
		// The orchestrator owns nothing of the API: the control package
		// hands it a state.Check and serves the state.CheckResult it gets.
		{root, []string{"./core/check"}, rule{"core/check must not import the control API", under("core/control")}},
		// The control client is what thin callers (test/bench/minicheck,
		// scripts' helpers) link: none of the daemon's plugin machinery.
		{root, []string{"./core/control"}, rule{"core/control must stay a thin client", func(d string) bool {
			return under("core/check")(d) || under("core/supervisor")(d) || under("core/config")(d) || under("sdk")(d) ||
				strings.HasPrefix(d, "github.com/hashicorp/go-plugin") || strings.HasPrefix(d, "google.golang.org/grpc") ||
				strings.HasPrefix(d, "github.com/hashicorp/hcl")
		}}},
		// The CNI plugin is exec'd once per workload interface and ships
		// in the deb's 30 MB budget: a thin HTTP/1.0 client of
		// the control socket (core/ipam/ipamapi's wire.go), none of
		// net/http's TLS, x509, gzip and HTTP/2, and none of the daemon's
		// gRPC, go-plugin or HCL (design.md "Layout").
		{root, []string{"./core/cmd/spiderpool-cni"}, rule{"core/cmd/spiderpool-cni must stay small", cniForbidden}},
	}
	for _, c := range checks {
		if v := violations(list(t, c.dir, c.patterns...), c.rule); len(v) > 0 {
			t.Errorf("%s:\n%s", c.rule.name, strings.Join(v, "\n"))
		}
	}
}

// The module's root package is the one place that links core and plugins
// together (the multi-call spiderpool-agent): it is wiring only, so of the
// repository it may import the agent's CLI, the built-ins' set and the sdk,
// nothing else - a plugin's own package or an internal of core would make it
// a back door around the rule above.
func TestRootIsOnlyWiring(t *testing.T) {
	allowed := []string{module + "/core/command", module + "/plugins/builtins", module + "/sdk"}
	for _, p := range list(t, moduleRoot(t), ".") {
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s; the root may import only %v", p.ImportPath, imp, allowed)
			}
		}
		if !slices.Contains(p.Imports, module+"/plugins/builtins") {
			t.Errorf("%s does not link the built-ins (%v): the shipped executable would not serve them", p.ImportPath, p.Imports)
		}
	}
}

// cniForbidden is what the CNI plugin must not link.
func cniForbidden(d string) bool {
	for _, p := range []string{"net/http", "crypto/tls", "crypto/x509", "compress/gzip", "google.golang.org/grpc", "google.golang.org/protobuf"} {
		if d == p || strings.HasPrefix(d, p+"/") {
			return true
		}
	}
	return strings.HasPrefix(d, "github.com/hashicorp/") || under("core/config")(d) || under("core/supervisor")(d) || under("sdk")(d)
}

// The rule check itself must be able to fail.
func TestViolationsFindsAForbiddenImport(t *testing.T) {
	pkgs := []pkg{{ImportPath: module + "/core/agent", Deps: []string{"fmt", module + "/plugins/probe"}}}
	if v := violations(pkgs, rule{"core must not import plugins", under("plugins")}); len(v) != 1 {
		t.Errorf("violations = %v, want the one import of plugins/probe", v)
	}
	if v := violations([]pkg{{ImportPath: module + "/core/x", Deps: []string{module + "/pluginsx"}}}, rule{"r", under("plugins")}); len(v) != 0 {
		t.Errorf("a sibling with a common prefix is not under plugins/: %v", v)
	}
	cni := []pkg{{ImportPath: module + "/core/cmd/spiderpool-cni", Deps: []string{"fmt", "net", "net/url", "net/http", "net/http/internal", "crypto/tls", "github.com/hashicorp/go-plugin", "net/httpx"}}}
	if v := violations(cni, rule{"cni", cniForbidden}); len(v) != 4 {
		t.Errorf("the CNI rule found %v, want net/http, net/http/internal, crypto/tls and go-plugin", v)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// The agent's executable is built with AGENT_TAGS (Makefile), and the tests
// build it with agenttest.AgentTags: both must be the same, so that the tests
// run what ships; and with them the executable must leave out what the tags
// are for (gRPC's x/net/trace).
func TestAgentBuildTags(t *testing.T) {
	root := moduleRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^AGENT_TAGS\s*:=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile: no AGENT_TAGS := line")
	}
	if got := string(m[1]); got != agenttest.AgentTags {
		t.Errorf("Makefile AGENT_TAGS = %q, agenttest.AgentTags = %q: the tests would not run what ships", got, agenttest.AgentTags)
	}
	cmd := exec.Command("go", "list", "-tags", agenttest.AgentTags, "-deps", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if slices.Contains(deps, "golang.org/x/net/trace") {
		t.Errorf("with tags %s the agent still links golang.org/x/net/trace", agenttest.AgentTags)
	}
	if !slices.Contains(deps, "google.golang.org/grpc") {
		t.Errorf("go list found no gRPC in the agent: the check above proves nothing")
	}
}
