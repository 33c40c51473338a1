package api

import (
	"net/netip"
	"time"
)

// Paths of the IPAM API:
//
//	POST /v1/ipam/allocate          AllocateRequest -> 200 Attachment
//	POST /v1/ipam/release           ReleaseRequest  -> 200 ReleaseResponse
//	GET  /v1/ipam/allocation?container_id=&interface= -> 200 Attachment, 404
//	GET  /v1/ipam/allocations[?pool=&workload=]       -> 200 []Attachment
//	POST /v1/ipam/release-workload  ReleaseWorkloadRequest -> 200 ReleaseResponse
//	POST /v1/ipam/gc                -> 200 GCResult
//	GET  /v1/ipam/pools             -> 200 []PoolUsage
//	GET  /v1/ipam/history?workload= | ?address=        -> 200 []HistoryRecord
//	GET  /v1/ipam/address?address=                    -> 200 AddressInfo
const (
	AllocatePath        = "/v1/ipam/allocate"
	ReleasePath         = "/v1/ipam/release"
	AllocationPath      = "/v1/ipam/allocation"
	AllocationsPath     = "/v1/ipam/allocations"
	ReleaseWorkloadPath = "/v1/ipam/release-workload"
	GCPath              = "/v1/ipam/gc"
	PoolsPath           = "/v1/ipam/pools"
	HistoryPath         = "/v1/ipam/history"
	AddressPath         = "/v1/ipam/address"
)

// How long an allocation may take. The agent gives every allocation a
// deadline (ipam.allocation_timeout, between MinAllocationTimeout and
// MaxAllocationTimeout), after which it releases what the allocation
// reserved and answers; the CNI plugin waits AllocateWait for that answer.
// The margin between the longest deadline and AllocateWait is for the
// release and the answer, so that a runtime gets the agent's own error,
// never a timeout of its own with an address still held.
const (
	AllocateWait             = 30 * time.Second
	DefaultAllocationTimeout = 25 * time.Second
	MinAllocationTimeout     = time.Second
	MaxAllocationTimeout     = AllocateWait - 3*time.Second
)

// Error codes of ErrorBody.Code.
const (
	CodeBadRequest  = "bad_request" // a field is malformed (400, Field set)
	CodeDisabled    = "ipam_disabled"
	CodeUnknownPool = "unknown_pool"
	CodePoolFull    = "pool_full"
	// CodeConflict: every candidate tried was in use on the wire.
	CodeConflict = "conflict"
	// CodeGateway: the pool's gateway did not answer; another address
	// would not help.
	CodeGateway = "gateway_unreachable"
	// CodeBlocked: a detector blocked the address for another reason.
	CodeBlocked = "blocked"
	// CodeCheckFailed: a detector could not decide (never a pass).
	CodeCheckFailed = "check_failed"
	// CodeTryAgain: retries of an optimistic update were spent, or another
	// request for the same key is in flight; the caller may try again.
	CodeTryAgain = "try_again"
	// CodeMismatch: the key already holds addresses from other pools.
	CodeMismatch = "mismatch"
	CodeNotFound = "not_found"
	CodeNotReady = "not_ready"
	CodeInternal = "internal"
)

// StatusOf is the HTTP status the control API answers with a code: the one
// table of codes and statuses, for the server that answers and for a
// client that has only one of the two. An unknown code is a 500.
func StatusOf(code string) int {
	switch code {
	case CodeBadRequest, CodeUnknownPool:
		return statusBadRequest
	case CodeNotFound:
		return statusNotFound
	case CodeDisabled, CodePoolFull, CodeConflict, CodeMismatch:
		return statusConflict
	case CodeGateway, CodeBlocked:
		return statusUnprocessable
	case CodeCheckFailed:
		return statusBadGateway
	case CodeTryAgain, CodeNotReady:
		return statusServiceUnavailable
	}
	return statusInternal
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the offending request field on a 400.
	Field string `json:"field,omitempty"`
	Code  string `json:"code,omitempty"`
	// Skipped lists candidates passed over before the failure.
	Skipped []SkippedIP `json:"skipped,omitempty"`
}

