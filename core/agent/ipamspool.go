package agent

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/cnispool"
)

// spoolInterval is how often the CNI spool is looked at while the agent
// runs: a DEL the plugin spooled just as the agent came back, or one the
// agent could not apply at start (etcd down), is applied within it.
const spoolInterval = 5 * time.Second

// applySpool applies the DELs the CNI plugin spooled while it could not
// reach this agent (see core/ipam/cnispool) and removes each file once it
// is applied or names nothing to release. A DEL whose release fails (the
// store is down) stays for the next pass. It returns how many
// allocations it released.
func applySpool(ctx context.Context, m *ipam.IPAM, dir string, log hclog.Logger) int {
	entries, refused, err := cnispool.Scan(dir, time.Now())
	if err != nil {
		log.Error("cannot read the CNI spool: DELs the plugin spooled are not applied", "dir", dir, "error", err)
		return 0
	}
	for _, r := range refused {
		log.Warn("refused a file in the CNI spool", "dir", dir, "file", r.Name, "why", r.Why, "remove_error", r.Kept)
	}
	released := 0
	for _, e := range entries {
		key := ipam.AttachmentKey{ContainerID: e.Record.ContainerID, Interface: e.Record.Interface}
		what, att, err := m.ReleaseSpooled(ctx, key, e.Record.DeletedAt)
		if err != nil {
			log.Warn("cannot apply a spooled CNI DEL yet", "container_id", key.ContainerID, "interface", key.Interface, "error", err)
			continue
		}
		var addrs []string
		for _, a := range att.Addresses {
			addrs = append(addrs, a.Address.Addr().String())
		}
		log.Info("applied a spooled CNI DEL", "container_id", key.ContainerID, "interface", key.Interface, "network", e.Record.Network,
			"deleted_at", e.Record.DeletedAt.Format(time.RFC3339Nano), "result", string(what), "addresses", addrs)
		if what == ipam.SpooledReleased {
			released++
		}
		if err := cnispool.Remove(dir, e); err != nil {
			log.Warn("cannot remove an applied CNI spool file", "dir", dir, "file", e.Name, "error", err)
		}
	}
	return released
}
