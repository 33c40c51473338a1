package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/cli"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// ipamTimeout bounds one IPAM command: an allocation with conflicts costs
// a reply window per candidate tried.
const ipamTimeout = 30 * time.Second

// ipamCommands are the `ipam ...` subcommands, for Run's table.
func ipamCommands(env Env) map[string]cli.CommandFactory {
	return map[string]cli.CommandFactory{
		"ipam pools":    func() (cli.Command, error) { return &ipamPoolsCommand{env: env}, nil },
		"ipam allocate": func() (cli.Command, error) { return &ipamAllocateCommand{env: env}, nil },
		"ipam list":     func() (cli.Command, error) { return &ipamListCommand{env: env}, nil },
		"ipam show":     func() (cli.Command, error) { return &ipamShowCommand{env: env}, nil },
		"ipam release":  func() (cli.Command, error) { return &ipamReleaseCommand{env: env}, nil },
		"ipam gc":       func() (cli.Command, error) { return &ipamGCCommand{env: env}, nil },
		"ipam backup":   func() (cli.Command, error) { return &ipamBackupCommand{env: env}, nil },
		"ipam restore":  func() (cli.Command, error) { return &ipamRestoreCommand{env: env}, nil },
		"ipam check":    func() (cli.Command, error) { return &ipamCheckCommand{env: env}, nil },
	}
}

// ipamFlags adds the options every ipam subcommand has.
func ipamFlags(name string, env Env) (*flag.FlagSet, *string, *bool) {
	fs := newFlags(name)
	return fs, socketFlag(fs, env), fs.Bool("json", false, "print JSON")
}

func ipamCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ipamTimeout)
}

// ipamAnswered ends an ipam command whose call failed (ipamFail) or that
// was asked for --json; otherwise done is false and the command prints its
// text.
func ipamAnswered(env Env, v any, err error, asJSON bool) (code int, done bool) {
	switch {
	case err != nil:
		return ipamFail(env, err), true
	case asJSON:
		return printJSON(env, v), true
	}
	return ExitOK, false
}

// ipamAsk runs an ipam subcommand that has only the options every one has:
// it parses args, makes the one call and ends the command as ipamAnswered
// does; when done is false the command prints res as text.
func ipamAsk[T any](env Env, name, help string, args []string, call func(*api.Client, context.Context) (T, error)) (res T, code int, done bool) {
	fs, socket, asJSON := ipamFlags(name, env)
	if code, ok := parse(fs, args, env, help); !ok {
		return res, code, true
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	res, err := call(&api.Client{SocketPath: *socket}, ctx)
	code, done = ipamAnswered(env, res, err, *asJSON)
	return res, code, done
}

// ipamFail prints an API error with what the agent said; a skipped list
// explains a conflict.
func ipamFail(env Env, err error) int {
	var ae *api.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorBody.Error
		if ae.Field != "" && !strings.HasPrefix(msg, ae.Field) {
			msg = ae.Field + ": " + msg
		}
		fmt.Fprintf(env.Stderr, "spiderpool-agent: %s\n", msg)
		for _, s := range ae.Skipped {
			fmt.Fprintf(env.Stderr, "  skipped %s (pool %s): %s\n", s.Address, s.Pool, s.Reason)
		}
		return ExitFail
	}
	return fail(env, "%v", err)
}

// --- pools

type ipamPoolsCommand struct{ env Env }

func (c *ipamPoolsCommand) Synopsis() string { return "Show each pool's size and usage" }
func (c *ipamPoolsCommand) Help() string {
	fs, _, _ := ipamFlags("ipam pools", c.env)
	return helpText("ipam pools [options]", "Shows each pool: family, subnet, size, allocated, reserved, quarantined, free, busy (free but claimed on the wire recently: skipped by allocations), layer-2 domain.", fs)
}
func (c *ipamPoolsCommand) Run(args []string) int {
	pools, code, done := ipamAsk(c.env, "ipam pools", c.Help(), args, (*api.Client).Pools)
	if done {
		return code
	}
	writePools(c.env.Stdout, pools)
	return ExitOK
}

