package layout

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoPath is a backquoted span in ARCHITECTURE.md that names a file or a
// directory of the repository: it starts with one of the top-level entries
// and has no spaces. Other spans (`probe_rate`, `in_use`) are not paths.
var repoPath = regexp.MustCompile("`((?:core|sdk|plugins|test|packaging)/[^` ]*|main\\.go|config\\.hcl\\.example|README\\.md|Makefile)`")

// TestArchitectureNamesFilesThatExist keeps the newcomer's map honest: a
// file moved or renamed without the map following fails here.
func TestArchitectureNamesFilesThatExist(t *testing.T) {
	root := moduleRoot(t)
	body, err := os.ReadFile(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	matches := repoPath.FindAllStringSubmatch(string(body), -1)
	if len(matches) < 30 {
		t.Fatalf("ARCHITECTURE.md names %d paths; the pattern or the file has gone wrong", len(matches))
	}
	for _, m := range matches {
		p := m[1]
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(p, "/"))))
		switch {
		case err != nil:
			t.Errorf("ARCHITECTURE.md names `%s`: %v", p, err)
		case strings.HasSuffix(p, "/") && !fi.IsDir():
			t.Errorf("ARCHITECTURE.md names `%s` as a directory; it is a file", p)
		case !strings.HasSuffix(p, "/") && fi.IsDir():
			t.Errorf("ARCHITECTURE.md names `%s` as a file; it is a directory (write `%s/`)", p, p)
		}
	}
	// The README's Layout section links the map.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "(ARCHITECTURE.md)") {
		t.Error("README.md does not link ARCHITECTURE.md")
	}
}
