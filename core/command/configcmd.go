package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/agent"
	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/config/pools"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
)

func loadFlags(name string, env Env) (*flag.FlagSet, *string) {
	fs := newFlags(name)
	return fs, fs.String("config-dir", DefaultConfigDir, "config file path: a directory of *.hcl files (and conf.yml) or one HCL file")
}

// defaultDirMissing reports whether the configuration was to come from the
// default --config-dir (not given) and nothing is there: outside
// Spiderpool's pods the default is absent, and "no such file" about a path
// the user never typed does not say what to do.
func defaultDirMissing(fs *flag.FlagSet, dir string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config-dir" })
	if given || dir != DefaultConfigDir {
		return false
	}
	_, err := os.Stat(dir)
	return errors.Is(err, os.ErrNotExist)
}

// noConfigDir is the usage error of config validate and config show when
// defaultDirMissing.
func noConfigDir(env Env, command string) int {
	fmt.Fprintf(env.Stderr, "spiderpool-agent: %s: no --config-dir given and the default %s (Spiderpool's config-map mount) does not exist; pass --config-dir DIR or FILE (the package's is %s)\n",
		command, DefaultConfigDir, PackagedConfigDir)
	return ExitUsage
}

type configValidateCommand struct{ env Env }

func (c *configValidateCommand) Synopsis() string { return "Check the configuration" }

func (c *configValidateCommand) flags() (*flag.FlagSet, *string, *string, *string) {
	fs, dir := loadFlags("config validate", c.env)
	return fs, dir, fs.String("ipam-config-dir", "", "also check the IPAM pools of this directory (*.hcl), as the daemon would load them"),
		fs.String("plugin-dir", "", "directories of the plugin binaries, separated by \":\"; overrides the config, as the daemon's --plugin-dir")
}

func (c *configValidateCommand) Help() string {
	fs, _, _, _ := c.flags()
	return helpText("config validate [options]", `
Loads the configuration as the daemon would (defaults, conf.yml, HCL files,
environment) and reports every problem with its file:line:column. Each enabled
plugin is started just long enough to check its config block: against the
schema the plugin reports, then by the plugin itself (a dry run, which finds
values that parse but are wrong, at their file:line:column). No plugin is
configured, so nothing on the node changes. A plugin that calls itself by
another name than its block is a warning. With --ipam-config-dir the IPAM
pools are checked too (sizes against ipam.max_allocated_ips). With
--plugin-dir the binaries there are the ones you name: they run even where
the daemon would refuse them (a checkout's bin/plugins below /tmp, say),
and that refusal is a warning. Exits 0 when everything is valid, 1
otherwise.`, fs)
}

