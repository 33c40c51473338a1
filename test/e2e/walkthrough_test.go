package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// walkStep is one step of a README walk-through: a shell line to run, a
// replacement in a generated file, or a file to write.
type walkStep struct {
	run        string // a shell line
	file       string // the file a replacement or a write is about
	old, text  string // replace old (a line, or "func NAME": the function) with text
	write      bool   // write text to file
	readmeLine int
}

var (
	replaceRE = regexp.MustCompile("^In `([^`]+)`, replace `([^`]+)` with:$|replace `([^`]+)` with:$")
	inFileRE  = regexp.MustCompile("[Ii]n `([^`]+)`")
	writeRE   = regexp.MustCompile("^Write `([^`]+)`")
)

// readWalkThrough parses the section of a README that starts with heading
// into steps: every ```sh line is run, and a ```go or ```hcl block belongs
// to the instruction before it ("In `F`, replace `X` with:", "Write `F`").
func readWalkThrough(t *testing.T, readme io.Reader, heading string) []walkStep {
	t.Helper()
	var steps []walkStep
	sc := bufio.NewScanner(readme)
	in, fence := false, ""
	var pending *walkStep
	var block []string
	lastFile := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			if in {
				return steps
			}
			in = line == heading
			continue
		case !in:
			continue
		case fence == "" && strings.HasPrefix(line, "```"):
			fence = strings.TrimPrefix(line, "```")
			block = nil
			continue
		case fence != "" && line == "```":
			switch {
			case fence == "sh":
				for _, l := range block {
					steps = append(steps, walkStep{run: l, readmeLine: n})
				}
			case pending != nil:
				pending.text = strings.Join(block, "\n") + "\n"
				steps = append(steps, *pending)
				pending = nil
			default:
				t.Fatalf("README line %d: a %s block without an instruction before it", n, fence)
			}
			fence = ""
			continue
		case fence != "":
			block = append(block, line)
			continue
		}
		if m := inFileRE.FindStringSubmatch(line); m != nil {
			lastFile = m[1]
		}
		if m := replaceRE.FindStringSubmatch(line); m != nil {
			old := m[2] + m[3]
			pending = &walkStep{file: lastFile, old: old, readmeLine: n}
		} else if m := writeRE.FindStringSubmatch(line); m != nil {
			pending = &walkStep{file: m[1], write: true, readmeLine: n}
		}
	}
	if !in {
		t.Fatalf("README has no section %q", heading)
	}
	return steps
}

// apply replaces old in the file's text: a whole line equal to old (once),
// or for "func NAME" the function from its first line to its closing brace.
func (s walkStep) apply(text string) (string, error) {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(s.old, "func ") && strings.HasPrefix(trimmed, s.old+"(") {
			for j := i; j < len(lines); j++ {
				if lines[j] == "}\n" {
					return strings.Join(lines[:i], "") + s.text + strings.Join(lines[j+1:], ""), nil
				}
			}
			return "", fmt.Errorf("%s has no end", s.old)
		}
		if trimmed == s.old {
			return strings.Join(lines[:i], "") + s.text + strings.Join(lines[i+1:], ""), nil
		}
	}
	return "", fmt.Errorf("no line %q", s.old)
}

// TestWalkThroughCIDRDenylist follows sdk/README.md's walk-through
// verbatim, beside a checkout laid out as the README says: `plugin new`,
// the edits, `make test`, `make build`, `plugin run` and `plugin docs` from
// the directory it was built in (below /tmp, which the daemon would
// refuse). The author's own lines, plugin and tests, stay at most 40.
func TestWalkThroughCIDRDenylist(t *testing.T) {
	repo, err := agenttest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.Open(filepath.Join(repo, "sdk", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer readme.Close()
	steps := readWalkThrough(t, readme, "## Walk-through: cidr-denylist in 40 lines")

	// A checkout as `make build` leaves it: CHECKOUT/bin/spiderpool-agent
	// beside CHECKOUT/sdk.
	work := t.TempDir()
	checkout := filepath.Join(work, "spiderpool-agent")
	if err := os.MkdirAll(filepath.Join(checkout, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repo, "sdk"), filepath.Join(checkout, "sdk")); err != nil {
		t.Fatal(err)
	}
	copyBinary(t, bins.Agent, filepath.Join(checkout, "bin", "spiderpool-agent"))

	dir := work
	written := map[string]string{} // file -> as generated, for the count
	var out strings.Builder
	for _, s := range steps {
		if s.run != "" {
			line := s.run
			// `cd X && rest`: the rest runs in X, and so does what follows.
			if rest, ok := strings.CutPrefix(line, "cd "); ok {
				target, more, _ := strings.Cut(rest, " && ")
				dir = filepath.Join(dir, target)
				line = more
			}
			if line == "" {
				continue
			}
			cmd := exec.Command("sh", "-c", line)
			cmd.Dir = dir
			// Offline, as the README promises for a checkout.
			cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
			b, err := cmd.CombinedOutput()
			out.Write(b)
			blocked := strings.Contains(line, "plugin run") && cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 1
			if err != nil && !blocked {
				t.Fatalf("README line %d: %s: %v\n%s", s.readmeLine, line, err, b)
			}
			continue
		}
		path := filepath.Join(dir, s.file)
		if s.write {
			if err := os.WriteFile(path, []byte(s.text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("README line %d: %v", s.readmeLine, err)
		}
		if _, ok := written[path]; !ok {
			written[path] = string(old)
		}
		text, err := s.apply(string(old))
		if err != nil {
			t.Fatalf("README line %d: in %s: %v", s.readmeLine, s.file, err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	got := out.String()
	for _, want := range []string{
		"10.1.2.3/24  block", "10.1.2.3 is in 10.1.0.0/16",
		"10.2.0.1/24  pass",
		"| `max_prefix` | integer: 0 to 32 | `32` |",
		"list(string): at least 1 item; each a network prefix",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the walk-through's output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "the daemon would refuse to run this binary"); n != 2 {
		t.Errorf("the daemon's refusal is noted %d times for plugin run and plugin docs, want once each:\n%s", n, got)
	}
	lines := 0
	for path, generated := range written {
		now, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines += newLines(generated, string(now))
	}
	t.Logf("the author wrote %d lines beyond what plugin new wrote", lines)
	if lines > 40 {
		t.Errorf("the author wrote %d lines beyond the scaffold; the goal is at most 40", lines)
	}
}

func copyBinary(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