func writePools(w io.Writer, pools []api.PoolUsage) {
	tw := newTable(w)
	fmt.Fprintln(tw, "POOL\tFAMILY\tSUBNET\tGATEWAY\tSIZE\tALLOCATED\tRESERVED\tQUARANTINED\tFREE\tBUSY\tDETECTION\tDOMAIN")
	for _, p := range pools {
		var det []string
		if p.ConflictDetection {
			det = append(det, "conflict")
		}
		if p.GatewayDetection {
			det = append(det, "gateway")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.Family, p.Subnet, dash(p.Gateway),
			p.Size, p.Allocated, p.Reserved, p.Quarantined, p.Free, p.Busy, dash(strings.Join(det, ",")), dash(p.Domain))
	}
	tw.Flush()
}

// --- allocate

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

type ipamAllocateCommand struct{ env Env }

func (c *ipamAllocateCommand) Synopsis() string { return "Allocate addresses for a workload" }
func (c *ipamAllocateCommand) flags() (*flag.FlagSet, *string, *bool, *api.AllocateRequest, *multi) {
	fs, socket, asJSON := ipamFlags("ipam allocate", c.env)
	r := &api.AllocateRequest{}
	pools := &multi{}
	fs.StringVar(&r.ContainerID, "container-id", "", "key of the allocation, with --interface (CNI's container id; for a VM, its name)")
	fs.StringVar(&r.Interface, "interface", "", "the workload's interface, as seen in --netns")
	fs.StringVar(&r.Netns, "netns", "", "the workload's network namespace path; empty: the agent's own")
	fs.StringVar(&r.Workload, "workload", "", "workload name for history and sticky addresses; default the container id")
	fs.Var(pools, "pool", "pool to allocate from; repeat once for dual stack (one per family)")
	return fs, socket, asJSON, r, pools
}
func (c *ipamAllocateCommand) Help() string {
	fs, _, _, _, _ := c.flags()
	return helpText("ipam allocate --container-id ID --interface IF --pool POOL [--pool POOL6] [options]", `
Allocates one address from each pool, checked on the wire by the detectors
the pool enables, and prints them. Repeating the same container id and
interface prints the same addresses. Exit 0 allocated, 1 failed.`, fs)
}
func (c *ipamAllocateCommand) Run(args []string) int {
	fs, socket, asJSON, r, pools := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	r.Pools = *pools
	if err := r.Validate(); err != nil {
		var fe *api.FieldError
		if errors.As(err, &fe) {
			flagName := map[string]string{"container_id": "--container-id", "interface": "--interface", "netns": "--netns", "workload": "--workload", "pools": "--pool"}[strings.SplitN(fe.Field, "[", 2)[0]]
			if flagName != "" {
				fmt.Fprintf(c.env.Stderr, "%s: %s\n\n%s\n", flagName, fe.Msg, c.Help())
				return ExitUsage
			}
		}
		fmt.Fprintf(c.env.Stderr, "%v\n\n%s\n", err, c.Help())
		return ExitUsage
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	att, err := (&api.Client{SocketPath: *socket}).Allocate(ctx, *r)
	if code, done := ipamAnswered(c.env, att, err, *asJSON); done {
		return code
	}
	writeAttachment(c.env.Stdout, att)
	return ExitOK
}

func writeAttachment(w io.Writer, att api.Attachment) {
	for _, ip := range att.Addresses {
		gw := ""
		if ip.Gateway.IsValid() {
			gw = " via " + ip.Gateway.String()
		}
		fmt.Fprintf(w, "%s%s (pool %s)\n", ip.Address, gw, ip.Pool)
	}
	for _, s := range att.Skipped {
		q := "skipped"
		if s.Quarantined {
			q = "quarantined"
		}
		fmt.Fprintf(w, "  %s %s (pool %s): %s\n", q, s.Address, s.Pool, s.Reason)
	}
	for _, n := range att.NotChecked {
		fmt.Fprintf(w, "  %s detection not run (pool %s): %s\n", n.Detection, n.Pool, n.Reason)
	}
}

// --- list

type ipamListCommand struct{ env Env }

func (c *ipamListCommand) Synopsis() string { return "List allocations" }
func (c *ipamListCommand) flags() (*flag.FlagSet, *string, *bool, *string, *string) {
	fs, socket, asJSON := ipamFlags("ipam list", c.env)
	return fs, socket, asJSON, fs.String("pool", "", "only allocations from this pool"), fs.String("workload", "", "only this workload's allocations")
}
func (c *ipamListCommand) Help() string {
	fs, _, _, _, _ := c.flags()
	return helpText("ipam list [--pool POOL] [--workload NAME] [options]", `
Lists the allocations: addresses, container id, interface, workload, state,
namespace, origin (cni:NETWORK for a CNI ADD of that network, api for the
control API and this CLI, - when recorded before origins were) and since.`, fs)
}
func (c *ipamListCommand) Run(args []string) int {
	fs, socket, asJSON, pool, workload := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	client := &api.Client{SocketPath: *socket}
	if *asJSON {
		list, err := client.List(ctx, *pool, *workload)
		if err != nil {
			return ipamFail(c.env, err)
		}
		return printJSON(c.env, list)
	}
	// The table's columns only: with thousands of allocations, decoding
	// them whole was most of the command's time. The time is printed as
	// stored (RFC 3339, UTC), to the second: parsing it only to format it
	// again cost a parse per row.
	var list []struct {
		api.AttachmentKey
		Netns     string `json:"netns"`
		Workload  string `json:"workload"`
		State     string `json:"state"`
		Addresses []struct {
			Address string `json:"address"`
		} `json:"addresses"`
		Created string      `json:"created"`
		Origin  *api.Origin `json:"origin"`
	}
	if err := client.ListAs(ctx, *pool, *workload, &list); err != nil {
		return ipamFail(c.env, err)
	}
	tw := newTable(c.env.Stdout)
	fmt.Fprintln(tw, "ADDRESSES\tCONTAINER ID\tINTERFACE\tWORKLOAD\tSTATE\tNETNS\tORIGIN\tSINCE")
	// A row is assembled in one buffer and written whole: a formatted
	// print per row was half of the table's cost at 5,000 rows.
	var row []byte
	for _, a := range list {
		row = row[:0]
		for i, ip := range a.Addresses {
			if i > 0 {
				row = append(row, ',')
			}
			row = append(row, ip.Address...)
		}
		for _, col := range []string{a.ContainerID, a.Interface, a.Workload, a.State, dash(a.Netns), a.Origin.String(), wholeSeconds(a.Created)} {
			row = append(row, '\t')
			row = append(row, col...)
		}
		row = append(row, '\n')
		if _, err := tw.Write(row); err != nil {
			break
		}
	}
	tw.Flush()
	return ExitOK
}

// wholeSeconds cuts the fraction from an RFC 3339 time ("...T10:00:00.123Z"
// prints as "...T10:00:00Z").
func wholeSeconds(t string) string {
	dot := strings.IndexByte(t, '.')
	if dot < 0 {
		return t
	}
	end := dot + 1
	for end < len(t) && t[end] >= '0' && t[end] <= '9' {
		end++
	}
	return t[:dot] + t[end:]
}

// --- show

type ipamShowCommand struct{ env Env }

func (c *ipamShowCommand) Synopsis() string { return "Who had an address, or a workload's history" }
func (c *ipamShowCommand) Help() string {
	fs, _, _ := ipamFlags("ipam show", c.env)
	return helpText("ipam show ADDRESS|WORKLOAD [options]", `
With an address: its state now in each pool that holds a record of it
(allocated, reserved, or quarantined with the cause, the MAC that answered
for it and until when), then every workload that held it, and when (newest
first); --json prints {"address", "records", "history"}.
With a workload name: its allocation history (newest first, at most
ipam.max_history_records entries). ORIGIN is who allocated it: cni:NETWORK,
api, or - (recorded before origins were).`, fs)
}
func (c *ipamShowCommand) Run(args []string) int {
	fs, socket, asJSON := ipamFlags("ipam show", c.env)
	// The operand may come before the options.
	var operand string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		operand, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args, c.env, c.Help()); !ok {
		return code
	}
	rest := fs.Args()
	if operand == "" && len(rest) > 0 {
		operand, rest = rest[0], rest[1:]
	}
	if operand == "" || len(rest) > 0 {
		fmt.Fprintf(c.env.Stderr, "give one ADDRESS or WORKLOAD\n\n%s\n", c.Help())
		return ExitUsage
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	cl := &api.Client{SocketPath: *socket}
	var recs []api.HistoryRecord
	var err error
	if addr, perr := netip.ParseAddr(operand); perr == nil {
		info, err := cl.Address(ctx, addr)
		if code, done := ipamAnswered(c.env, info, err, *asJSON); done {
			return code
		}
		printAddressRecords(c.env, info)
		recs = info.History
	} else {
		recs, err = cl.HistoryOfWorkload(ctx, operand)
		if code, done := ipamAnswered(c.env, recs, err, *asJSON); done {
			return code
		}
	}
	if len(recs) == 0 {
		fmt.Fprintf(c.env.Stdout, "no history for %s\n", operand)
		showConflicts(ctx, c.env.Stdout, cl, operand)
		return ExitOK
	}
	tw := newTable(c.env.Stdout)
	fmt.Fprintln(tw, "ADDRESS\tPOOL\tWORKLOAD\tCONTAINER ID\tINTERFACE\tORIGIN\tALLOCATED\tRELEASED\tSKIPPED")
	for _, r := range recs {
		rel := "-"
		if !r.ReleasedAt.IsZero() {
			rel = r.ReleasedAt.Format(time.RFC3339)
		}
		var sk []string
		for _, s := range r.Skipped {
			sk = append(sk, s.Address.String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Address, r.Pool, r.Workload, r.ContainerID, r.Interface,
			r.Origin, r.AllocatedAt.Format(time.RFC3339), rel, dash(strings.Join(sk, ",")))
	}
	tw.Flush()
	showConflicts(ctx, c.env.Stdout, cl, operand)
	return ExitOK
}

// printAddressRecords prints an address's state in the pools: free, or
// one line per pool holding a record of it.
func printAddressRecords(env Env, info api.AddressInfo) {
	if len(info.Records) == 0 {
		fmt.Fprintf(env.Stdout, "%s: free\n", info.Address)
		for _, b := range info.Busy {
			fmt.Fprintf(env.Stdout, "  but busy on the wire (pool %s): claimed by %s at %s (%s); allocations skip it until %s\n",
				b.Pool, b.MAC, b.Seen.Format(time.RFC3339), b.Evidence, b.Until.Format(time.RFC3339))
		}
		fmt.Fprintln(env.Stdout)
		return
	}
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "ADDRESS\tPOOL\tSTATE\tHOLDER\tMAC\tSINCE\tUNTIL\tCAUSE")
	for _, r := range info.Records {
		holder, until := "-", "-"
		if r.Owner.ContainerID != "" {
			holder = r.Owner.ContainerID + "/" + r.Owner.Interface
		}
		if !r.Until.IsZero() {
			until = r.Until.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Address, r.Pool, r.State, holder, dash(r.MAC),
			r.Since.Format(time.RFC3339), until, dash(r.Reason))
	}
	tw.Flush()
	fmt.Fprintln(env.Stdout)
}

// --- release

type ipamReleaseCommand struct{ env Env }

func (c *ipamReleaseCommand) Synopsis() string { return "Release an allocation or a workload's" }
func (c *ipamReleaseCommand) flags() (*flag.FlagSet, *string, *bool, *string, *string, *string) {
	fs, socket, asJSON := ipamFlags("ipam release", c.env)
	return fs, socket, asJSON, fs.String("container-id", "", "key of the allocation, with --interface"),
		fs.String("interface", "", "interface of the allocation"), fs.String("workload", "", "release every allocation of this workload instead")
}
func (c *ipamReleaseCommand) Help() string {
	fs, _, _, _, _, _ := c.flags()
	return helpText("ipam release (--container-id ID --interface IF | --workload NAME) [options]", `
Releases the addresses. Releasing what is not held succeeds (and says so).`, fs)
}
func (c *ipamReleaseCommand) Run(args []string) int {
	fs, socket, asJSON, cid, iface, workload := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	byKey := *cid != "" || *iface != ""
	if byKey == (*workload != "") {
		fmt.Fprintf(c.env.Stderr, "give either --container-id and --interface, or --workload\n\n%s\n", c.Help())
		return ExitUsage
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	cl := &api.Client{SocketPath: *socket}
	var res api.ReleaseResponse
	var err error
	if byKey {
		req := api.ReleaseRequest{ContainerID: *cid, Interface: *iface}
		if verr := req.Validate(); verr != nil {
			fmt.Fprintf(c.env.Stderr, "%v\n\n%s\n", verr, c.Help())
			return ExitUsage
		}
		res, err = cl.Release(ctx, req)
	} else {
		res, err = cl.ReleaseWorkload(ctx, *workload)
	}
	if code, done := ipamAnswered(c.env, res, err, *asJSON); done {
		return code
	}
	if len(res.Released) == 0 {
		fmt.Fprintln(c.env.Stdout, "nothing was held")
	}
	for _, a := range res.Released {
		for _, ip := range a.Addresses {
			fmt.Fprintf(c.env.Stdout, "released %s (pool %s) of container %s interface %s\n", ip.Address, ip.Pool, a.ContainerID, a.Interface)
		}
	}
	return ExitOK
}

// --- gc

type ipamGCCommand struct{ env Env }

func (c *ipamGCCommand) Synopsis() string { return "Run IPAM garbage collection now" }
func (c *ipamGCCommand) Help() string {
	fs, _, _ := ipamFlags("ipam gc", c.env)
	return helpText("ipam gc [options]", `
Runs one garbage collection pass: an allocation whose network namespace is
gone is suspected at its first look and released at a later pass, at least
ipam.gc_grace_period after, if still gone and unchanged.`, fs)
}
func (c *ipamGCCommand) Run(args []string) int {
	res, code, done := ipamAsk(c.env, "ipam gc", c.Help(), args, (*api.Client).GC)
	if done {
		return code
	}
	fmt.Fprintf(c.env.Stdout, "checked %d, suspected %d, reclaimed %d, expired quarantines removed %d (grace period %v), workloads pruned %d (%d records)\n",
		res.Checked, len(res.Suspected), len(res.Reclaimed), res.QuarantineExpired, res.GracePeriod, res.WorkloadsPruned, res.RecordsPruned)
	for _, k := range res.Reclaimed {
		fmt.Fprintf(c.env.Stdout, "  reclaimed container %s interface %s\n", k.ContainerID, k.Interface)
	}
	return ExitOK
}

// writeIPAMStatus is status's IPAM section.
func writeIPAMStatus(w io.Writer, st *api.Status) {
	if st == nil {
		return
	}
	if !st.Enabled {
		fmt.Fprintf(w, "\nIPAM: off (%s)\n", st.Reason)
		return
	}
	if s := st.Store; s != nil {
		state := "up"
		if !s.Up {
			state = "DOWN"
		}
		fmt.Fprintf(w, "\nIPAM: on, pools from %s, store %s (node %s): %s\n", st.Dir, s.Kind, s.Node, state)
		if s.Error != "" {
			fmt.Fprintf(w, "  store: %s\n", s.Error)
		}
	} else {
		fmt.Fprintf(w, "\nIPAM: on, pools from %s, store %s\n", st.Dir, st.DBPath)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
	if ws := st.Workloads; ws != nil {
		counted := "not counted yet (at the first GC pass)"
		if !ws.CountedAt.IsZero() {
			counted = fmt.Sprintf("%d live, %d retained", ws.Live, ws.Retained)
		}
		fmt.Fprintf(w, "  workloads: %s; retention %v; pruned %d (%d records) since start\n", counted, ws.Retention, ws.Pruned, ws.RecordsPruned)
	}
	writeConflictStatus(w, st.Conflicts)
	if len(st.Pools) > 0 {
		writePools(w, st.Pools)
	}
}
