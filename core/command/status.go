package command

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
)

type statusCommand struct{ env Env }

func (c *statusCommand) Synopsis() string { return "Show the agent's and every plugin's state" }

func (c *statusCommand) flags() (*flag.FlagSet, *string, *bool) {
	fs := newFlags("status")
	return fs, fs.String("socket", socketDefault(c.env), "control API unix socket"), fs.Bool("json", false, "print JSON")
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := (&control.Client{SocketPath: *socket}).Status(ctx)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	ready, _ := st.Ready()
	if *asJSON {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fail(c.env, "write: %v", err)
		}
	} else if err := writeStatus(c.env.Stdout, st); err != nil {
		return fail(c.env, "write: %v", err)
	}
	if !ready {
		return ExitFail
	}
	return ExitOK
}

func writeStatus(w io.Writer, st state.Agent) error {
	ready, waiting := st.Ready()
	verdict := "ready"
	if !st.Started {
		verdict = "starting"
	} else if !ready {
		verdict = "not ready (waiting for " + strings.Join(waiting, ", ") + ")"
	}
	fmt.Fprintf(w, "spiderpool-agent %s, pid %d, up %s: %s\n\n", st.Version, st.PID,
		time.Since(st.StartedAt).Round(time.Second), verdict)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tSTATE\tPID\tRESTARTS\tVERSION\tMESSAGE")
	for _, p := range st.Plugins {
		msg := p.Message
		if p.LastError != "" && p.State != state.Ready {
			msg = strings.TrimSpace(msg + " " + "(last error: " + firstLine(p.LastError) + ")")
		}
		pid := "-"
		if p.PID > 0 {
			pid = fmt.Sprint(p.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, dash(p.Kind), p.State, pid, p.Restarts, dash(p.Version), msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Plugins) > 0 && st.Plugins[0].Limits != "" {
		// The same for every plugin: the supervisor block sets them.
		fmt.Fprintf(w, "\nplugin limits: %s\n", st.Plugins[0].Limits)
	}
	writeIPAMStatus(w, st.IPAM)
	for _, p := range st.Plugins {
		if keys := tunedKeys(p.Detail); len(keys) > 0 {
			fmt.Fprintf(w, "\n%s keys:\n", p.Name)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tDESIRED\tACTUAL\tSTATE\tPREVIOUS\tLAST DRIFT\tERROR")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Key, k.Desired, dash(k.Actual), k.State,
					dash(k.Previous), dash(k.LastDrift), k.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// tunedKey is the per-key health detail a tuner reports.
type tunedKey struct {
	Key       string `json:"key"`
	Desired   string `json:"desired"`
	Actual    string `json:"actual"`
	State     string `json:"state"`
	Previous  string `json:"previous"`
	Error     string `json:"error"`
	LastDrift string `json:"last_drift"`
}

// tunedKeys reads a detail that is a list of keys or an object with a
// "keys" list; anything else is not a tuner's.
func tunedKeys(detail json.RawMessage) []tunedKey {
	if len(detail) == 0 {
		return nil
	}
	var keys []tunedKey
	if json.Unmarshal(detail, &keys) != nil {
		var wrapped struct {
			Keys []tunedKey `json:"keys"`
		}
		if json.Unmarshal(detail, &wrapped) != nil {
			return nil
		}
		keys = wrapped.Keys
	}
	out := keys[:0]
	for _, k := range keys {
		if k.Key != "" {
			out = append(out, k)
		}
	}
	return out
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
