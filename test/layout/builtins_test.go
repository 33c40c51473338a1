package layout

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// builtinDetectorNames are the built-in detectors, by plugin name and by
// the core's constant for it.
var builtinDetectorNames = []string{"ip-conflict", "gateway-detector", "PluginIPConflict", "PluginGatewayDetector"}

// mayNameBuiltinDetectors is the core's default configuration: the only
// core files that may name a built-in detector. Everywhere else the core
// acts on what a detector says (the kind of its block), never on which
// detector it is, so that a third party's detector takes part in
// allocation as the built-ins do.
var mayNameBuiltinDetectors = []string{
	"core/config/config.go",  // the names, BuiltinPlugins, DefaultIPAMDetectors
	"core/config/confyml.go", // Spiderpool's conf.yml switches that turn them off
}

// namesBuiltinDetector returns the built-in detector names src mentions.
func namesBuiltinDetector(src string) []string {
	var out []string
	for _, n := range builtinDetectorNames {
		if strings.Contains(src, n) {
			out = append(out, n)
		}
	}
	return out
}

func TestCoreNamesNoBuiltinDetector(t *testing.T) {
	root := moduleRoot(t)
	seen := 0
	err := filepath.WalkDir(filepath.Join(root, "core"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if slices.Contains(mayNameBuiltinDetectors, filepath.ToSlash(rel)) {
			seen++
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if names := namesBuiltinDetector(string(src)); len(names) > 0 {
			t.Errorf("%s names %s: the core reads a detector's block by its kind (sdk.BlockKind), not by its name; only %v may name the built-ins", rel, strings.Join(names, ", "), mayNameBuiltinDetectors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A renamed or moved default configuration must move the allowed set
	// with it, not leave it naming nothing.
	if seen != len(mayNameBuiltinDetectors) {
		t.Errorf("found %d of the allowed files %v", seen, mayNameBuiltinDetectors)
	}
}

// The check itself must be able to fail.
func TestNamesBuiltinDetectorFindsAMention(t *testing.T) {
	if got := namesBuiltinDetector(`case d.Name == config.PluginIPConflict:`); !slices.Equal(got, []string{"PluginIPConflict"}) {
		t.Errorf("constant: %v", got)
	}
	if got := namesBuiltinDetector(`if name == "gateway-detector" {`); !slices.Equal(got, []string{"gateway-detector"}) {
		t.Errorf("literal: %v", got)
	}
	if got := namesBuiltinDetector(`kind := d.BlockKind`); len(got) != 0 {
		t.Errorf("no mention: %v", got)
	}
}
