package command

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

type pluginCommand struct{}

func (c *pluginCommand) Synopsis() string {
	return "Write, run and document plugins (for plugin authors)"
}
func (c *pluginCommand) Help() string {
	return helpText("plugin <new|run|docs> [options]", `
  new    write a plugin module skeleton that builds and passes its test
  run    run a plugin binary without a daemon, e.g. one check
  docs   print a plugin's config reference from the schema it reports`, nil)
}
func (c *pluginCommand) Run([]string) int { return cli.RunResultHelp }

// positional splits leading non-flag arguments from the flags after them,
// so that "plugin new NAME --kind tuner" parses.
func positional(args []string, n int) ([]string, []string) {
	var pos []string
	for len(args) > 0 && len(pos) < n && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	return pos, args
}

type pluginNewCommand struct{ env Env }

func (c *pluginNewCommand) Synopsis() string { return "Write a new plugin module" }

func (c *pluginNewCommand) flags() (*flag.FlagSet, *string, *string, *string, *string, *string) {
	fs := newFlags("plugin new")
	return fs, fs.String("kind", "detector", "detector or tuner"),
		fs.String("dir", "", "where to write the module (default: ./NAME)"),
		fs.String("module", "", "the module path (default: example.com/NAME)"),
		fs.String("sdk-version", "v0.1.0", "the sdk version to require (tags sdk/vX.Y.Z)"),
		fs.String("sdk-dir", "", "a local sdk checkout to use through a replace directive, for development")
}

func (c *pluginNewCommand) Help() string {
	fs, _, _, _, _, _ := c.flags()
	return helpText("plugin new NAME [options]", `
Writes a Go module for a new plugin called NAME (lower case, digits and
dashes): go.mod with the SDK, the plugin with Info, a config struct, a
shared parse for ValidateConfig and Configure, and Check (or Apply and
Status for a tuner), its main, an sdktest conformance test, a README and a
Makefile. It builds and passes its test as written.`, fs)
}

func (c *pluginNewCommand) Run(args []string) int {
	fs, kind, dir, module, sdkVersion, sdkDir := c.flags()
	pos, rest := positional(args, 1)
	if code, ok := parse(fs, rest, c.env, c.Help()); !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.env.Stderr, "plugin new needs the plugin's NAME\n\n%s\n", c.Help())
		return ExitUsage
	}
	name := pos[0]
	if !pluginNameRE.MatchString(name) {
		fmt.Fprintf(c.env.Stderr, "plugin name %q must be lower case letters, digits and single dashes, starting with a letter\n", name)
		return ExitUsage
	}
	if *kind != string(sdk.KindDetector) && *kind != string(sdk.KindTuner) {
		fmt.Fprintf(c.env.Stderr, "--kind %q: want detector or tuner\n", *kind)
		return ExitUsage
	}
	s := scaffold{Name: name, Package: strings.ReplaceAll(name, "-", ""), Module: *module, Kind: sdk.Kind(*kind), SDK: *sdkVersion}
	if s.Module == "" {
		s.Module = "example.com/" + name
	}
	if *dir == "" {
		*dir = name
	}
	if *sdkDir != "" {
		abs, err := filepath.Abs(*sdkDir)
		if err != nil {
			return fail(c.env, "--sdk-dir: %v", err)
		}
		s.SDKDir, s.SDK = abs, "v0.0.0"
	}
	written, err := writeScaffold(*dir, s)
	if err != nil {
		return fail(c.env, "plugin new: %v", err)
	}
	for _, f := range written {
		fmt.Fprintln(c.env.Stdout, f)
	}
	fmt.Fprintf(c.env.Stdout, "\nnext: cd %s && go mod tidy && make test\n", *dir)
	return ExitOK
}

// dial starts a plugin binary for one-off use, logging to stderr.
func dial(ctx context.Context, env Env, path, component string, timeout time.Duration, level string) (*supervisor.Conn, error) {
	// The agent runs only absolute paths, checked like sshd's StrictModes
	// (no directory above writable by others: not /tmp).
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	path = abs
	log := hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: env.Stderr, Level: hclog.LevelFromString(level)})
	agent := sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: level}
	return supervisor.Dial(ctx, path, component, timeout, agent, log)
}

type pluginRunCommand struct{ env Env }

func (c *pluginRunCommand) Synopsis() string { return "Run a plugin binary without a daemon" }

type pluginRunFlags struct {
	iface, netns, config, level string
	component                   string
	timeout                     time.Duration
	asJSON                      bool
	list                        addressList
}

