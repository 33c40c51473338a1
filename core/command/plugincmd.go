package command

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/supervisor"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// positional splits leading non-flag arguments from the flags after them,
// so that "plugin new NAME --kind tuner" parses.
func positional(args []string, n int) ([]string, []string) {
	var pos []string
	for len(args) > 0 && len(pos) < n && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	return pos, args
}

// parseOperands is parse for a command whose n operands come before its
// flags (plugin new NAME, plugin docs PATH): missing, with the help, is
// what it says when they are not all there.
func parseOperands(fs *flag.FlagSet, args []string, n int, env Env, help, missing string) ([]string, int, bool) {
	pos, rest := positional(args, n)
	if code, ok := parse(fs, rest, env, help); !ok {
		return nil, code, false
	}
	if len(pos) != n {
		fmt.Fprintf(env.Stderr, "%s\n\n%s\n", missing, help)
		return nil, ExitUsage, false
	}
	return pos, 0, true
}

type pluginNewCommand struct{ env Env }

func (c *pluginNewCommand) Synopsis() string { return "Write a new plugin module" }

func (c *pluginNewCommand) flags() (*flag.FlagSet, *string, *string, *string, *string, *string) {
	fs := newFlags("plugin new")
	return fs, fs.String("kind", "detector", "detector or tuner"),
		fs.String("dir", "", "where to write the module (default: ./NAME)"),
		fs.String("module", "", "the module path (default: example.com/NAME)"),
		fs.String("sdk-version", "", "require this released sdk (the tag sdk/VERSION), e.g. "+sdk.Version),
		fs.String("sdk-dir", "", "bind to the sdk of this checkout, by a replace directive with a path relative to the module")
}

func (c *pluginNewCommand) Help() string {
	fs, _, _, _, _, _ := c.flags()
	return helpText("plugin new NAME [options]", `
Writes a Go module for a new plugin called NAME (lower case, digits and
dashes): go.mod with the SDK, the plugin with Info, a config struct, a
shared parse for ValidateConfig and Configure, and Check (or Apply and
Status for a tuner), its main, an sdktest conformance test, a README and a
Makefile. It builds and passes its test as written.

The SDK it binds to, said in its go.mod: --sdk-dir's checkout, by a
relative replace; else --sdk-version's release; else, when this
spiderpool-agent is a build in a checkout (CHECKOUT/bin/spiderpool-agent),
that checkout's sdk; else the release `+sdk.Version+` this agent was made with.`, fs)
}

func (c *pluginNewCommand) Run(args []string) int {
	fs, kind, dir, module, sdkVersion, sdkDir := c.flags()
	pos, code, ok := parseOperands(fs, args, 1, c.env, c.Help(), "plugin new needs the plugin's NAME")
	if !ok {
		return code
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
	if err := checkModulePath(s.Module); err != nil {
		fmt.Fprintf(c.env.Stderr, "--module: %v\n", err)
		return ExitUsage
	}
	if *dir == "" {
		*dir = name
	}
	if *sdkDir != "" && *sdkVersion != "" {
		fmt.Fprintln(c.env.Stderr, "--sdk-dir and --sdk-version: give one (a checkout or a release)")
		return ExitUsage
	}
	checkout := *sdkDir
	if checkout == "" && *sdkVersion == "" {
		checkout = checkoutSDK()
	}
	binding := "the released sdk " + sdk.Version + " (the tag sdk/" + sdk.Version + "; --sdk-dir binds to a checkout)"
	if s.SDK == "" {
		s.SDK = sdk.Version
	} else {
		binding = "the released sdk " + s.SDK
	}
	if checkout != "" {
		rel, sum, err := relativeSDK(checkout, *dir)
		if err != nil {
			return fail(c.env, "--sdk-dir: %v", err)
		}
		s.SDKDir, s.SDK, s.sdkSum = rel, "v0.0.0", sum
		binding = "the sdk of the checkout at " + rel + " (relative to the module; --sdk-version binds to a release)"
	}
	written, err := writeScaffold(*dir, s)
	if err != nil {
		return fail(c.env, "plugin new: %v", err)
	}
	for _, f := range written {
		fmt.Fprintln(c.env.Stdout, f)
	}
	fmt.Fprintf(c.env.Stdout, "\nsdk: %s\nnext: cd %s && go mod tidy && make test\n", binding, *dir)
	return ExitOK
}

// checkoutSDK finds the sdk of the checkout this executable was built in
// (CHECKOUT/bin/spiderpool-agent, as `make build` leaves it), or "".
func checkoutSDK() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return ""
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(exe)), "sdk")
	if !isSDKModule(dir) {
		return ""
	}
	return dir
}

