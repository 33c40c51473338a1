package command

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type statusCommand struct{ env Env }

func (c *statusCommand) Synopsis() string { return "Show the agent's and every plugin's state" }

func (c *statusCommand) flags() (*flag.FlagSet, *string, *bool) {
	fs := newFlags("status")
	return fs, socketFlag(fs, c.env), fs.Bool("json", false, "print JSON")
}

func (c *statusCommand) Help() string {
	fs, _, _ := c.flags()
	return helpText("status [options]", `
Shows the running agent and each plugin: state, pid, restarts, version and
last error; for a tuner, each key it manages. Exits 0 when the agent is
ready, 1 when it is not or does not answer.`, fs)
}

func (c *statusCommand) Run(args []string) int {
	fs, socket, asJSON := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	st, err := (&api.Client{SocketPath: *socket}).Status(ctx)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	ready, _ := st.Ready()
	if *asJSON {
		if code := printJSON(c.env, st); code != ExitOK {
			return code
		}
	} else if err := writeStatus(c.env.Stdout, st); err != nil {
		return fail(c.env, "write: %v", err)
	}
	if !ready {
		return ExitFail
	}
	return ExitOK
}

func writeStatus(w io.Writer, st api.Agent) error {
	ready, waiting := st.Ready()
	verdict := "ready"
	if !st.Started {
		verdict = "starting"
	} else if !ready {
		verdict = "not ready (waiting for " + strings.Join(waiting, ", ") + ")"
	}
	fmt.Fprintf(w, "spiderpool-agent %s, pid %d, up %s: %s\n", st.Version, st.PID,
		time.Since(st.StartedAt).Round(time.Second), verdict)
	if st.Gops != "" {
		fmt.Fprintf(w, "warning: gops listens on %s: any local user can read stacks and profiles and change the GC (gops_port = 0 turns it off)\n", st.Gops)
	}
	fmt.Fprintf(w, "configuration generation %d, loaded %s\n\n", st.ConfigGeneration, st.ConfigLoadedAt.Local().Format(time.RFC3339))
	tw := newTable(w)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tSTATE\tPID\tRESTARTS\tVERSION\tCONFIG\tMESSAGE")
	for _, p := range st.Plugins {
		msg := p.Message
		if p.LastError != "" && p.State != api.Ready {
			msg = strings.TrimSpace(msg + " " + "(last error: " + firstLine(p.LastError) + ")")
		}
		pid := "-"
		if p.PID > 0 {
			pid = fmt.Sprint(p.PID)
		}
		// The generation whose block the plugin runs; a lower one than the
		// agent's says a reload could not reconfigure it.
		gen := "-"
		if p.ConfigGeneration > 0 {
			gen = fmt.Sprint(p.ConfigGeneration)
			if p.ConfigGeneration != st.ConfigGeneration {
				gen += " (stale)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, dash(p.Kind), p.State, pid, p.Restarts, dash(p.Version), gen, msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Plugins) > 0 && st.Plugins[0].Limits != "" {
		// The same for every plugin: the supervisor block sets them.
		fmt.Fprintf(w, "\nplugin limits: %s\n", st.Plugins[0].Limits)
	}
	writeIPAMStatus(w, st.IPAM)
	first := true
	for _, p := range st.Plugins {
		if p.Description == "" && len(p.Capabilities) == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		line := p.Name + ": " + dash(p.Description)
		if len(p.Capabilities) > 0 {
			line += " (needs " + strings.Join(p.Capabilities, ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
	for _, p := range st.Plugins {
		if p.Tuned != nil && len(p.Tuned.Keys) > 0 {
			fmt.Fprintf(w, "\n%s keys:\n", p.Name)
			tw := newTable(w)
			fmt.Fprintln(tw, "KEY\tDESIRED\tACTUAL\tSTATE\tPREVIOUS\tLAST DRIFT\tERROR")
			for _, k := range p.Tuned.Keys {
				drift := "-"
				if !k.LastDrift.IsZero() {
					drift = k.LastDrift.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Key, k.Desired, dash(k.Actual), k.State,
					dash(k.Previous), drift, k.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