func (c *pluginRunCommand) flags() (*flag.FlagSet, *pluginRunFlags) {
	f := &pluginRunFlags{}
	fs := newFlags("plugin run")
	fs.StringVar(&f.iface, "interface", "", "the interface to check (required)")
	fs.StringVar(&f.netns, "netns", "", "the network namespace, e.g. /var/run/netns/NAME")
	fs.Var(ipFlag{&f.list}, "ip", "an address in CIDR form (repeatable, required)")
	fs.Var(gatewayFlag{&f.list}, "gateway", "the gateway of the --ip before it")
	fs.StringVar(&f.config, "config", "", "a file holding the body of the plugin's config { } block")
	fs.StringVar(&f.level, "log-level", "warn", "the plugin's log level")
	fs.StringVar(&f.component, "component", "", "the component to serve when PATH is a plugin set (PATH list names them)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "bound of each call, as the block's timeout")
	fs.BoolVar(&f.asJSON, "json", false, "print the results as JSON")
	return fs, f
}

func (c *pluginRunCommand) Help() string {
	fs, _ := c.flags()
	return helpText("plugin run PATH check --interface IF --ip CIDR [--gateway IP] [options]", `
Starts the plugin binary at PATH as the daemon would, configures it (with the
block body in --config, or none), asks it about each --ip and prints the
verdicts. For development: no daemon, no control socket. Exits 0 when every
address passed, 1 when one was blocked, 2 when a check could not be made.`, fs)
}

func (c *pluginRunCommand) Run(args []string) int {
	fs, f := c.flags()
	pos, rest := positional(args, 2)
	if code, ok := parse(fs, rest, c.env, c.Help()); !ok {
		return code
	}
	if len(pos) != 2 || pos[1] != "check" {
		fmt.Fprintf(c.env.Stderr, "usage: plugin run PATH check ...\n\n%s\n", c.Help())
		return ExitUsage
	}
	if f.iface == "" || len(f.list.addrs) == 0 {
		fmt.Fprintf(c.env.Stderr, "--interface and --ip are required\n\n%s\n", c.Help())
		return ExitUsage
	}
	var reqs []sdk.CheckRequest
	for _, a := range f.list.addrs {
		pfx, err := netip.ParsePrefix(a.Address)
		if err != nil {
			fmt.Fprintf(c.env.Stderr, "--ip %s: %v\n", a.Address, err)
			return ExitUsage
		}
		r := sdk.CheckRequest{Interface: f.iface, Netns: f.netns, Address: pfx}
		if a.Gateway != "" {
			if r.Gateway, err = netip.ParseAddr(a.Gateway); err != nil {
				fmt.Fprintf(c.env.Stderr, "--gateway %s: %v\n", a.Gateway, err)
				return ExitUsage
			}
		}
		reqs = append(reqs, r)
	}
	raw := sdk.RawConfig{Filename: "(none)"}
	if f.config != "" {
		body, err := os.ReadFile(f.config)
		if err != nil {
			return fail(c.env, "--config: %v", err)
		}
		raw = sdk.RawConfig{Filename: f.config, Body: body, Start: hcl.InitialPos}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+f.timeout*time.Duration(len(reqs)+3))
	defer cancel()
	conn, err := dial(ctx, c.env, pos[0], f.component, f.timeout, f.level)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	defer conn.Close(context.Background())
	if conn.Info.Kind != sdk.KindDetector {
		return fail(c.env, "%s is a %s, not a detector: nothing to check", conn.Info.Name, conn.Info.Kind)
	}
	if err := raw.Validate(conn.Schema); err != nil {
		return fail(c.env, "config:\n%v", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, f.timeout)
	err = conn.Client.Configure(cctx, sdk.ConfigureRequest{Config: raw, Agent: sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: f.level}})
	ccancel()
	if err != nil {
		return fail(c.env, "configure:\n%v", err)
	}
	code := ExitOK
	type result struct {
		Address   string            `json:"address"`
		Verdict   sdk.Verdict       `json:"verdict"`
		BlockKind sdk.BlockKind     `json:"block_kind,omitempty"`
		Reason    string            `json:"reason,omitempty"`
		Evidence  map[string]string `json:"evidence,omitempty"`
		Error     string            `json:"error,omitempty"`
		Ms        float64           `json:"duration_ms"`
	}
	var results []result
	for _, r := range reqs {
		cctx, ccancel := context.WithTimeout(ctx, f.timeout)
		start := time.Now()
		res, err := conn.Client.Check(cctx, r)
		ccancel()
		out := result{Address: r.Address.String(), Verdict: res.Verdict, BlockKind: res.BlockKind, Reason: res.Reason, Evidence: res.Evidence, Ms: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			out.Verdict, out.Error = sdk.VerdictError, err.Error()
		}
		switch out.Verdict {
		case sdk.VerdictBlock:
			code = max(code, ExitFail)
		case sdk.VerdictError:
			code = ExitUsage
		}
		results = append(results, out)
	}
	if f.asJSON {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return fail(c.env, "write: %v", err)
		}
		return code
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tVERDICT\tTOOK\tREASON")
	for _, r := range results {
		reason := r.Reason
		if r.Error != "" {
			reason = r.Error
		}
		verdict := string(r.Verdict)
		if r.Verdict == sdk.VerdictBlock {
			// The kind is what the agent's IPAM does with the block; a
			// block without one is taken as fail.
			kind := string(r.BlockKind)
			if kind == "" {
				kind = "no kind: fail"
			}
			verdict += " (" + kind + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fms\t%s\n", r.Address, verdict, r.Ms, reason)
	}
	if err := tw.Flush(); err != nil {
		return fail(c.env, "write: %v", err)
	}
	return code
}

type pluginDocsCommand struct{ env Env }

func (c *pluginDocsCommand) Synopsis() string { return "Print a plugin's config reference" }

func (c *pluginDocsCommand) flags() (*flag.FlagSet, *string) {
	fs := newFlags("plugin docs")
	return fs, fs.String("component", "", "the component to document when PATH is a plugin set (PATH list names them)")
}

func (c *pluginDocsCommand) Help() string {
	fs, _ := c.flags()
	return helpText("plugin docs PATH [--component NAME]", `
Starts the plugin binary at PATH just long enough to read its info and
config schema, and prints its config reference in Markdown, in the style of
the built-in plugins' READMEs.`, fs)
}

func (c *pluginDocsCommand) Run(args []string) int {
	fs, component := c.flags()
	pos, rest := positional(args, 1)
	if code, ok := parse(fs, rest, c.env, c.Help()); !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.env.Stderr, "plugin docs needs the plugin binary's PATH\n\n%s\n", c.Help())
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := dial(ctx, c.env, pos[0], *component, 5*time.Second, "warn")
	if err != nil {
		return fail(c.env, "%v", err)
	}
	defer conn.Close(context.Background())
	if err := writeDocs(c.env.Stdout, conn.Info, conn.Schema); err != nil {
		return fail(c.env, "write: %v", err)
	}
	return ExitOK
}

// writeDocs renders a plugin's reference: what it is, then one row per
// attribute and a block with every default.
func writeDocs(w io.Writer, info sdk.Info, schema sdk.Schema) error {
	fmt.Fprintf(w, "# %s\n\n", info.Name)
	if info.Description != "" {
		fmt.Fprintf(w, "%s\n\n", info.Description)
	}
	fmt.Fprintf(w, "Kind %s, version %s, plugin API %s.", info.Kind, dash(info.Version), dash(info.APIVersion))
	if len(info.Capabilities) > 0 {
		fmt.Fprintf(w, " Needs %s.", strings.Join(info.Capabilities, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\n## Configuration\n\n")
	if len(schema.Attributes) == 0 {
		fmt.Fprintln(w, "The plugin takes no attributes in its `config { }` block.")
		return nil
	}
	fmt.Fprintln(w, "| attribute | type | default | description |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, a := range schema.Attributes {
		def := "`" + a.Default + "`"
		switch {
		case a.Required:
			def = "required"
		case a.Default == "":
			def = "-"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", a.Name, a.Type, def, strings.ReplaceAll(a.Description, "|", `\|`))
	}
	fmt.Fprintf(w, "\n```hcl\nplugin %q {\n  config {\n", info.Name)
	for _, a := range schema.Attributes {
		switch {
		case a.Required:
			fmt.Fprintf(w, "    %s = # required, %s\n", a.Name, a.Type)
		case a.Default != "":
			fmt.Fprintf(w, "    # %s = %s\n", a.Name, a.Default)
		default:
			fmt.Fprintf(w, "    # %s = (%s, no default)\n", a.Name, a.Type)
		}
	}
	_, err := fmt.Fprintln(w, "  }\n}\n```")
	return err
}