// isSDKModule says whether dir holds the sdk module's go.mod.
func isSDKModule(dir string) bool {
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(mod), "\n")
	return strings.TrimSpace(first) == "module "+SDKModule
}

// relativeSDK checks that checkout is the sdk module and returns its path
// relative to the module directory dir, as a replace directive wants it
// ("../x/sdk"), and its go.sum.
func relativeSDK(checkout, dir string) (string, []byte, error) {
	absSDK, err := filepath.Abs(checkout)
	if err != nil {
		return "", nil, err
	}
	if !isSDKModule(absSDK) {
		return "", nil, fmt.Errorf("%s is not the sdk module (no go.mod saying module %s)", checkout, SDKModule)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	rel, err := filepath.Rel(absDir, absSDK)
	if err != nil {
		return "", nil, err
	}
	if !strings.HasPrefix(rel, "..") {
		rel = "./" + rel
	}
	sum, err := os.ReadFile(filepath.Join(absSDK, "go.sum"))
	if err != nil {
		return "", nil, err
	}
	return filepath.ToSlash(rel), sum, nil
}

// dial starts a plugin binary for one-off use, logging to stderr. The
// user named the binary, so it runs wherever it was built (a scaffold's
// bin/ below /tmp, say); when the daemon's owner and mode rule would
// refuse it, that is said once, as a note.
func dial(ctx context.Context, env Env, path, component string, timeout time.Duration, level string) (*supervisor.Conn, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	path = abs
	log := hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: env.Stderr, Level: hclog.LevelFromString(level)})
	agent := sdk.AgentSettings{EnableIPv4: true, EnableIPv6: true, LogLevel: level}
	conn, err := supervisor.Dial(ctx, path, component, timeout, agent, log)
	if err != nil {
		return nil, err
	}
	if conn.WouldRefuse != "" {
		fmt.Fprintf(env.Stderr, "note: the daemon would refuse to run this binary where it is: %s\n"+
			"      (install it into a plugin_dir that only root can write, e.g. %s)\n", conn.WouldRefuse, config.DefaultPluginDir)
	}
	return conn, nil
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
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout+f.timeout*time.Duration(len(reqs)+3))
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
		if failed := printJSON(c.env, results); failed != ExitOK {
			return failed
		}
		return code
	}
	tw := newTable(c.env.Stdout)
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
	pos, code, ok := parseOperands(fs, args, 1, c.env, c.Help(), "plugin docs needs the plugin binary's PATH")
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
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

// typeText is an attribute's type with what its values may be:
// "integer: 0 to 32".
func typeText(a sdk.Attribute) string {
	if c := a.Constraint(); c != "" {
		return a.Type + ": " + c
	}
	return a.Type
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
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", a.Name, strings.ReplaceAll(typeText(a), "|", `\|`), def, strings.ReplaceAll(a.Description, "|", `\|`))
	}
	fmt.Fprintf(w, "\n```hcl\nplugin %q {\n  config {\n", info.Name)
	for _, a := range schema.Attributes {
		switch {
		case a.Required:
			fmt.Fprintf(w, "    %s = # required, %s\n", a.Name, typeText(a))
		case a.Default != "":
			fmt.Fprintf(w, "    # %s = %s\n", a.Name, a.Default)
		default:
			fmt.Fprintf(w, "    # %s = (%s, no default)\n", a.Name, typeText(a))
		}
	}
	_, err := fmt.Fprintln(w, "  }\n}\n```")
	return err
}
