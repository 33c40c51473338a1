package api

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// Limits of a request's fields.
const (
	MaxContainerID = 256
	MaxWorkload    = 253
	MaxNetns       = 4096
	MaxPoolName    = 63
	MaxPools       = 2 // one per family
	// MaxNetworkName bounds a CNI network name; the spec sets no bound,
	// and a name longer than a host name is a mistake or an attack.
	MaxNetworkName = 253
	MaxSkipReason  = 256
)

// FieldError is a malformed request, naming the field at fault in the
// JSON document ("interface", "addresses[1].gateway", "pools[0]"); Field
// is empty when the document as a whole is at fault. It is the input
// rule's own error (input.Decode returns it too), so that a field the
// decoder refuses and one the validation refuses answer alike.
type FieldError = input.FieldError

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ValidateContainerID applies CNI's rule: not empty; letters, digits,
// '_', '.', '-'; starting with a letter or digit.
func ValidateContainerID(field, s string) error {
	return validateName(field, s, "is required", MaxContainerID, "only letters, digits, '_', '.' and '-' (not first) are allowed",
		func(i int, r rune) bool {
			return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune("_.-", r)))
		})
}

// validateName checks a name: empty is refused with the message empty,
// more than most bytes by its length, and the first character that
// allowed refuses (at index i) with the rule saying what a name has.
func validateName(field, s, empty string, most int, rule string, allowed func(i int, r rune) bool) error {
	if s == "" {
		return fieldErr(field, "%s", empty)
	}
	if len(s) > most {
		return fieldErr(field, "is %d bytes, at most %d", len(s), most)
	}
	for i, r := range s {
		if !allowed(i, r) {
			return fieldErr(field, "%s: %s", input.Quote(s), rule)
		}
	}
	return nil
}

// ValidateInterface checks an interface name, in a check request and in
// IPAM's requests alike: what the kernel accepts (1 to IFNAMSIZ-1 bytes,
// not "." or "..", no '/', ':' or whitespace), and printable ASCII only,
// so that a name stored with an allocation shows as itself wherever it is
// printed.
func ValidateInterface(field, s string) error {
	switch {
	case s == "":
		return fieldErr(field, "an interface name is required")
	case len(s) > maxInterfaceName:
		return fieldErr(field, "%s is %d bytes: Linux interface names have at most %d", input.Quote(s), len(s), maxInterfaceName)
	case s == "." || s == "..":
		return fieldErr(field, "%s is not a valid interface name", input.Quote(s))
	}
	for _, r := range s {
		switch {
		case r == '/' || r == ':' || r == ' ' || r >= '\t' && r <= '\r':
			return fieldErr(field, "%s contains %q, which Linux does not allow in an interface name", input.Quote(s), r)
		case r < ' ' || r >= unicode.MaxASCII:
			return fieldErr(field, "%s contains %q: an interface name here is printable ASCII", input.Quote(s), r)
		}
	}
	return nil
}

// ValidateWorkload checks a workload name: printable, at most 253 bytes.
func ValidateWorkload(field, s string) error {
	if len(s) > MaxWorkload {
		return fieldErr(field, "is %d bytes, at most %d", len(s), MaxWorkload)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fieldErr(field, "%s contains a character that is not printable", input.Quote(s))
		}
	}
	return nil
}

// ValidatePoolName checks a pool name.
func ValidatePoolName(field, s string) error {
	return validateName(field, s, "is empty", MaxPoolName, "a pool name has letters, digits, '-', '_' and '.' (not first)",
		func(i int, r rune) bool {
			return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || i > 0 && (r == '-' || r == '_' || r == '.')
		})
}

// ValidateNetworkName applies CNI's rule for a network name (libcni's
// ValidateNetworkName): letters, digits, '_', '.' and '-', starting with a
// letter or digit; and at most MaxNetworkName bytes.
func ValidateNetworkName(field, s string) error {
	return validateName(field, s, "is required", MaxNetworkName, "a CNI network name has letters, digits, '_', '.' and '-' (not first)",
		func(i int, r rune) bool {
			return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune("_.-", r)
		})
}