// AllocateRequest asks for one address from each pool named.
type AllocateRequest struct {
	ContainerID string `json:"container_id"`
	Interface   string `json:"interface"`
	// Netns is the workload's network namespace as a path; the address is
	// checked there on Interface. Empty: the agent's own namespace.
	Netns string `json:"netns,omitempty"`
	// Workload names the workload for its history and sticky addresses
	// ("default/web-0", a Nomad allocation id); empty = the container id.
	Workload string `json:"workload,omitempty"`
	// Pools: one per family at most (dual stack = one IPv4 and one IPv6).
	Pools []string `json:"pools"`
	// Origin says who asks: the CNI plugin sends kind "cni" with its
	// network's name. Absent: the control API itself (the CLI, a script,
	// a VM's hook), recorded as kind "api".
	Origin *Origin `json:"origin,omitempty"`
	// SkipDetection names detections that cannot work for this
	// allocation, with why: the CNI plugin sets it from the main plugin's
	// configuration (a bridge that becomes the gateway itself after IPAM
	// answers, ptp, ipvlan in L3 mode). A detection a pool enables and
	// this lists does not run for it; the attachment's NotChecked says
	// so.
	SkipDetection []DetectionSkip `json:"skip_detection,omitempty"`
	// MainPluginKeepsDAD says the main plugin raises the interface with
	// its IPv6 DAD as it finds it (macvlan, ipvlan, host-device, vlan;
	// the bridge plugin only with enabledad): an interface the agent
	// raised for the probe may then be left up with its link-local
	// address still in DAD. Otherwise the agent leaves it up only once no
	// address on it is in DAD, since a main plugin that turns DAD off
	// before raising the interface waits for every tentative address.
	// The CNI plugin sets it; it means nothing for other callers, whose
	// interfaces are put down as found.
	MainPluginKeepsDAD bool `json:"main_plugin_keeps_dad,omitempty"`
}

// Detections a request may skip.
const (
	DetectionConflict = "conflict"
	DetectionGateway  = "gateway"
)

// DetectionSkip is one detection not run, and why.
type DetectionSkip struct {
	// Pool is the pool it applies to; in a request, empty means every
	// pool named.
	Pool string `json:"pool,omitempty"`
	// Detection is DetectionConflict or DetectionGateway.
	Detection string `json:"detection"`
	// Reason says why, for the operator ("the bridge is the gateway").
	Reason string `json:"reason"`
}

// Origin kinds.
const (
	// OriginCNI: a CNI ADD of the network Origin.Network.
	OriginCNI = "cni"
	// OriginAPI: the control API or the CLI (VMs, scripts).
	OriginAPI = "api"
)

// Origin is who made an allocation. A runtime's CNI GC names the network
// it collects for and knows only that network's attachments, so it may
// release only what ADDs of that network made (MadeByNetwork); an API
// allocation is released only explicitly (or by the agent's namespace GC
// when it has a namespace). An allocation recorded before origins were
// (Origin nil) is nobody's: no CNI GC releases it.
type Origin struct {
	Kind string `json:"kind"`
	// Network is the CNI network's name (the netconf's "name"); kind cni
	// only.
	Network string `json:"network,omitempty"`
	// Interface is the workload interface the allocation was made for.
	Interface string `json:"interface,omitempty"`
}

// String is the origin as the CLI prints it: "cni:NETWORK", "api", or
// "-" when none was recorded.
func (o *Origin) String() string {
	switch {
	case o == nil:
		return "-"
	case o.Kind == OriginCNI:
		return OriginCNI + ":" + o.Network
	}
	return o.Kind
}

// MadeByNetwork says whether a was allocated by a CNI ADD of network: the
// only allocations a CNI GC of that network may release.
func (a Attachment) MadeByNetwork(network string) bool {
	return network != "" && a.Origin != nil && a.Origin.Kind == OriginCNI && a.Origin.Network == network
}

// ReleaseRequest releases what (container id, interface) holds. Releasing
// an unknown key succeeds.
type ReleaseRequest struct {
	ContainerID string `json:"container_id"`
	Interface   string `json:"interface"`
	// IfNetwork, when set, releases only an allocation that a CNI ADD of
	// this network made (Attachment.MadeByNetwork); any other is kept and
	// returned in Kept. A CNI GC sets it, so that what the agent holds
	// at the moment of the release, not what GC listed earlier, decides.
	IfNetwork string `json:"if_network,omitempty"`
}

