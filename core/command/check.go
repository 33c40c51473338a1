package command

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type checkCommand struct{ env Env }

func (c *checkCommand) Synopsis() string { return "Check addresses before a workload gets them" }

// addressList collects --ip and --gateway in order: a --gateway belongs to
// the --ip before it.
type addressList struct{ addrs []api.AddressRequest }

type ipFlag struct{ l *addressList }

func (f ipFlag) String() string { return "" }
func (f ipFlag) Set(v string) error {
	f.l.addrs = append(f.l.addrs, api.AddressRequest{Address: v})
	return nil
}

type gatewayFlag struct{ l *addressList }

func (f gatewayFlag) String() string { return "" }
func (f gatewayFlag) Set(v string) error {
	if len(f.l.addrs) == 0 {
		return errors.New("--gateway must follow the --ip it belongs to")
	}
	last := &f.l.addrs[len(f.l.addrs)-1]
	if last.Gateway != "" {
		return fmt.Errorf("--ip %s already has --gateway %s", last.Address, last.Gateway)
	}
	last.Gateway = v
	return nil
}

type checkFlags struct {
	socket       *string
	iface, netns string
	asJSON       bool
	timeout      time.Duration
	list         addressList
}

func (c *checkCommand) flags() (*flag.FlagSet, *checkFlags) {
	f := &checkFlags{}
	fs := newFlags("check")
	f.socket = socketFlag(fs, c.env)
	fs.StringVar(&f.iface, "interface", "", "the workload's interface (required)")
	fs.StringVar(&f.netns, "netns", "", "the workload's network namespace, e.g. /var/run/netns/NAME or /proc/PID/ns/net")
	fs.Var(ipFlag{&f.list}, "ip", "an address in CIDR form, e.g. 10.0.0.7/24 (repeatable, required)")
	fs.Var(gatewayFlag{&f.list}, "gateway", "the gateway of the --ip before it")
	fs.BoolVar(&f.asJSON, "json", false, "print the agent's JSON answer")
	fs.DurationVar(&f.timeout, "timeout", workTimeout, "how long to wait for the answer")
	return fs, f
}

func (c *checkCommand) Help() string {
	fs, _ := c.flags()
	return helpText("check --interface IF [--netns PATH] --ip CIDR [--gateway IP] [--ip ...] [options]", `
Asks the running agent whether the addresses may be given to a workload:
every enabled detector answers for each address (the built-ins: is it in use
on the wire, does its gateway answer; and any third-party detector). A block
shows its kind: what IPAM would do with it (in_use: quarantine and try the
next, policy: skip and try the next, unreachable or fail: refuse).

Exit codes: 0 every address passed, 1 an address is blocked, 2 the check
could not be made (bad arguments, no agent, a detector that could not decide).`, fs)
}

func (c *checkCommand) Run(args []string) int {
	fs, f := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if f.iface == "" || len(f.list.addrs) == 0 {
		fmt.Fprintf(c.env.Stderr, "check needs --interface and at least one --ip\n\n%s\n", c.Help())
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	req := api.CheckRequest{Interface: f.iface, Netns: f.netns, Addresses: f.list.addrs}
	resp, status, err := (&api.Client{SocketPath: *f.socket}).Check(ctx, req)
	if err != nil {
		var apiErr *api.APIError
		if errors.As(err, &apiErr) && apiErr.Field != "" {
			fmt.Fprintf(c.env.Stderr, "spiderpool-agent: %s: %s\n", flagOf(apiErr.Field), apiErr.ErrorBody.Error)
			return ExitUsage
		}
		fmt.Fprintf(c.env.Stderr, "spiderpool-agent: %v\n", err)
		return ExitUsage
	}
	if status != http.StatusOK {
		fmt.Fprintf(c.env.Stderr, "spiderpool-agent: unexpected HTTP status %d\n", status)
		return ExitUsage
	}
	if f.asJSON {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp)
	} else {
		writeCheck(c.env, resp)
	}
	return checkExit(resp)
}

// checkExit is 0 when everything passed, 1 when an address is blocked, 2
// when nothing blocked but a detector could not decide.
func checkExit(resp api.CheckResult) int {
	code := ExitOK
	for _, a := range resp.Addresses {
		switch a.Verdict {
		case api.VerdictBlock:
			return ExitFail
		case api.VerdictError:
			code = ExitUsage
		}
	}
	return code
}

func writeCheck(env Env, resp api.CheckResult) {
	for _, a := range resp.Addresses {
		what := a.Address
		if a.Gateway != "" {
			what += " via " + a.Gateway
		}
		fmt.Fprintf(env.Stdout, "%s %s\n", strings.ToUpper(string(a.Verdict)), what)
		for _, d := range a.Detectors {
			reason := d.Reason
			if d.BlockKind != "" {
				reason += " [" + string(d.BlockKind) + "]"
			}
			fmt.Fprintf(env.Stdout, "  %-16s %-5s %s (%.1fms)\n", d.Name, d.Verdict, reason, d.DurationMs)
		}
	}
	fmt.Fprintf(env.Stdout, "verdict: %s (%.1fms)\n", resp.Verdict, resp.DurationMs)
}

// flagOf names the command-line flag behind an API field.
func flagOf(field string) string {
	switch {
	case field == "interface":
		return "--interface"
	case field == "netns":
		return "--netns"
	case strings.HasSuffix(field, ".gateway"):
		return "--gateway (" + field + ")"
	case strings.HasPrefix(field, "addresses"):
		return "--ip (" + field + ")"
	}
	return field
}
