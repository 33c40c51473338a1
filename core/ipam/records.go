package ipam

import (
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
	"net/netip"
	"net/url"
	"strings"
)

// Key layout. Every segment that comes from a request is path-escaped, so a
// workload name "default/web-0" cannot forge another key.
//
//	pools/<pool>/addrs/<address>            AddressRecord
//	attachments/<container id>/<interface>  Attachment
//	workloads/<workload>                    Endpoint
//	meta/format                             store format version
const (
	prefixPools       = "pools/"
	prefixAttachments = "attachments/"
	prefixWorkloads   = "workloads/"
)

func esc(s string) string { return url.PathEscape(s) }

func addrKey(pool string, a netip.Addr) string {
	return prefixPools + esc(pool) + "/addrs/" + a.String()
}

func poolAddrPrefix(pool string) string { return prefixPools + esc(pool) + "/addrs/" }

func attachmentKey(k AttachmentKey) string {
	return prefixAttachments + esc(k.ContainerID) + "/" + esc(k.Interface)
}

func workloadKey(w string) string { return prefixWorkloads + esc(w) }

// addrFromKey recovers the address of an address key.
func addrFromKey(key string) (netip.Addr, bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(key[i+1:])
	return a, err == nil
}

// Address states.
const (
	// StateReserved: taken by an allocation still being checked.
	StateReserved = "reserved"
	// StateAllocated: given to a workload.
	StateAllocated = "allocated"
	// StateQuarantined: someone on the wire answered for it; not handed out
	// until Until.
	StateQuarantined = "quarantined"
)

// The records IPAM stores are the API's types: one definition, no copies.
type (
	AttachmentKey = ipamapi.AttachmentKey
	Attachment    = ipamapi.Attachment
	AllocatedIP   = ipamapi.AllocatedIP
	SkippedIP     = ipamapi.SkippedIP
	Endpoint      = ipamapi.Endpoint
	HistoryEntry  = ipamapi.HistoryEntry
	Route         = ipamapi.Route
	AddressRecord = ipamapi.AddressRecord
)