func (c *configValidateCommand) Run(args []string) int {
	fs, dir, ipamDir, pluginDir := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if defaultDirMissing(fs, *dir) {
		return noConfigDir(c.env, "config validate")
	}
	load := config.LoadOptions{ConfigDir: *dir, IPAMConfigDir: *ipamDir, Lookup: c.env.Lookup}
	if *pluginDir != "" {
		dirs, err := absDirs(*pluginDir)
		if err != nil {
			return fail(c.env, "--plugin-dir: %v", err)
		}
		load.Flags = append(load.Flags, config.Flag{Key: "plugin_dir", Value: dirs, Name: "--plugin-dir"})
	}
	cfg, err := config.Load(load)
	if err != nil {
		return invalidConfig(c.env, err)
	}
	nPools := -1
	if *ipamDir != "" {
		res, err := pools.Load(*ipamDir, cfg.IPAM.MaxAllocatedIPs)
		if err != nil {
			fmt.Fprintf(c.env.Stderr, "%v\n", err)
			return ExitFail
		}
		nPools = len(res.Pools)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A built-in that is not in plugin_dir: the daemon runs with it
	// disabled, which under fail-closed blocks every check - worth a
	// warning, not a refusal (it may be on purpose).
	specs := agent.PluginSpecs(cfg)
	for i, p := range cfg.Plugins {
		if _, found := p.BinaryPath(cfg.PluginDirs()); p.Enabled && !found && slices.Contains(config.BuiltinPlugins, p.Name) {
			fmt.Fprintf(c.env.Stderr, "warning: plugin %q: built-in enabled but not found in plugin_dir (%s); the agent would run with it disabled%s\n",
				p.Name, strings.Join(cfg.PluginDirs(), ":"), failClosedNote(p))
			specs[i].Enabled = false
		}
	}
	res := supervisor.ValidateConfigs(ctx, specs, supervisor.Options{
		Logger:       hclog.New(&hclog.LoggerOptions{Name: "validate", Output: c.env.Stderr, Level: hclog.Error}),
		Agent:        agent.Settings(cfg),
		StartTimeout: cfg.Supervisor.StartTimeout,
		UserNamed:    *pluginDir != "",
	})
	for _, n := range sortedNames(res.Warnings) {
		for _, w := range res.Warnings[n] {
			fmt.Fprintf(c.env.Stderr, "warning: plugin %q: %s\n", n, w)
		}
	}
	if !res.OK() {
		fmt.Fprintln(c.env.Stderr, "invalid plugin configuration:")
		for _, n := range sortedNames(res.Errors) {
			fmt.Fprintf(c.env.Stderr, "plugin %q: %v\n", n, res.Errors[n])
		}
		return ExitFail
	}
	fmt.Fprintf(c.env.Stdout, "configuration is valid (%d files", len(cfg.Files))
	for _, f := range cfg.Files {
		fmt.Fprintf(c.env.Stdout, ", %s", f)
	}
	enabled := 0
	for _, p := range cfg.Plugins {
		if p.Enabled {
			enabled++
		}
	}
	fmt.Fprintf(c.env.Stdout, "; %d plugins enabled", enabled)
	if nPools >= 0 {
		fmt.Fprintf(c.env.Stdout, "; %d IPAM pools", nPools)
	}
	fmt.Fprintln(c.env.Stdout, ")")
	return ExitOK
}

// absDirs makes each directory of a ":"-separated list absolute, so that
// `--plugin-dir bin/plugins` works from where the command is run.
func absDirs(list string) (string, error) {
	parts := strings.Split(list, ":")
	for i, d := range parts {
		if d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", err
		}
		parts[i] = abs
	}
	return strings.Join(parts, ":"), nil
}

func failClosedNote(p *config.PluginConfig) string {
	if p.FailurePolicy == api.FailClosed && p.Name != config.PluginSysctlTuner {
		return ", and under fail-closed every check would be blocked"
	}
	return ""
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type configShowCommand struct{ env Env }

func (c *configShowCommand) Synopsis() string { return "Print the effective configuration" }

func (c *configShowCommand) flags() (*flag.FlagSet, *string, *bool) {
	fs, dir := loadFlags("config show", c.env)
	return fs, dir, fs.Bool("json", false, "print JSON")
}

func (c *configShowCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("config show [options]", `
Prints every setting of the effective configuration with where its value
came from: default, conf.yml:LINE, FILE:LINE:COL, an environment variable or
a flag.`, fs)
}

func (c *configShowCommand) Run(args []string) int {
	fs, dir, asJSON := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if defaultDirMissing(fs, *dir) {
		return noConfigDir(c.env, "config show")
	}
	cfg, err := config.Load(config.LoadOptions{ConfigDir: *dir, Lookup: c.env.Lookup})
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			return invalidConfig(c.env, err)
		}
		return fail(c.env, "%v", err)
	}
	settings := cfg.Settings()
	if *asJSON {
		type row struct {
			Key    string `json:"key"`
			Value  string `json:"value"`
			Source string `json:"source"`
		}
		rows := make([]row, len(settings))
		for i, s := range settings {
			rows[i] = row{s.Key, s.Value, s.Source.String()}
		}
		return printJSON(c.env, rows)
	}
	tw := newTable(c.env.Stdout)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, s := range settings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, s.Value, s.Source)
	}
	if err := tw.Flush(); err != nil {
		return fail(c.env, "write: %v", err)
	}
	return ExitOK
}
