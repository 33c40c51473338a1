package supervisor

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Conn is a plugin process started for one-off use, without a daemon:
// `plugin run` and `plugin docs`.
type Conn struct {
	Info   sdk.Info
	Schema sdk.Schema
	// Client calls the plugin; bound every call with a context.
	Client *sdk.Client
	// WouldRefuse is why the daemon would refuse to run this binary (its
	// owner and mode rule), or empty: Dial runs it anyway, since its user
	// named it.
	WouldRefuse string
	inst        *instance
	log         hclog.Logger
}

// Dial starts the plugin binary at path as the daemon does (process group,
// lifeline, handshake, API version check) and asks who it is; component,
// when not empty, is the component of the plugin set at path to serve.
// timeout bounds each call; the caller must Close the Conn.
func Dial(ctx context.Context, path, component string, timeout time.Duration, agent sdk.AgentSettings, log hclog.Logger) (*Conn, error) {
	opts := Options{Logger: log, Agent: agent, UserNamed: true}
	opts.setDefaults()
	inst, err := launch(ctx, Spec{Path: path, Component: component, Timeout: timeout}, &opts, opts.Logger, newLogLimiter(opts.Limits, nil), newReaper())
	if err != nil {
		return nil, err
	}
	return &Conn{Info: inst.info, Schema: inst.schema, Client: inst.rpc, WouldRefuse: inst.wouldRefuse, inst: inst, log: opts.Logger}, nil
}

// Close asks the plugin to shut down within ctx and ends its process.
func (c *Conn) Close(ctx context.Context) { c.inst.stop(ctx, c.log, true) }
