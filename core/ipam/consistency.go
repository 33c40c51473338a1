package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
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
	addrs, err := s.List(ctx, prefixPools)
	if err != nil {
		return err
	}
	var problems []string
	held := map[string]AttachmentKey{} // pool/address -> owner
	for _, e := range addrs {
		var rec AddressRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		if rec.State == StateQuarantined {
			continue
		}
		held[rec.Pool+"/"+rec.Address.String()] = rec.Owner
	}
	listed := map[string]bool{}
	seen := map[netip.Addr]AttachmentKey{}
	for _, e := range atts {
		var att Attachment
		if err := json.Unmarshal(e.Value, &att); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		for _, ip := range att.Addresses {
			a := ip.Address.Addr()
			k := ip.Pool + "/" + a.String()
			listed[k] = true
			if owner, ok := held[k]; !ok || owner != att.AttachmentKey {
				problems = append(problems, fmt.Sprintf("%s lists %s but the address record says %+v", e.Key, k, owner))
			}
			if other, dup := seen[a]; dup {
				problems = append(problems, fmt.Sprintf("%s is held by %+v and %+v", a, other, att.AttachmentKey))
			}
			seen[a] = att.AttachmentKey
		}
	}
	for k, owner := range held {
		if !listed[k] {
			problems = append(problems, fmt.Sprintf("address %s is recorded for %+v, which does not list it", k, owner))
		}
	}
	if len(problems) > 0 {
		return errors.New("IPAM records are inconsistent:\n" + strings.Join(problems, "\n"))
	}
	return nil
}
