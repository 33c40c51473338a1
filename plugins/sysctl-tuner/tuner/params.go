package tuner

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// DefaultProcSysRoot is where the kernel exposes its sysctls.
const DefaultProcSysRoot = "/proc/sys"

// maxKeyLen and maxValueLen bound what a configuration may ask for. The
// kernel accepts at most a page per sysctl write; keys are paths.
const (
	maxKeyLen   = 512
	maxValueLen = 4096
)

// family says which IP family switch gates a default parameter.
type family int

const (
	familyIPv4 family = 1 << iota
	familyIPv6
)

// builtin is one of the reference defaults.
type builtin struct {
	key    string
	value  string
	family family // the default applies when any of these families is enabled
}

// defaults are the parameters spiderpool-agent tunes out of the box, in the
// order of the reference page.
var defaults = []builtin{
	{"net.ipv4.neigh.default.gc_thresh3", "28160", familyIPv4},
	{"net.ipv6.neigh.default.gc_thresh3", "28160", familyIPv6},
	{"net.ipv4.conf.all.arp_notify", "1", familyIPv4},
	{"net.ipv4.conf.all.forwarding", "1", familyIPv4},
	{"net.ipv6.conf.all.forwarding", "1", familyIPv6},
	{"net.ipv4.conf.all.rp_filter", "0", familyIPv4 | familyIPv6},
}

// Settings is the tuner's configuration.
//
// The zero value disables both IP families, so that no default applies;
// use DefaultSettings as the starting point.
type Settings struct {
	// ProcSysRoot is the directory holding the sysctl tree. Empty means the
	// root given to New (or DefaultProcSysRoot).
	ProcSysRoot string
	// Set changes the value of a default or adds any other key. Keys are
	// written either dotted ("net.ipv4.conf.all.rp_filter") or with slashes
	// ("net/ipv4/conf/eth0.100/rp_filter"); the slash form is the
	// unambiguous one for interface names that contain dots.
	Set map[string]string
	// Drop removes defaults; every entry must name a default.
	Drop []string
	// EnableIPv4 makes the net.ipv4.* defaults apply.
	EnableIPv4 bool
	// EnableIPv6 makes the net.ipv6.* defaults apply.
	// net.ipv4.conf.all.rp_filter applies when either family is enabled.
	EnableIPv6 bool
}

// DefaultSettings returns the settings of an agent with no configuration:
// both families enabled, the six defaults. ProcSysRoot is left empty, so
// the tuner keeps the root it was created with (New).
func DefaultSettings() Settings {
	return Settings{EnableIPv4: true, EnableIPv6: true}
}

// Param is one parameter the tuner keeps at a value.
type Param struct {
	// Key is the parameter as configured: dotted or slash form.
	Key string
	// Value is the desired value, normalised (see Normalize).
	Value string
	// Default is true for the built-in parameters (possibly with a
	// changed value), false for keys added through Settings.Set.
	Default bool
}

// Desired computes the parameters that s asks for: the defaults whose IP
// family is enabled, minus s.Drop, with s.Set applied on top. Keys set
// explicitly apply whatever the family switches say. The defaults come
// first in their fixed order, added keys follow sorted by key.
//
// Errors name the offending key: an invalid key, an empty value, a drop of
// something that is not a default, a key both set and dropped, or two
// spellings of the same key.
func Desired(s Settings) ([]Param, error) {
	dropped := make(map[string]bool, len(s.Drop))
	defaultIDs := make(map[string]bool, len(defaults))
	for _, d := range defaults {
		defaultIDs[keyID(d.key)] = true
	}
	for _, k := range s.Drop {
		if err := ValidateKey(k); err != nil {
			return nil, fmt.Errorf("drop: %w", err)
		}
		id := keyID(k)
		if !defaultIDs[id] {
			return nil, fmt.Errorf("drop: sysctl key %q is not a default (the defaults are %s)", k, defaultKeyList())
		}
		dropped[id] = true
	}

	setKeys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		setKeys = append(setKeys, k)
	}
	sort.Strings(setKeys)
	set := make(map[string]Param, len(s.Set)) // by id
	for _, k := range setKeys {
		if err := ValidateKey(k); err != nil {
			return nil, fmt.Errorf("set: %w", err)
		}
		v := Normalize(s.Set[k])
		if err := validateValue(v); err != nil {
			return nil, fmt.Errorf("set: sysctl key %q: %w", k, err)
		}
		id := keyID(k)
		if other, ok := set[id]; ok {
			return nil, fmt.Errorf("set: sysctl keys %q and %q name the same parameter", other.Key, k)
		}
		if dropped[id] {
			return nil, fmt.Errorf("sysctl key %q is both set and dropped", k)
		}
		set[id] = Param{Key: k, Value: v}
	}

	var fams family
	if s.EnableIPv4 {
		fams |= familyIPv4
	}
	if s.EnableIPv6 {
		fams |= familyIPv6
	}

	var out []Param
	for _, d := range defaults {
		id := keyID(d.key)
		if p, ok := set[id]; ok {
			// An explicit value applies whatever the family switches say.
			out = append(out, Param{Key: d.key, Value: p.Value, Default: true})
			delete(set, id)
			continue
		}
		if dropped[id] || d.family&fams == 0 {
			continue
		}
		out = append(out, Param{Key: d.key, Value: d.value, Default: true})
	}
	for _, k := range setKeys {
		if p, ok := set[keyID(k)]; ok && p.Key == k {
			out = append(out, p)
		}
	}
	return out, nil
}

