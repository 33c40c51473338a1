package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Consistent checks a store's IPAM records against each other: every
// allocated or reserved address record names an attachment that lists it,
// every attachment's address is recorded as its own, and no address is held
// twice. Tests and `make faults` use it after bursts and kills.
func Consistent(ctx context.Context, s Store) error {
	atts, err := s.List(ctx, prefixAttachments)
	if err != nil {
		return err
	}
	addrs, err := s.List(ctx, prefixDomains)
	if err != nil {
		return err
	}
	legacy, err := s.List(ctx, prefixPools)
	if err != nil {
		return err
	}
	var problems []string
	for _, e := range legacy {
		if isLegacyAddrKey(e.Key) {
			problems = append(problems, fmt.Sprintf("%s: an address record of the old per-pool layout was never moved (MigrateKeys)", e.Key))
		}
	}
	// Keys are per domain, so "held twice" in one domain cannot be
	// committed; what can go wrong is a record and its owner disagreeing.
	type holder struct {
		pool  string
		owner AttachmentKey
	}
	held := map[string]holder{} // domain/address -> record
	for _, e := range addrs {
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		domain, addr, ok := splitAddrKey(e.Key)
		if !ok || addr != rec.Address {
			problems = append(problems, fmt.Sprintf("%s: the key does not name the record's address %s", e.Key, rec.Address))
			continue
		}
		if rec.State == StateQuarantined {
			continue
		}
		held[domain+"/"+addr.String()] = holder{pool: rec.Pool, owner: rec.Owner}
	}
	listed := map[string]bool{}
	seen := map[string]AttachmentKey{}
	for _, e := range atts {
		var att Attachment
		if err := json.Unmarshal(e.Value, &att); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		for _, ip := range att.Addresses {
			k := domainOf(ip) + "/" + ip.Address.Addr().String()
			listed[k] = true
			if h, ok := held[k]; !ok || h.owner != att.AttachmentKey || h.pool != ip.Pool {
				problems = append(problems, fmt.Sprintf("%s lists %s of pool %q but the address record says %+v", e.Key, k, ip.Pool, h))
			}
			if other, dup := seen[k]; dup {
				problems = append(problems, fmt.Sprintf("%s is held by %+v and %+v", k, other, att.AttachmentKey))
			}
			seen[k] = att.AttachmentKey
		}
	}
	for k, h := range held {
		if !listed[k] {
			problems = append(problems, fmt.Sprintf("address %s (pool %q) is recorded for %+v, which does not list it", k, h.pool, h.owner))
		}
	}
	if len(problems) > 0 {
		return errors.New("IPAM records are inconsistent:\n" + strings.Join(problems, "\n"))
	}
	return nil
}

// splitAddrKey recovers the domain and the address of an address key.
func splitAddrKey(key string) (string, netip.Addr, bool) {
	rest, ok := strings.CutPrefix(key, prefixDomains)
	if !ok {
		return "", netip.Addr{}, false
	}
	d, a, ok := strings.Cut(rest, "/addrs/")
	if !ok {
		return "", netip.Addr{}, false
	}
	domain, err := url.PathUnescape(d)
	if err != nil {
		return "", netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(a)
	return domain, addr, err == nil
}

// isLegacyAddrKey says whether key is an address record of the old layout,
// pools/<pool>/addrs/<address> (the etcd store's pools/<pool>/hash is not).
func isLegacyAddrKey(key string) bool {
	rest, ok := strings.CutPrefix(key, prefixPools)
	if !ok {
		return false
	}
	_, a, ok := strings.Cut(rest, "/addrs/")
	if !ok {
		return false
	}
	_, err := netip.ParseAddr(a)
	return err == nil
}
