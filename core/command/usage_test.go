package command

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// A mistyped command says what was mistyped, before the usage, and exits 2.
func TestUnknownCommandIsNamed(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `spiderpool-agent: unknown command "frobnicate"`},
		{[]string{"frobnicate", "-h"}, `spiderpool-agent: unknown command "frobnicate"`},
		{[]string{"config", "frobnicate"}, `spiderpool-agent: unknown command "config frobnicate"`},
		{[]string{"ipam", "alocate", "--pool", "x"}, `spiderpool-agent: unknown command "ipam alocate"`},
		{[]string{"config"}, "spiderpool-agent: config needs a subcommand"},
		{[]string{"debug"}, "spiderpool-agent: debug needs a subcommand"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, nil, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if !strings.HasPrefix(errOut, tt.want+"\n\nUsage: spiderpool-agent") {
				t.Errorf("stderr does not begin with %q and the usage:\n%s", tt.want, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty:\n%s", out)
			}
		})
	}
	// A command that exists is not "unknown", with or without -h.
	if _, errOut, code := runCLI(t, nil, "version", "-h"); code != ExitOK || strings.Contains(errOut, "unknown") {
		t.Errorf("version -h: exit %d:\n%s", code, errOut)
	}
}

// A group's help (config, debug, ipam, plugin) lists each subcommand once,
// aligned, after a usage line naming the group.
func TestGroupHelpListsEachSubcommandOnce(t *testing.T) {
	subs := map[string][]string{}
	for name := range groups {
		out, errOut, code := runCLI(t, nil, name, "-h")
		if code != ExitOK {
			t.Fatalf("%s -h: exit %d:\n%s", name, code, errOut)
		}
		if !strings.HasPrefix(out, "Usage: spiderpool-agent "+name+" <subcommand>") {
			t.Errorf("%s -h does not begin with its usage:\n%s", name, out)
		}
		if n := strings.Count(out, "Subcommands:"); n != 1 {
			t.Errorf("%s -h: %d subcommand lists, want 1:\n%s", name, n, out)
		}
		if strings.Contains(out, "\n\n\n") {
			t.Errorf("%s -h has a run of blank lines:\n%s", name, out)
		}
		// Every line of the list is indented alike: name, then its synopsis
		// in one column.
		list := out[strings.Index(out, "Subcommands:")+len("Subcommands:"):]
		column := -1
		for _, l := range strings.Split(strings.Trim(list, "\n"), "\n") {
			m := regexp.MustCompile(`^    (\S+)( +)\S`).FindStringSubmatch(l)
			if m == nil {
				t.Errorf("%s -h: list line %q is not \"    NAME    SYNOPSIS\"", name, l)
				continue
			}
			subs[name] = append(subs[name], m[1])
			if c := len(m[1]) + len(m[2]); column >= 0 && c != column {
				t.Errorf("%s -h: synopsis of %q at column %d, others at %d", name, m[1], c, column)
			} else {
				column = c
			}
		}
		// Each subcommand appears once in the whole help.
		for _, s := range subs[name] {
			if n := len(regexp.MustCompile(`(?m)^\s+`+s+`\s`).FindAllString(out, -1)); n != 1 {
				t.Errorf("%s -h names %q at the start of %d lines, want 1:\n%s", name, s, n, out)
			}
		}
	}
	for name, want := range map[string][]string{
		"config": {"show", "validate"},
		"debug":  {"pprof"},
		"plugin": {"docs", "new", "run"},
	} {
		got := subs[name]
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s -h lists %v, want %v", name, got, want)
		}
	}
}

// A one-letter flag prints as -o, as Go's flag package and other tools
// print it; the others as --name.
func TestHelpPrintsOneLetterFlagsWithOneDash(t *testing.T) {
	out, _, code := runCLI(t, nil, "debug", "pprof", "-h")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "\n  -o\n") || strings.Contains(out, "--o\n") {
		t.Errorf("debug pprof -h does not print -o as -o:\n%s", out)
	}
	if !strings.Contains(out, "\n  --seconds\n") {
		t.Errorf("debug pprof -h lost --seconds:\n%s", out)
	}
	// Shell completion offers what the help prints.
	flags := completing{&debugPprofCommand{env: Env{Lookup: func(string) (string, bool) { return "", false }}}}.AutocompleteFlags()
	if _, ok := flags["-o"]; !ok {
		t.Errorf("completion does not offer -o: %v", flags)
	}
}

// A configuration that does not load is "invalid configuration" once, then
// its problems.
func TestInvalidConfigurationIsSaidOnce(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, "helth_port = 1\nlog_level = 7\n")
	good := filepath.Join(dir, "good.hcl")
	writeFile(t, good, "health_port = 6000\n")
	for _, tt := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"config", "validate", "--config-dir", bad}},
		{nil, []string{"config", "show", "--config-dir", bad}},
		{map[string]string{"SPIDERPOOL_HEALTH_PORT": "abc"}, []string{"config", "show", "--config-dir", good}},
		{nil, []string{"daemon", "--config-dir", bad}},
	} {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			_, errOut, code := runCLI(t, tt.env, tt.args...)
			if code != ExitFail {
				t.Errorf("exit %d, want %d", code, ExitFail)
			}
			if n := strings.Count(errOut, "invalid configuration"); n != 1 || !strings.HasPrefix(errOut, "spiderpool-agent: invalid configuration") {
				t.Errorf("%q %d times, want once at the start:\n%s", "invalid configuration", n, errOut)
			}
		})
	}
}

// config validate and config show without --config-dir read the default,
// Spiderpool's config-map mount; where that is absent (any host outside a
// Spiderpool pod) they say what to pass instead of "no such file".
func TestConfigCommandsWithoutConfigDir(t *testing.T) {
	_, statErr := os.Stat(DefaultConfigDir)
	for _, sub := range []string{"validate", "show"} {
		_, errOut, code := runCLI(t, nil, "config", sub)
		if os.IsNotExist(statErr) {
			want := "spiderpool-agent: config " + sub + ": no --config-dir given and the default " + DefaultConfigDir
			if code != ExitUsage || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "--config-dir DIR") || !strings.Contains(errOut, PackagedConfigDir) {
				t.Errorf("config %s: exit %d, want %d and %q, naming --config-dir and %s:\n%s", sub, code, ExitUsage, want, PackagedConfigDir, errOut)
			}
			continue
		}
		// The default exists here: it is read like any other directory.
		if strings.Contains(errOut, "no --config-dir given") {
			t.Errorf("config %s: the default %s exists, yet:\n%s", sub, DefaultConfigDir, errOut)
		}
	}
	// A --config-dir that was given and is absent is still the loader's
	// error, naming the flag.
	missing := filepath.Join(t.TempDir(), "nope")
	_, errOut, code := runCLI(t, nil, "config", "show", "--config-dir", missing)
	if code != ExitFail || !strings.Contains(errOut, `--config-dir "`+missing+`"`) {
		t.Errorf("config show --config-dir %s: exit %d:\n%s", missing, code, errOut)
	}
}