// Validate checks the origin of a request for interface iface; errors
// name field ("origin") and the member.
func (o Origin) Validate(field, iface string) error {
	switch o.Kind {
	case OriginCNI:
		if o.Network == "" {
			return fieldErr(field+".network", "is required with kind %q: the CNI network's name", OriginCNI)
		}
		if err := ValidateNetworkName(field+".network", o.Network); err != nil {
			return err
		}
	case OriginAPI:
		if o.Network != "" {
			return fieldErr(field+".network", "is only for kind %q, not %q", OriginCNI, OriginAPI)
		}
	case "":
		return fieldErr(field+".kind", "is required: %q or %q", OriginCNI, OriginAPI)
	default:
		k := o.Kind
		if len(k) > 16 {
			k = k[:16] + "..."
		}
		return fieldErr(field+".kind", "%q is not an origin: %q or %q", k, OriginCNI, OriginAPI)
	}
	if o.Interface != "" {
		if err := ValidateInterface(field+".interface", o.Interface); err != nil {
			return err
		}
		if o.Interface != iface {
			return fieldErr(field+".interface", "%q differs from interface %q, the one allocated for", o.Interface, iface)
		}
	}
	return nil
}

// Validate checks the key of an attachment as a request or a record
// carries it: the fields container_id and interface.
func (k AttachmentKey) Validate() error {
	if err := ValidateContainerID("container_id", k.ContainerID); err != nil {
		return err
	}
	return ValidateInterface("interface", k.Interface)
}

// Validate checks the request; an error is a *FieldError naming the field.
func (r AllocateRequest) Validate() error {
	if err := (AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}).Validate(); err != nil {
		return err
	}
	if r.Netns != "" {
		if len(r.Netns) > MaxNetns {
			return fieldErr("netns", "is %d bytes, at most %d", len(r.Netns), MaxNetns)
		}
		if !filepath.IsAbs(r.Netns) || filepath.Clean(r.Netns) != r.Netns || strings.ContainsRune(r.Netns, 0) {
			return fieldErr("netns", "%s is not a clean absolute path such as /var/run/netns/NAME", input.Quote(r.Netns))
		}
	}
	if err := ValidateWorkload("workload", r.Workload); err != nil {
		return err
	}
	if len(r.Pools) == 0 {
		return fieldErr("pools", "name at least one pool")
	}
	if len(r.Pools) > MaxPools {
		return fieldErr("pools", "names %d pools; at most %d (one per family)", len(r.Pools), MaxPools)
	}
	for i, p := range r.Pools {
		f := fmt.Sprintf("pools[%d]", i)
		if err := ValidatePoolName(f, p); err != nil {
			return err
		}
		for j := 0; j < i; j++ {
			if r.Pools[j] == p {
				return fieldErr(f, "%q is named twice", p)
			}
		}
	}
	if r.Origin != nil {
		if err := r.Origin.Validate("origin", r.Interface); err != nil {
			return err
		}
	}
	return validateSkips(r.SkipDetection, r.Pools)
}

// validateSkips checks skip_detection: known detections, a reason, pools
// of the request, nothing twice.
func validateSkips(skips []DetectionSkip, pools []string) error {
	// Each detection once for all pools, or once per pool.
	if len(skips) > 2*MaxPools {
		return fieldErr("skip_detection", "has %d entries; at most %d", len(skips), 2*MaxPools)
	}
	seen := map[[2]string]bool{}
	for i, sk := range skips {
		f := fmt.Sprintf("skip_detection[%d]", i)
		if sk.Detection != DetectionConflict && sk.Detection != DetectionGateway {
			return fieldErr(f+".detection", "%q is not a detection (conflict, gateway)", sk.Detection)
		}
		if sk.Pool != "" && !slices.Contains(pools, sk.Pool) {
			return fieldErr(f+".pool", "%q is not a pool of the request", sk.Pool)
		}
		switch {
		case strings.TrimSpace(sk.Reason) == "":
			return fieldErr(f+".reason", "is required: say why the detection cannot work")
		case len(sk.Reason) > MaxSkipReason:
			return fieldErr(f+".reason", "is %d bytes, at most %d", len(sk.Reason), MaxSkipReason)
		}
		for _, r := range sk.Reason {
			if !unicode.IsPrint(r) {
				return fieldErr(f+".reason", "contains a character that is not printable")
			}
		}
		k := [2]string{sk.Pool, sk.Detection}
		if seen[k] {
			return fieldErr(f, "skips %s detection twice", sk.Detection)
		}
		seen[k] = true
	}
	return nil
}

// Validate checks the request.
func (r ReleaseRequest) Validate() error {
	if err := (AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}).Validate(); err != nil {
		return err
	}
	if r.IfNetwork != "" {
		return ValidateNetworkName("if_network", r.IfNetwork)
	}
	return nil
}

// Validate checks the request.
func (r ReleaseWorkloadRequest) Validate() error {
	if r.Workload == "" {
		return fieldErr("workload", "is required")
	}
	return ValidateWorkload("workload", r.Workload)
}

// ParseAddress reads the address query parameter.
func ParseAddress(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fieldErr(field, "%s is not an IP address", input.Quote(s))
	}
	return a.Unmap(), nil
}
