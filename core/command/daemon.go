package command

import (
	"context"
	"errors"
	"flag"

	"github.com/spiderpool-agent/spiderpool-agent/core/agent"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
)

// DefaultConfigDir is Spiderpool's config-map mount point: --config-dir
// when not given, so that the agent runs unchanged where Spiderpool's
// manifests mount its configuration.
const DefaultConfigDir = "/tmp/spiderpool/config-map"

// PackagedConfigDir is the --config-dir the deb's unit passes; the
// commands that read the configuration name it when the default is absent.
const PackagedConfigDir = "/etc/spiderpool"

type daemonCommand struct {
	env Env
}

// daemonFlags maps the daemon's optional flags onto config keys; they take
// precedence over everything else.
var daemonFlags = []struct{ name, key, usage string }{
	{"log-level", "log_level", "log level: debug, info, warn, error, fatal, panic"},
	{"plugin-dir", "plugin_dir", "directories of the plugin binaries, separated by \":\""},
	{"socket", "socket_path", "control API unix socket"},
	{"health-port", "health_port", "health HTTP port"},
}

func (c *daemonCommand) flags() (*flag.FlagSet, *string, *string) {
	fs := newFlags("daemon")
	dir := fs.String("config-dir", DefaultConfigDir, "config file path: a directory of *.hcl files (and conf.yml) or one HCL file")
	ipam := fs.String("ipam-config-dir", "", "directory of the IPAM pool files (*.hcl); empty: IPAM is off")
	for _, f := range daemonFlags {
		fs.String(f.name, "", f.usage+" (overrides config and environment)")
	}
	return fs, dir, ipam
}

func (c *daemonCommand) Synopsis() string { return "Run the spiderpool agent daemon" }

func (c *daemonCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("daemon [options]", `
Runs the agent in the foreground: loads the configuration, takes the control
socket, serves health (and metrics when enabled), starts the plugins and
answers checks until SIGTERM, SIGINT or "spiderpool-agent shutdown".
SIGHUP reloads the configuration.`, fs)
}

func (c *daemonCommand) Run(args []string) int {
	fs, dir, ipam := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	opts := agent.Options{
		Load:      config.LoadOptions{ConfigDir: *dir, IPAMConfigDir: *ipam, Lookup: c.env.Lookup},
		LogOutput: c.env.Stderr,
	}
	fs.Visit(func(f *flag.Flag) {
		for _, df := range daemonFlags {
			if df.name == f.Name {
				opts.Load.Flags = append(opts.Load.Flags, config.Flag{Key: df.key, Value: f.Value.String(), Name: "--" + f.Name})
			}
		}
	})
	if err := agent.Run(context.Background(), opts); err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			return invalidConfig(c.env, err)
		}
		return fail(c.env, "%v", err)
	}
	return ExitOK
}
