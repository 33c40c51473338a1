package command

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
)

type metricCommand struct{ env Env }

func (c *metricCommand) Synopsis() string { return "Print the local metrics" }

func (c *metricCommand) flags() (*flag.FlagSet, *int, *string, *string) {
	fs, dir := loadFlags("metric", c.env)
	return fs, fs.Int("port", config.DefaultMetricsPort, "http server port of local metric; default: metrics.port of the configuration (HCL, SPIDERPOOL_METRIC_HTTP_PORT)"),
		fs.String("address", "127.0.0.1", "address of the metrics server"), dir
}

func (c *metricCommand) Help() string {
	fs, _, _, _ := c.flags()
	return helpText("metric [options]", `
Prints the agent's metrics in Prometheus text format. The metrics server runs
only when metrics are enabled (SPIDERPOOL_ENABLED_METRIC=true or
metrics { enabled = true }). Without --port the port is the configuration's
metrics.port, read as the daemon reads it (--config-dir, environment).`, fs)
}

func (c *metricCommand) Run(args []string) int {
	fs, port, address, dir := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "port" })
	if set && (*port < 1 || *port > 65535) {
		fmt.Fprintf(c.env.Stderr, "--port %d is not a port number (1-65535)\n\n%s\n", *port, c.Help())
		return ExitUsage
	}
	hint := ""
	if !set {
		*port, hint = c.configuredPort(fs, *dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	body, err := telemetry.Fetch(ctx, *address, *port)
	if err != nil {
		return fail(c.env, "%v%s", err, hint)
	}
	_, _ = c.env.Stdout.Write(body)
	return ExitOK
}

// configuredPort is metrics.port as the daemon would load it; when the
// configuration cannot be loaded, SPIDERPOOL_METRIC_HTTP_PORT or the default,
// with a note on stderr. When --config-dir was not given and the default is
// absent (any host but a Spiderpool pod) there is nothing to warn about:
// the port is the default, and the hint it returns is printed only if
// nothing answers there.
func (c *metricCommand) configuredPort(fs *flag.FlagSet, dir string) (int, string) {
	port := config.DefaultMetricsPort
	if v, ok := c.env.Lookup("SPIDERPOOL_METRIC_HTTP_PORT"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65536 {
			port = n
		}
	}
	if defaultDirMissing(fs, dir) {
		return port, fmt.Sprintf(" (port %d: no configuration at %s; pass --config-dir, the package's is %s, or --port)", port, dir, PackagedConfigDir)
	}
	cfg, err := config.Load(config.LoadOptions{ConfigDir: dir, Lookup: c.env.Lookup})
	if err == nil {
		return cfg.Metrics.Port, ""
	}
	fmt.Fprintf(c.env.Stderr, "spiderpool-agent: the configuration in %s does not load (%v); using port %d\n", dir, firstLine(err.Error()), port)
	return port, ""
}
