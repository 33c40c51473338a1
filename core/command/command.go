// Package command is the spiderpool-agent command line: one hashicorp/cli
// command per subcommand. Exit codes: 0 success, 1 failure, 2 usage error
// (and for check: 0 pass, 1 block, 2 error).
package command

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/cli"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/version"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Bounds of the client commands, so that a script never hangs on a wedged
// daemon or plugin. Each is a flag's default where the command has a
// --timeout.
const (
	// answerTimeout bounds what the daemon answers from what it holds
	// (status, metric) and its exit after shutdown: on a loaded 2-core
	// machine these take well under a second, so a daemon that takes ten
	// is wedged.
	answerTimeout = 10 * time.Second
	// workTimeout bounds what makes something work before it answers: a
	// check (every detector's probes, paced and queued behind other
	// checks, and their reply windows), a plugin started to run or to
	// report its schema, a profile's transfer after its duration. It is
	// the CNI plugin's wait for an allocation (api.AllocateWait), so a
	// check from the CLI gets the time an ADD's check would.
	workTimeout = 30 * time.Second
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
			"config validate": func() (cli.Command, error) { return &configValidateCommand{env: env}, nil },
			"config show":     func() (cli.Command, error) { return &configShowCommand{env: env}, nil },
			"version":         func() (cli.Command, error) { return &versionCommand{env: env}, nil },
			"debug pprof":     func() (cli.Command, error) { return &debugPprofCommand{env: env}, nil },
			"plugin new":      func() (cli.Command, error) { return &pluginNewCommand{env: env}, nil },
			"plugin run":      func() (cli.Command, error) { return &pluginRunCommand{env: env}, nil },
			"plugin docs":     func() (cli.Command, error) { return &pluginDocsCommand{env: env}, nil },
		},
	}
	for name, f := range ipamCommands(env) {
		c.Commands[name] = f
	}
	c.Commands["ipam conflicts"] = func() (cli.Command, error) { return &ipamConflictsCommand{env: env}, nil }
	for name := range groups {
		c.Commands[name] = func() (cli.Command, error) { return &group{env: env, name: name}, nil }
	}
	withCompletion(c.Commands)
	if _, known := c.Commands[c.Subcommand()]; !known && c.Subcommand() != "" && !c.IsVersion() {
		// hashicorp/cli prints the usage and returns 127 without a word
		// on what was wrong.
		fmt.Fprintf(env.Stderr, "spiderpool-agent: unknown command %q\n\n", c.Subcommand())
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(env.Stderr, "spiderpool-agent: %v\n", err)
		return ExitFail
	}
	if code == unknownCommand {
		return ExitUsage
	}
	if _, ok := groups[c.Subcommand()]; ok && code == groupHelp {
		// A group ran without one of its subcommands (group.Run).
		return ExitUsage
	}
	return code
}

// What hashicorp/cli's Run returns for a command it does not know, and for
// a command whose Run returned cli.RunResultHelp (after printing its help).
const (
	unknownCommand = 127
	groupHelp      = 1
)

// groups are the commands that only group others. hashicorp/cli lists a
// group's subcommands, with their synopses, under the group's help, so the
// help text here says what the group is for and nothing more.
var groups = map[string]struct{ synopsis, usage, body string }{
	"config": {"Validate or show the configuration", "config <subcommand> [options]", `
Reads the configuration as the daemon would: defaults, conf.yml, the HCL
files of --config-dir, the environment.`},
	"debug": {"Debugging aids over the control socket", "debug <subcommand> [options]", `
Debugging aids that reach the running daemon over its control socket.`},
	"ipam": {"Address pools and allocations (IPAM)", "ipam <subcommand> [options]", `
Talks to the running agent's IPAM over the control socket. The agent needs
--ipam-config-dir (packaged: ` + config.DefaultIPAMConfigDir + `) for IPAM to be on.
Each subcommand takes --json and --socket, except restore (offline).`},
	"plugin": {"Write, run and document plugins (for plugin authors)", "plugin <subcommand> [options]", `
Tools for plugin authors: a new plugin module, a plugin run without a
daemon, a plugin's config reference.`},
}

// group is a command of groups: it has no behaviour of its own, so running
// it without a subcommand, or with one it does not have, is a usage error.
type group struct {
	env  Env
	name string
}

func (g *group) Synopsis() string { return groups[g.name].synopsis }
func (g *group) Help() string {
	// hashicorp/cli puts a blank line before the subcommands it lists.
	return strings.TrimRight(helpText(groups[g.name].usage, groups[g.name].body, nil), "\n")
}

// Run prints what is wrong; hashicorp/cli prints the help after it.
func (g *group) Run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(g.env.Stderr, "spiderpool-agent: %s needs a subcommand\n\n", g.name)
	} else {
		fmt.Fprintf(g.env.Stderr, "spiderpool-agent: unknown command %q\n\n", g.name+" "+args[0])
	}
	return cli.RunResultHelp
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

// invalidConfig reports a configuration that does not load. The error
// (a *config.Error) already begins "invalid configuration".
func invalidConfig(env Env, err error) int {
	fmt.Fprintf(env.Stderr, "spiderpool-agent: %v\n", err)
	return ExitFail
}

func fail(env Env, format string, a ...any) int {
	fmt.Fprintf(env.Stderr, "spiderpool-agent: "+format+"\n", a...)
	return ExitFail
}

// printJSON writes v indented, the --json output of every command.
func printJSON(env Env, v any) int {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(env, "write: %v", err)
	}
	return ExitOK
}

// socketFlag defines --socket, the control socket a client command talks
// to unless told: $SPIDERPOOL_SOCKET_PATH when set, else the agent's
// default path.
func socketFlag(fs *flag.FlagSet, env Env) *string {
	def := api.DefaultSocketPath
	if v, ok := env.Lookup("SPIDERPOOL_SOCKET_PATH"); ok && v != "" {
		def = v
	}
	return fs.String("socket", def, "control API unix socket")
}

func helpText(usage, body string, fs *flag.FlagSet) string {
	var b strings.Builder
	// Only the blank lines around the body go: its first line may be
	// indented like the rest.
	b.WriteString("Usage: spiderpool-agent " + usage + "\n\n" + strings.TrimRight(strings.TrimLeft(body, "\n"), " \n") + "\n")
	if fs != nil {
		b.WriteString("\nOptions:\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(&b, "  %s\n      %s%s\n", flagName(f.Name), f.Usage, def)
		})
	}
	return b.String()
}

// flagName is how a flag is written in help: -o for a one-letter flag, as
// Go's flag package and every other tool print one, --name otherwise. The
// flag package accepts either form.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
