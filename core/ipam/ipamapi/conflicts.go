package ipamapi

import (
	"context"
	"net/netip"
	"net/url"
	"time"
)

// ConflictsPath lists the conflict events recorded in the store: on a
// shared store, the whole fleet's.
const ConflictsPath = "/v1/ipam/conflicts"

// Conflict is an address held by an allocation and claimed on the wire by
// another station (RFC 5227 section 2.4): an ARP packet whose sender IP is
// the address, a neighbour advertisement for it, a probe or DAD
// solicitation for it, from a MAC that is not the holder's.
type Conflict struct {
	Address netip.Addr `json:"address"`
	Pool    string     `json:"pool"`
	Domain  string     `json:"domain,omitempty"`
	// Node is the node whose watcher saw it.
	Node        string `json:"node,omitempty"`
	Workload    string `json:"workload,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Interface   string `json:"interface"`
	// HolderMAC is the allocation's interface's MAC; MAC the other station's.
	HolderMAC string `json:"holder_mac"`
	MAC       string `json:"mac"`
	// Evidence is the kind of the first frame (sdk/arpnd's Evidence*).
	Evidence  string    `json:"evidence"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Frames counts the other station's claims seen from FirstSeen to
	// LastSeen.
	Frames uint64 `json:"frames"`
	// Defended counts the announcements the holder sent back (pools with
	// defend = true; at most one per 10 s).
	Defended uint64 `json:"defended,omitempty"`
	// Events counts the conflicts recorded for the address (the store
	// keeps the latest and this count).
	Events uint64 `json:"events,omitempty"`
}

// ConflictStatus is status's summary of this agent's watchers.
type ConflictStatus struct {
	// Watching counts the allocations' interfaces watched now.
	Watching int `json:"watching"`
	// Contested counts the held addresses claimed by another station
	// within the contested window.
	Contested int `json:"contested"`
	// Detected counts the conflicts detected since the agent started.
	Detected uint64 `json:"detected"`
	// Busy counts the pool addresses this agent does not hold that were
	// claimed on the wire recently: candidate searches skip them.
	Busy   int       `json:"busy"`
	Latest *Conflict `json:"latest,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// BusyAddress is a pool address seen claimed on the wire that this agent
// does not hold: candidate searches of pools with conflict detection skip
// it until Until, without probing it.
type BusyAddress struct {
	Address  netip.Addr `json:"address"`
	Pool     string     `json:"pool"`
	Domain   string     `json:"domain,omitempty"`
	MAC      string     `json:"mac"`
	Evidence string     `json:"evidence"`
	Seen     time.Time  `json:"seen"`
	Until    time.Time  `json:"until"`
}

// ConflictsResponse answers ConflictsPath.
type ConflictsResponse struct {
	Conflicts []Conflict `json:"conflicts"`
	// Contested are this agent's live conflicts (frame counts current,
	// not rate-limited like the records).
	Contested []Conflict `json:"contested,omitempty"`
	// Busy is this agent's list of addresses seen busy (not the fleet's).
	Busy []BusyAddress `json:"busy,omitempty"`
}

// Conflicts lists the recorded conflicts last seen within since (0: all
// kept), of one address when addr is valid.
func (c *Client) Conflicts(ctx context.Context, since time.Duration, addr netip.Addr) (ConflictsResponse, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	if addr.IsValid() {
		q.Set("address", addr.String())
	}
	p := ConflictsPath
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out ConflictsResponse
	err := c.do(ctx, "GET", p, nil, &out)
	return out, err
}
