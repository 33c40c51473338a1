package sdk

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Formats a string attribute (or each element of a list(string)) may be
// held to. The schema carries them, so the agent checks them too.
const (
	// FormatCIDR is a network prefix without host bits: 10.0.0.0/8, fd00::/8.
	FormatCIDR = "cidr"
	// FormatIP is one address: 10.0.0.1, fd00::1.
	FormatIP = "ip"
	// FormatMAC is a hardware address: 02:00:5e:10:00:01.
	FormatMAC = "mac"
	// FormatIfname is a Linux interface name: 1 to 15 bytes, no '/' or ':', no
	// whitespace, not "." or "..".
	FormatIfname = "ifname"
)

var formatText = map[string]string{
	FormatCIDR:   "a network prefix such as 10.0.0.0/8",
	FormatIP:     "an IP address such as 10.0.0.1",
	FormatMAC:    "a MAC address such as 02:00:5e:10:00:01",
	FormatIfname: "an interface name (1 to 15 characters, no '/', ':' or spaces)",
}

var (
	prefixType = reflect.TypeOf(netip.Prefix{})
	addrType   = reflect.TypeOf(netip.Addr{})
	macType    = reflect.TypeOf(net.HardwareAddr{})
)

// netTypes are the Go field types Decode parses from strings, with the
// format their text must have.
var netTypes = map[reflect.Type]string{prefixType: FormatCIDR, addrType: FormatIP, macType: FormatMAC}

// netTypeName is typeName for netip.Prefix, netip.Addr, net.HardwareAddr
// and slices of them.
func netTypeName(t reflect.Type) (typ, format string, ok bool) {
	if f, ok := netTypes[t]; ok {
		return TypeString, f, true
	}
	if t.Kind() == reflect.Slice {
		if f, ok := netTypes[t.Elem()]; ok {
			return TypeStringList, f, true
		}
	}
	return "", "", false
}

// checkFormat says why s is not of format, or "".
func checkFormat(format, s string) string {
	switch format {
	case FormatCIDR:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Sprintf("%q is not %s", s, formatText[format])
		}
		if p.Masked() != p {
			return fmt.Sprintf("%q has host bits set: the network is %s", s, p.Masked())
		}
	case FormatIP:
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Sprintf("%q is not %s", s, formatText[format])
		}
	case FormatMAC:
		if _, err := net.ParseMAC(s); err != nil {
			return fmt.Sprintf("%q is not %s", s, formatText[format])
		}
	case FormatIfname:
		if len(s) == 0 || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
			return fmt.Sprintf("%q is not %s", s, formatText[format])
		}
	}
	return ""
}

// parseNet turns text already checked by checkFormat into the field's type.
func parseNet(t reflect.Type, s string) reflect.Value {
	switch t {
	case prefixType:
		return reflect.ValueOf(netip.MustParsePrefix(s))
	case addrType:
		return reflect.ValueOf(netip.MustParseAddr(s))
	default:
		mac, _ := net.ParseMAC(s)
		return reflect.ValueOf(mac)
	}
}

// tagConstraints reads the constraint tags of a field into a: `min:"0"`
// and `max:"32"` (a duration's as "100ms"), `min_items:"1"` and
// `max_items:"64"`, `enum:"a,b,c"` and `format:"ifname"`. A tag that does
// not fit the field is a programming error.
func tagConstraints(sf reflect.StructField, a *Attribute) error {
	bound := func(tag string) (*float64, error) {
		text, ok := sf.Tag.Lookup(tag)
		if !ok {
			return nil, nil
		}
		switch a.Type {
		case TypeDuration:
			d, err := time.ParseDuration(text)
			if err != nil {
				return nil, fmt.Errorf("%s:%q: %w", tag, text, err)
			}
			f := d.Seconds()
			return &f, nil
		case TypeInteger, TypeNumber:
			f, err := strconv.ParseFloat(text, 64)
			if err != nil {
				return nil, fmt.Errorf("%s:%q: %w", tag, text, err)
			}
			return &f, nil
		}
		return nil, fmt.Errorf("%s applies to integers, numbers and durations, not %s", tag, a.Type)
	}
	var err error
	if a.Min, err = bound("min"); err != nil {
		return err
	}
	if a.Max, err = bound("max"); err != nil {
		return err
	}
	if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
		return fmt.Errorf("min %v is above max %v", *a.Min, *a.Max)
	}
	for tag, dst := range map[string]*int{"min_items": &a.MinItems, "max_items": &a.MaxItems} {
		if text, ok := sf.Tag.Lookup(tag); ok {
			if a.Type != TypeStringList {
				return fmt.Errorf("%s applies to lists, not %s", tag, a.Type)
			}
			if *dst, err = strconv.Atoi(text); err != nil || *dst < 0 {
				return fmt.Errorf("%s:%q is not a count", tag, text)
			}
		}
	}
	if a.MaxItems > 0 && a.MinItems > a.MaxItems {
		return fmt.Errorf("min_items %d is above max_items %d", a.MinItems, a.MaxItems)
	}
	stringy := a.Type == TypeString || a.Type == TypeStringList
	if text, ok := sf.Tag.Lookup("enum"); ok {
		if !stringy {
			return fmt.Errorf("enum applies to strings and lists, not %s", a.Type)
		}
		a.Enum = strings.Split(text, ",")
	}
	if text, ok := sf.Tag.Lookup("format"); ok {
		if _, known := formatText[text]; !known {
			return fmt.Errorf("unknown format %q (want cidr, ip, mac or ifname)", text)
		}
		if !stringy {
			return fmt.Errorf("format applies to strings and lists, not %s", a.Type)
		}
		if a.Format != "" && a.Format != text {
			return fmt.Errorf("format %q contradicts the field's type (%s)", text, a.Format)
		}
		a.Format = text
	}
	return nil
}

