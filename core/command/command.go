// Package command is the spiderpool-agent command line: one hashicorp/cli
// command per subcommand. Exit codes: 0 success, 1 failure, 2 usage error
// (and for check: 0 pass, 1 block, 2 error).
package command

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/cli"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/version"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Env is how commands see the process: its output and environment. Tests
// give their own.
type Env struct {
	Stdout, Stderr io.Writer
	Lookup         func(string) (string, bool)
}

// Run runs the CLI with args (without the program name) and returns the
// exit code.
func Run(args []string, env Env) int {
	c := &cli.CLI{
		Name:        "spiderpool-agent",
		Args:        args,
		Version:     version.String(),
		HelpWriter:  env.Stdout,
		ErrorWriter: env.Stderr,
		// Shell completion: bash and zsh run the binary with COMP_LINE set
		// (packaging/completion). The -autocomplete-install flags, which
		// edit a user's shell rc, are left out: the package installs the
		// completion files.
		Autocomplete:               true,
		AutocompleteNoDefaultFlags: true,
		Commands: map[string]cli.CommandFactory{
			"daemon":          func() (cli.Command, error) { return &daemonCommand{env: env}, nil },
			"reload":          func() (cli.Command, error) { return &reloadCommand{env: env}, nil },
			"shutdown":        func() (cli.Command, error) { return &shutdownCommand{env: env}, nil },
			"metric":          func() (cli.Command, error) { return &metricCommand{env: env}, nil },
			"status":          func() (cli.Command, error) { return &statusCommand{env: env}, nil },
			"check":           func() (cli.Command, error) { return &checkCommand{env: env}, nil },
			"config":          func() (cli.Command, error) { return &configCommand{}, nil },
			"config validate": func() (cli.Command, error) { return &configValidateCommand{env: env}, nil },
			"config show":     func() (cli.Command, error) { return &configShowCommand{env: env}, nil },
			"version":         func() (cli.Command, error) { return &versionCommand{env: env}, nil },
			"debug":           func() (cli.Command, error) { return &debugCommand{}, nil },
			"debug pprof":     func() (cli.Command, error) { return &debugPprofCommand{env: env}, nil },
			"plugin":          func() (cli.Command, error) { return &pluginCommand{}, nil },
			"plugin new":      func() (cli.Command, error) { return &pluginNewCommand{env: env}, nil },
			"plugin run":      func() (cli.Command, error) { return &pluginRunCommand{env: env}, nil },
			"plugin docs":     func() (cli.Command, error) { return &pluginDocsCommand{env: env}, nil },
		},
	}
	for name, f := range ipamCommands(env) {
		c.Commands[name] = f
	}
	c.Commands["ipam conflicts"] = func() (cli.Command, error) { return &ipamConflictsCommand{env: env}, nil }
	withCompletion(c.Commands)
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(env.Stderr, "spiderpool-agent: %v\n", err)
		return ExitFail
	}
	if code == 127 { // unknown subcommand: hashicorp/cli printed the help
		return ExitUsage
	}
	return code
}

// OSEnv is the real process's Env.
func OSEnv() Env { return Env{Stdout: os.Stdout, Stderr: os.Stderr, Lookup: os.LookupEnv} }

// newFlags returns a silent flag set: parse reports its errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args and reports a usage error (exit 2) with the command's
// help. It also refuses stray arguments.
func parse(fs *flag.FlagSet, args []string, env Env, help string) (int, bool) {
	if code, ok := parseFlags(fs, args, env, help); !ok {
		return code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "unexpected argument %q\n\n%s\n", fs.Arg(0), help)
		return ExitUsage, false
	}
	return 0, true
}

// parseFlags is parse for a command that takes operands: the arguments
// after the flags are left in fs.Args().
func parseFlags(fs *flag.FlagSet, args []string, env Env, help string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(env.Stdout, help)
			return ExitOK, false
		}
		fmt.Fprintf(env.Stderr, "%v\n\n%s\n", err, help)
		return ExitUsage, false
	}
	return 0, true
}

func fail(env Env, format string, a ...any) int {
	fmt.Fprintf(env.Stderr, "spiderpool-agent: "+format+"\n", a...)
	return ExitFail
}

// socketDefault is the control socket the client commands use unless told:
// SPIDERPOOL_SOCKET_PATH, else the default path.
func socketDefault(env Env) string {
	if v, ok := env.Lookup("SPIDERPOOL_SOCKET_PATH"); ok && v != "" {
		return v
	}
	return api.DefaultSocketPath
}

func helpText(usage, body string, fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage: spiderpool-agent " + usage + "\n\n" + strings.TrimSpace(body) + "\n")
	if fs != nil {
		b.WriteString("\nOptions:\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(&b, "  --%s\n      %s%s\n", f.Name, f.Usage, def)
		})
	}
	return b.String()
}
