package command

import (
	"context"
	"flag"
	"strconv"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/telemetry"
)

type metricCommand struct{ env Env }

func (c *metricCommand) Synopsis() string { return "Print the local metrics" }

func (c *metricCommand) flags() (*flag.FlagSet, *int, *string) {
	port := 5711
	if v, ok := c.env.Lookup("SPIDERPOOL_METRIC_HTTP_PORT"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			port = n
		}
	}
	fs := newFlags("metric")
	return fs, fs.Int("port", port, "http server port of local metric (SPIDERPOOL_METRIC_HTTP_PORT)"),
		fs.String("address", "127.0.0.1", "address of the metrics server")
}

func (c *metricCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("metric [options]", `
Prints the agent's metrics in Prometheus text format. The metrics server runs
only when metrics are enabled (SPIDERPOOL_ENABLED_METRIC=true or
metrics { enabled = true }).`, fs)
}

func (c *metricCommand) Run(args []string) int {
	fs, port, address := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if *port < 1 || *port > 65535 {
		return fail(c.env, "--port %d is not a port number (1-65535)", *port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := telemetry.Fetch(ctx, *address, *port)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	_, _ = c.env.Stdout.Write(body)
	return ExitOK
}