// checkConstraints applies a's constraints to a value attributeValue
// decoded, pointing at the offending element of a list where it can.
func checkConstraints(a Attribute, v any, expr hcl.Expression) hcl.Diagnostics {
	bad := func(rng hcl.Range, detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid value for %q", a.Name), Detail: detail, Subject: &rng}}
	}
	rng := expr.Range()
	outside := func(x float64, text string) hcl.Diagnostics {
		if (a.Min != nil && x < *a.Min) || (a.Max != nil && x > *a.Max) {
			return bad(rng, fmt.Sprintf("%s is out of range: %s", text, a.rangeText()))
		}
		return nil
	}
	element := func(s string, rng hcl.Range) hcl.Diagnostics {
		if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
			return bad(rng, fmt.Sprintf("%q is not one of %s", s, quoteAll(a.Enum)))
		}
		if why := checkFormat(a.Format, s); why != "" {
			return bad(rng, why)
		}
		return nil
	}
	switch x := v.(type) {
	case *big.Float:
		f, _ := x.Float64()
		return outside(f, numText(x))
	case time.Duration:
		return outside(x.Seconds(), x.String())
	case string:
		return element(x, rng)
	case []string:
		if len(x) < a.MinItems || (a.MaxItems > 0 && len(x) > a.MaxItems) {
			return bad(rng, fmt.Sprintf("the list has %d items: %s", len(x), a.itemsText()))
		}
		var elems []hclsyntax.Expression
		if tuple, ok := expr.(*hclsyntax.TupleConsExpr); ok && len(tuple.Exprs) == len(x) {
			elems = tuple.Exprs
		}
		for i, s := range x {
			at := rng
			if elems != nil {
				at = elems[i].Range()
			}
			if d := element(s, at); d != nil {
				return d
			}
		}
	}
	return nil
}

// Constraint describes the attribute's constraints in words for a
// reference page ("0 to 32", "1 to 64 items, each a network prefix ..."),
// or "" when it has none.
func (a Attribute) Constraint() string {
	var parts []string
	if r := a.rangeText(); r != "" {
		parts = append(parts, r)
	}
	if a.Type == TypeStringList {
		if it := a.itemsText(); it != "" {
			parts = append(parts, it)
		}
	}
	each := ""
	if a.Type == TypeStringList {
		each = "each "
	}
	if len(a.Enum) > 0 {
		parts = append(parts, each+"one of "+quoteAll(a.Enum))
	}
	if f, ok := formatText[a.Format]; ok {
		parts = append(parts, each+f)
	}
	return strings.Join(parts, "; ")
}

func (a Attribute) rangeText() string {
	show := func(f float64) string {
		if a.Type == TypeDuration {
			return time.Duration(f * float64(time.Second)).String()
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	switch {
	case a.Min != nil && a.Max != nil:
		return show(*a.Min) + " to " + show(*a.Max)
	case a.Min != nil:
		return "at least " + show(*a.Min)
	case a.Max != nil:
		return "at most " + show(*a.Max)
	}
	return ""
}

func (a Attribute) itemsText() string {
	items := func(n int) string {
		if n == 1 {
			return "1 item"
		}
		return fmt.Sprintf("%d items", n)
	}
	switch {
	case a.MinItems > 0 && a.MaxItems > 0:
		return fmt.Sprintf("%d to %s", a.MinItems, items(a.MaxItems))
	case a.MinItems > 0:
		return "at least " + items(a.MinItems)
	case a.MaxItems > 0:
		return "at most " + items(a.MaxItems)
	}
	return ""
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