// ReleaseWorkloadRequest releases every allocation of a workload.
type ReleaseWorkloadRequest struct {
	Workload string `json:"workload"`
}

// ReleaseResponse lists what was released (empty when nothing was held).
type ReleaseResponse struct {
	Released []Attachment `json:"released"`
	// Kept is the allocation a ReleaseRequest.IfNetwork left alone
	// because another origin made it.
	Kept []Attachment `json:"kept,omitempty"`
}

// GCResult is what a garbage collection pass did.
type GCResult struct {
	// Checked allocations of this node with a namespace path.
	Checked int `json:"checked"`
	// Suspected: namespace gone at this look, waiting for the grace period
	// and a second look.
	Suspected []AttachmentKey `json:"suspected"`
	// Reclaimed: namespace gone at two looks a grace period apart and the
	// record unchanged in between; released.
	Reclaimed []AttachmentKey `json:"reclaimed"`
	// QuarantineExpired counts quarantine records removed.
	QuarantineExpired int           `json:"quarantine_expired"`
	GracePeriod       time.Duration `json:"grace_period_ns"`
	// WorkloadsPruned counts workloads whose endpoint and history were
	// deleted: no allocation named them for longer than the retention.
	WorkloadsPruned int `json:"workloads_pruned"`
	// RecordsPruned counts the records those deletions removed.
	RecordsPruned int `json:"records_pruned"`
}

// Route is a route given to the workload with its address.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	// GW is the next hop; absent = the pool's gateway.
	GW netip.Addr `json:"gw,omitzero"`
}

// AttachmentKey identifies an allocation: CNI's (container id, interface).
type AttachmentKey struct {
	ContainerID string `json:"container_id"`
	Interface   string `json:"interface"`
}

// Attachment is an allocation: the addresses one workload interface holds.
type Attachment struct {
	AttachmentKey
	Netns     string        `json:"netns,omitempty"`
	Workload  string        `json:"workload"`
	Node      string        `json:"node,omitempty"`
	State     string        `json:"state"` // "reserved" while checked, then "allocated"
	Addresses []AllocatedIP `json:"addresses"`
	Created   time.Time     `json:"created"`
	// Origin is who made the allocation; nil for one recorded before
	// origins were.
	Origin *Origin `json:"origin,omitempty"`
	// Skipped lists candidates passed over because they were in use.
	Skipped []SkippedIP `json:"skipped,omitempty"`
	// NotChecked lists the detections its pools enable that the request
	// asked to skip, one per pool and detection.
	NotChecked []DetectionSkip `json:"not_checked,omitempty"`
}

// AllocatedIP is one address of an attachment with what the workload needs
// to use it.
type AllocatedIP struct {
	Pool string `json:"pool"`
	// Domain is the pool's layer-2 domain when the address was given, the
	// space its address record is keyed in (empty in a record written
	// before domains existed: "default").
	Domain  string       `json:"domain,omitempty"`
	Address netip.Prefix `json:"address"` // with the subnet's length
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Routes  []Route      `json:"routes,omitempty"`
	VLAN    int          `json:"vlan,omitempty"`
}

// SkippedIP is a candidate passed over because it was in use on the wire.
type SkippedIP struct {
	Pool        string     `json:"pool"`
	Address     netip.Addr `json:"address"`
	Reason      string     `json:"reason"`
	Quarantined bool       `json:"quarantined"`
}

// Endpoint is a workload's allocation history, newest first.
type Endpoint struct {
	Workload string         `json:"workload"`
	History  []HistoryEntry `json:"history"`
}

// HistoryEntry is one address a workload held.
type HistoryEntry struct {
	Address     netip.Addr  `json:"address"`
	Pool        string      `json:"pool"`
	ContainerID string      `json:"container_id"`
	Interface   string      `json:"interface"`
	Node        string      `json:"node,omitempty"`
	AllocatedAt time.Time   `json:"allocated_at"`
	ReleasedAt  time.Time   `json:"released_at,omitzero"`
	Skipped     []SkippedIP `json:"conflicts_skipped,omitempty"`
	// Origin is who made the allocation (Attachment.Origin).
	Origin *Origin `json:"origin,omitempty"`
}

