package command

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// --- conflicts

type ipamConflictsCommand struct{ env Env }

func (c *ipamConflictsCommand) Synopsis() string {
	return "Conflicts on allocated addresses: who else claimed them"
}
func (c *ipamConflictsCommand) Help() string {
	fs, _, _ := ipamFlags("ipam conflicts", c.env)
	fs.Duration("since", 0, "only conflicts last seen within this long (0: all kept)")
	return helpText("ipam conflicts [options]", `
Lists the conflicts recorded on allocated addresses, newest first: another
station (MAC) claimed an address a workload holds, by ARP or neighbour
discovery. With a shared (etcd) store the list is the fleet's: NODE is the
node that saw it. Then this agent's busy addresses: pool addresses it does
not hold that were claimed on the wire recently, skipped by allocations.`, fs)
}
func (c *ipamConflictsCommand) Run(args []string) int {
	fs, socket, asJSON := ipamFlags("ipam conflicts", c.env)
	since := fs.Duration("since", 0, "only conflicts last seen within this long (0: all kept)")
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if *since < 0 {
		fmt.Fprintf(c.env.Stderr, "--since: %v is negative\n", *since)
		return ExitUsage
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	res, err := (&api.Client{SocketPath: *socket}).Conflicts(ctx, *since, netip.Addr{})
	if code, done := ipamAnswered(c.env, res, err, *asJSON); done {
		return code
	}
	if len(res.Conflicts) == 0 {
		fmt.Fprintln(c.env.Stdout, "no conflicts recorded")
	} else {
		writeConflicts(c.env.Stdout, res.Conflicts)
	}
	writeBusy(c.env.Stdout, res.Busy)
	return ExitOK
}

func writeConflicts(w io.Writer, list []api.Conflict) {
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPOOL\tWORKLOAD\tINTERFACE\tNODE\tHOLDER MAC\tOTHER MAC\tEVIDENCE\tFIRST SEEN\tLAST SEEN\tFRAMES\tDEFENDED\tEVENTS")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", c.Address, c.Pool, dash(c.Workload), c.Interface, dash(c.Node),
			c.HolderMAC, c.MAC, c.Evidence, c.FirstSeen.Format(time.RFC3339), c.LastSeen.Format(time.RFC3339), c.Frames, c.Defended, c.Events)
	}
	tw.Flush()
}

func writeBusy(w io.Writer, list []api.BusyAddress) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintln(w, "\nbusy on the wire (not allocated here; skipped by allocations until UNTIL):")
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPOOL\tMAC\tEVIDENCE\tSEEN\tUNTIL")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Address, b.Pool, b.MAC, b.Evidence, b.Seen.Format(time.RFC3339), b.Until.Format(time.RFC3339))
	}
	tw.Flush()
}

// showConflicts is the conflicts part of `ipam show`: those of the address,
// or those whose holder is the workload. An agent without the route (an
// older one) shows none.
func showConflicts(ctx context.Context, w io.Writer, cl *api.Client, operand string) {
	addr, _ := netip.ParseAddr(operand)
	res, err := cl.Conflicts(ctx, 0, addr)
	if err != nil {
		return
	}
	var list []api.Conflict
	for _, c := range res.Conflicts {
		if addr.IsValid() || c.Workload == operand {
			list = append(list, c)
		}
	}
	if len(list) > 0 {
		fmt.Fprintf(w, "\nconflicts (another station claimed the address):\n")
		writeConflicts(w, list)
	}
	writeBusy(w, res.Busy)
}

// writeConflictStatus is status's line about the watch.
func writeConflictStatus(w io.Writer, st *api.ConflictStatus) {
	if st == nil {
		return
	}
	fmt.Fprintf(w, "  watch: %d interfaces; %d addresses contested; %d conflicts detected since start; %d busy addresses\n",
		st.Watching, st.Contested, st.Detected, st.Busy)
	if l := st.Latest; l != nil {
		fmt.Fprintf(w, "  latest conflict: %s (pool %s, workload %s) claimed by %s (%s) at %s\n",
			l.Address, l.Pool, dash(l.Workload), l.MAC, l.Evidence, l.FirstSeen.Format(time.RFC3339))
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  watch: %s\n", st.Error)
	}
}
