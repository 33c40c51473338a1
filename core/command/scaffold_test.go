package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// plugin new says which SDK the module binds to, and a checkout is bound
// by a path relative to the module, which a vendor's CI can reproduce.
func TestPluginNewBindsTheSDK(t *testing.T) {
	repoSDK, err := filepath.Abs("../../sdk")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	checkout := filepath.Join(work, "spiderpool-agent")
	if err := os.MkdirAll(checkout, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(repoSDK, filepath.Join(checkout, "sdk")); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(work, "acme", "rack-guard")

	out, errOut, code := runCLI(t, nil, "plugin", "new", "rack-guard", "--dir", mod, "--sdk-dir", filepath.Join(checkout, "sdk"))
	if code != 0 {
		t.Fatalf("plugin new: exit %d\n%s%s", code, out, errOut)
	}
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"replace github.com/spiderpool-agent/spiderpool-agent/sdk => ../../spiderpool-agent/sdk\n",
		"require github.com/spiderpool-agent/spiderpool-agent/sdk v0.0.0\n",
	} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, gomod)
		}
	}
	if !strings.Contains(out, "sdk: the sdk of the checkout at ../../spiderpool-agent/sdk") {
		t.Errorf("plugin new does not say what it binds to:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(mod, "go.sum")); err != nil {
		t.Errorf("no go.sum from the checkout: %v", err)
	}

	// No checkout beside this (test) executable: the release it was made with.
	rel := filepath.Join(work, "released")
	out, errOut, code = runCLI(t, nil, "plugin", "new", "rack-guard", "--dir", rel)
	if code != 0 {
		t.Fatalf("plugin new: exit %d\n%s%s", code, out, errOut)
	}
	gomod, _ = os.ReadFile(filepath.Join(rel, "go.mod"))
	if !strings.Contains(string(gomod), "require github.com/spiderpool-agent/spiderpool-agent/sdk "+sdk.Version+"\n") ||
		strings.Contains(string(gomod), "replace") || !strings.Contains(out, "the released sdk "+sdk.Version) {
		t.Errorf("release binding:\n%s\n%s", gomod, out)
	}
	makefile, _ := os.ReadFile(filepath.Join(rel, "Makefile"))
	if !strings.Contains(string(makefile), "-s -w -X example.com/rack-guard.Version=$(VERSION)") {
		t.Errorf("the Makefile neither strips nor stamps the version:\n%s", makefile)
	}
}

func TestPluginNewRefusesWhatGoWouldRefuseLater(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"--module", "acme.com/vendor/rack-guard"}, `has an element "vendor"`},
		{[]string{"--module", "acme.com/Rack Guard"}, "--module"},
		{[]string{"--sdk-dir", "/nonexistent"}, "is not the sdk module"},
		{[]string{"--sdk-dir", ".", "--sdk-version", "v0.1.0"}, "give one"},
	}
	for _, tt := range tests {
		dir := filepath.Join(t.TempDir(), "m")
		_, errOut, code := runCLI(t, nil, append([]string{"plugin", "new", "rack-guard", "--dir", dir}, tt.args...)...)
		if code == 0 || !strings.Contains(errOut, tt.says) {
			t.Errorf("plugin new %v: exit %d, %q; want a refusal saying %q", tt.args, code, errOut, tt.says)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("plugin new %v wrote %s although it refused", tt.args, dir)
		}
	}
}

// The skeletons are sdk/examples/mtuguard with the author's places emptied:
// nothing of the example's own detector may leak into them, and the lines
// sdk/README.md's walk-through tells an author to replace must be there.
func TestSkeletonsAreTheExampleEmptied(t *testing.T) {
	for _, kind := range []sdk.Kind{sdk.KindDetector, sdk.KindTuner} {
		dir := filepath.Join(t.TempDir(), "m")
		s := scaffold{Name: "rack-guard", Package: "rackguard", Module: "example.com/rack-guard", Kind: kind, SDK: sdk.Version}
		if _, err := writeScaffold(dir, s); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "rackguard.go"))
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if strings.Contains(strings.ToLower(src), "mtu") {
			t.Errorf("the %s skeleton has the example's MTU in it:\n%s", kind, src)
		}
		want := []string{
			"// Package rackguard is the rack-guard " + string(kind) + " plugin of spiderpool-agent.\npackage rackguard\n",
			"\ntype Config struct{}\n",
			"\nfunc defaults() Config { return Config{} }\n",
			"\t\"context\"\n",
			`Name: "rack-guard", Kind: sdk.Kind` + map[sdk.Kind]string{sdk.KindDetector: "Detector", sdk.KindTuner: "Tuner"}[kind],
		}
		absent := []string{"func verdict", "func (p *Plugin) Check("}
		if kind == sdk.KindDetector {
			want, absent = append(want, "\nfunc verdict(", "\nfunc (p *Plugin) Check("), []string{"func (p *Plugin) Status("}
		} else {
			want = append(want, "\nfunc (p *Plugin) Status(", "\t_, err := p.apply(ctx)\n", "\tsdk.Configured[Config]\n")
		}
		for _, w := range want {
			if !strings.Contains(src, w) {
				t.Errorf("the %s skeleton lacks %q:\n%s", kind, w, src)
			}
		}
		for _, a := range absent {
			if strings.Contains(src, a) {
				t.Errorf("the %s skeleton has %q:\n%s", kind, a, src)
			}
		}
	}
}

// overlayDecls refuses what would let a change of the example go
// unnoticed: a declaration to drop that is not there, a comment it would
// lose.
func TestOverlayDeclsRefusesDrift(t *testing.T) {
	base := "package a\n\nfunc f() {}\n"
	if _, err := overlayDecls(base, "package a\n", []string{"func g"}); err == nil || !strings.Contains(err.Error(), "no func g") {
		t.Errorf("a drop naming nothing: %v", err)
	}
	stray := "package a\n\nfunc f() {}\n\n// a note between declarations\n\nfunc g() {}\n"
	if _, err := overlayDecls(stray, "package a\n", nil); err == nil || !strings.Contains(err.Error(), "comment outside") {
		t.Errorf("a comment outside any declaration: %v", err)
	}
	out, err := overlayDecls("// Package a.\npackage a\n\nimport \"fmt\"\n\n// F prints.\nfunc F() { fmt.Println() }\n\nfunc G() {}\n",
		"package b\n\nimport \"os\"\n\nfunc F() { os.Exit(0) }\n\nfunc H() {}\n", []string{"func G"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "// Package a.\npackage b\n\nimport (\n\t\"os\"\n)\n\n// F prints.\nfunc F() { os.Exit(0) }\n\nfunc H() {}\n"; string(out) != want {
		t.Errorf("overlay:\n%s\nwant:\n%s", out, want)
	}
}
