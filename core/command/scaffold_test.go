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