// HistoryRecord is a HistoryEntry with its workload, the answer to "who
// had this address, and when?".
type HistoryRecord struct {
	Workload string `json:"workload"`
	HistoryEntry
}

// AddressRecord is one address of a pool that is not free, as the store
// holds it.
type AddressRecord struct {
	Pool    string     `json:"pool"`
	Address netip.Addr `json:"address"`
	State   string     `json:"state"` // reserved, allocated, quarantined
	// Owner is the attachment holding it (reserved, allocated).
	Owner AttachmentKey `json:"owner,omitzero"`
	Node  string        `json:"node,omitempty"`
	Since time.Time     `json:"since"`
	// Until ends a quarantine.
	Until time.Time `json:"until,omitzero"`
	// Reason is why it was quarantined, in the detector's words.
	Reason string `json:"reason,omitempty"`
	// MAC is the hardware address that answered for it on the wire when
	// it was quarantined, if the detector said.
	MAC string `json:"mac,omitempty"`
}

// AddressInfo is what the agent knows of one address: its record in each
// pool holding one now (none: free, or a quarantine that has ended), and
// every workload that held it, newest first.
type AddressInfo struct {
	Address netip.Addr      `json:"address"`
	Records []AddressRecord `json:"records"`
	History []HistoryRecord `json:"history"`
	// Busy is this agent's busy entry of the address (one per layer-2
	// domain): claimed on the wire while not allocated here.
	Busy []BusyAddress `json:"busy,omitempty"`
}

// PoolUsage is one pool's state.
type PoolUsage struct {
	Name              string   `json:"name"`
	Family            string   `json:"family"`
	Subnet            string   `json:"subnet"`
	Ranges            []string `json:"ranges"`
	Gateway           string   `json:"gateway,omitempty"`
	VLAN              int      `json:"vlan,omitempty"`
	Domain            string   `json:"domain"`
	Store             string   `json:"store"`
	ConflictDetection bool     `json:"conflict_detection"`
	GatewayDetection  bool     `json:"gateway_detection"`
	Size              int      `json:"size"`
	Allocated         int      `json:"allocated"`
	Reserved          int      `json:"reserved"`
	Quarantined       int      `json:"quarantined"`
	Free              int      `json:"free"`
	// Busy counts the free addresses (no record in the store) that were
	// claimed on the wire recently by stations this agent did not give
	// them to: part of Free, but the candidate search of a pool with
	// conflict detection skips them without a probe.
	Busy int `json:"busy"`
}

// Status is IPAM's line in the agent's status.
type Status struct {
	Enabled bool        `json:"enabled"`
	Reason  string      `json:"reason,omitempty"` // why it is off
	Dir     string      `json:"config_dir,omitempty"`
	DBPath  string      `json:"db_path,omitempty"`
	Pools   []PoolUsage `json:"pools,omitempty"`
	Error   string      `json:"error,omitempty"`
	// Store is the shared store's state; nil with the embedded store.
	Store *StoreStatus `json:"store,omitempty"`
	// Workloads are the workload records (endpoint and history).
	Workloads *WorkloadStatus `json:"workloads,omitempty"`
	// Conflicts summarises the watch of allocated addresses.
	Conflicts *ConflictStatus `json:"conflicts,omitempty"`
}

// WorkloadStatus counts the workload records as the last GC pass saw them:
// those an allocation names, and those kept for the retention after their
// last release; and what GC pruned since the agent started.
type WorkloadStatus struct {
	Retention time.Duration `json:"retention_ns"`
	// CountedAt is when the counts were taken; zero before the first GC.
	CountedAt     time.Time `json:"counted_at,omitzero"`
	Live          int       `json:"live"`
	Retained      int       `json:"retained"`
	Pruned        int       `json:"pruned"`
	RecordsPruned int       `json:"records_pruned"`
}

// StoreStatus is a shared IPAM store as this node sees it.
type StoreStatus struct {
	Kind string `json:"kind"` // "etcd"
	Node string `json:"node"` // this agent's node name
	// Up is false while the store is unreachable, this node's name is held
	// by another live agent, or a pool's definition differs from another
	// node's; Error says which.
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}