func defaultKeyList() string {
	keys := make([]string, len(defaults))
	for i, d := range defaults {
		keys[i] = d.key
	}
	return strings.Join(keys, ", ")
}

// Normalize returns v with its whitespace-separated fields joined by a
// single space, so that the kernel's tab-separated "4096\t87380\t6291456"
// equals a configured "4096 87380 6291456".
func Normalize(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

func validateValue(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	if len(v) > maxValueLen {
		return fmt.Errorf("value longer than %d bytes", maxValueLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("value contains the non-printable character %q", r)
		}
	}
	return nil
}

// ValidateKey reports whether key is a well-formed sysctl key that stays
// inside the sysctl tree: not empty, only the characters A-Z a-z 0-9 _ . -
// / @ :, not absolute, no empty element and no "..". In the slash form dots
// belong to an element (an interface name such as eth0.100).
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty sysctl key")
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("sysctl key %q is longer than %d bytes", key, maxKeyLen)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '.' || r == '-' || r == '/' || r == '@' || r == ':') {
			return fmt.Errorf("sysctl key %q contains %q; only letters, digits and the characters _ . - / @ and colon are allowed", key, r)
		}
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("sysctl key %q is an absolute path; keys are relative to the sysctl root", key)
	}
	if strings.Contains(key, "..") {
		return fmt.Errorf("sysctl key %q contains \"..\"", key)
	}
	sep := "."
	if strings.Contains(key, "/") {
		sep = "/"
	}
	for _, el := range strings.Split(key, sep) {
		if el == "" {
			return fmt.Errorf("sysctl key %q has an empty element", key)
		}
		if el == "." {
			return fmt.Errorf("sysctl key %q has the element \".\"", key)
		}
	}
	return nil
}

// ifacePrefixes are the dotted prefixes after which an interface name
// follows (net.ipv4.conf.<if>.<param> and friends).
var ifacePrefixes = []string{
	"net.ipv4.conf.",
	"net.ipv6.conf.",
	"net.ipv4.neigh.",
	"net.ipv6.neigh.",
}

// candidates returns the paths, relative to the sysctl root and
// slash-separated, that a valid key may name, most likely first. A slash key
// names exactly one path. A dotted key under an interface-bearing prefix
// names <prefix>/<if>/<param>, where <if> is everything between the prefix
// and the last element (it may contain dots), and, when that differs, the
// path with every dot a separator.
func candidates(key string) []string {
	if strings.Contains(key, "/") {
		return []string{key}
	}
	plain := strings.ReplaceAll(key, ".", "/")
	for _, p := range ifacePrefixes {
		rest, ok := strings.CutPrefix(key, p)
		if !ok {
			continue
		}
		last := strings.LastIndexByte(rest, '.')
		if last <= 0 {
			break // no interface element
		}
		iface, param := rest[:last], rest[last+1:]
		if !strings.Contains(iface, ".") {
			break // unambiguous
		}
		return []string{strings.ReplaceAll(p, ".", "/") + iface + "/" + param, plain}
	}
	return []string{plain}
}

// keyID identifies the parameter a key names, so that the dotted and the
// slash spelling of one parameter compare equal.
func keyID(key string) string { return candidates(key)[0] }
