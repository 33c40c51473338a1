package ipam

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// Key layout. Every segment that comes from a request is path-escaped, so a
// workload name "default/web-0" cannot forge another key.
//
//	domains/<domain>/addrs/<address>        AddressRecord (naming its pool)
//	attachments/<container id>/<interface>  Attachment
//	workloads/<workload>                    endpointHead
//	history/<workload>/<seq>                HistoryEntry (seq zero-padded)
//	meta/format                             (boltstore, its meta bucket) file format
//
// An address record is keyed by the address within its layer-2 domain, not
// by its pool: two pools of one domain whose ranges overlap (a
// configuration mistake, a reload, another node's definition) still share
// one key per address, so the compare of a commit that would give a held
// address to a second holder fails. A layer-2 domain's records are listed
// together; each record names its pool, and whoever lists a pool's
// addresses filters on it (poolRecords).
const (
	prefixDomains     = "domains/"
	prefixAttachments = "attachments/"
	prefixWorkloads   = "workloads/"
	prefixHistory     = "history/"
	// prefixPools held the address records before they were keyed by
	// domain (pools/<pool>/addrs/<address>); MigrateKeys moves them. The
	// etcd store keeps its pool definition hashes under it too.
	prefixPools = "pools/"
)

func esc(s string) string { return url.PathEscape(s) }

func addrKey(domain string, a netip.Addr) string {
	return domainAddrPrefix(domain) + a.String()
}

func domainAddrPrefix(domain string) string { return prefixDomains + esc(domain) + "/addrs/" }

// domainOf is the layer-2 domain an attachment's address is keyed in: the
// one recorded with it; an attachment written before domains existed
// recorded none, and its addresses were moved to DefaultDomain.
func domainOf(ip AllocatedIP) string {
	if ip.Domain == "" {
		return DefaultDomain
	}
	return ip.Domain
}

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
	AttachmentKey = api.AttachmentKey
	Attachment    = api.Attachment
	AllocatedIP   = api.AllocatedIP
	SkippedIP     = api.SkippedIP
	Endpoint      = api.Endpoint
	HistoryEntry  = api.HistoryEntry
	Route         = api.Route
	AddressRecord = api.AddressRecord
)
