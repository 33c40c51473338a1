package ipamapi

import (
	"fmt"
	"net/netip"
	"path/filepath"
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
)

// FieldError is a malformed request field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ValidateContainerID applies CNI's rule: not empty; letters, digits,
// '_', '.', '-'; starting with a letter or digit.
func ValidateContainerID(field, s string) error {
	if s == "" {
		return fieldErr(field, "is required")
	}
	if len(s) > MaxContainerID {
		return fieldErr(field, "is %d bytes, at most %d", len(s), MaxContainerID)
	}
	for i, r := range s {
		ok := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune("_.-", r)))
		if !ok {
			return fieldErr(field, "%s: only letters, digits, '_', '.' and '-' (not first) are allowed", input.Quote(s))
		}
	}
	return nil
}

// ValidateInterface applies the kernel's rule for an interface name.
func ValidateInterface(field, s string) error {
	switch {
	case s == "":
		return fieldErr(field, "is required")
	case len(s) > 15:
		return fieldErr(field, "%s is longer than 15 bytes", input.Quote(s))
	case s == "." || s == "..":
		return fieldErr(field, "%s is not an interface name", input.Quote(s))
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r >= unicode.MaxASCII {
			return fieldErr(field, "%s: an interface name has no '/', ':', spaces or control characters", input.Quote(s))
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
	if s == "" {
		return fieldErr(field, "is empty")
	}
	if len(s) > MaxPoolName {
		return fieldErr(field, "is %d bytes, at most %d", len(s), MaxPoolName)
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || i > 0 && (r == '-' || r == '_' || r == '.')) {
			return fieldErr(field, "%s: a pool name has letters, digits, '-', '_' and '.' (not first)", input.Quote(s))
		}
	}
	return nil
}

// Validate checks the request; an error is a *FieldError naming the field.
func (r AllocateRequest) Validate() error {
	if err := ValidateContainerID("container_id", r.ContainerID); err != nil {
		return err
	}
	if err := ValidateInterface("interface", r.Interface); err != nil {
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
	return nil
}

// Validate checks the request.
func (r ReleaseRequest) Validate() error {
	if err := ValidateContainerID("container_id", r.ContainerID); err != nil {
		return err
	}
	return ValidateInterface("interface", r.Interface)
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
