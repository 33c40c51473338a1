package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type reloadCommand struct{ env Env }

func (c *reloadCommand) Synopsis() string { return "Reload the running daemon's configuration" }

func (c *reloadCommand) flags() (*flag.FlagSet, *string, *time.Duration) {
	fs := newFlags("reload")
	return fs, socketFlag(fs, c.env),
		fs.Duration("timeout", 2*time.Minute, "how long to wait for the reload")
}

func (c *reloadCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("reload [options]", `
Asks the running daemon to load its configuration again, as SIGHUP does, and
waits for the answer. The reload is atomic: every enabled plugin checks its
new config block first (a dry run), and if one refuses, nothing is changed
and the error names the file:line:column. Exits 0 when the new configuration
is in force, 1 when it was refused or no daemon answers.`, fs)
}

func (c *reloadCommand) Run(args []string) int {
	fs, socket, timeout := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cl := &api.Client{SocketPath: *socket}
	if err := cl.Reload(ctx); err != nil {
		// The daemon's reason, not HTTP's words for it: the operator
		// wants the file:line:col of what was refused.
		var apiErr *api.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorBody.Error != "" {
			return fail(c.env, "%s", apiErr.ErrorBody.Error)
		}
		return fail(c.env, "%v", err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		fmt.Fprintln(c.env.Stdout, "configuration reloaded")
		return ExitOK
	}
	fmt.Fprintf(c.env.Stdout, "configuration reloaded (generation %d)\n", st.ConfigGeneration)
	return ExitOK
}
