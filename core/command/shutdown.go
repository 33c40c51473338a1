package command

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type shutdownCommand struct{ env Env }

func (c *shutdownCommand) Synopsis() string { return "Stop the running daemon and wait for it to exit" }

func (c *shutdownCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("shutdown [options]", `
Asks the running daemon to stop gracefully over its control socket and waits
until the process has exited. Exits 0 once it has, 1 when no daemon answers
or it did not exit in time.`, fs)
}

func (c *shutdownCommand) flags() (*flag.FlagSet, *string, *time.Duration) {
	fs := newFlags("shutdown")
	return fs, socketFlag(fs, c.env),
		fs.Duration("timeout", answerTimeout, "how long to wait for the daemon to exit")
}

func (c *shutdownCommand) Run(args []string) int {
	fs, socket, timeout := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := api.Client{SocketPath: *socket}
	pid, err := client.Shutdown(ctx)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	fmt.Fprintf(c.env.Stdout, "spiderpool-agent (pid %d) is stopping\n", pid)
	if err := waitExit(ctx, pid); err != nil {
		return fail(c.env, "pid %d did not exit within %v: %v", pid, *timeout, err)
	}
	fmt.Fprintf(c.env.Stdout, "spiderpool-agent (pid %d) has exited\n", pid)
	return ExitOK
}

// waitExit polls until pid is gone. The daemon is not our child, so there
// is nothing to wait on but its existence.
func waitExit(ctx context.Context, pid int) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || zombie(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// zombie reports whether pid has exited but is not reaped yet (its parent,
// e.g. a shell or a test, has not waited for it).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain ") ".
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
