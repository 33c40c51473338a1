package sdk

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Attribute types a config schema may use.
const (
	TypeString = "string"
	TypeNumber = "number"
	// TypeInteger is a whole number; a Go field of an integer kind has it,
	// and Decode range-checks it against the field's kind.
	TypeInteger    = "integer"
	TypeBool       = "bool"
	TypeDuration   = "duration"
	TypeStringList = "list(string)"
	TypeStringMap  = "map(string)"
)

// Attribute describes one attribute of a plugin's config { } block.
type Attribute struct {
	Name        string
	Type        string
	Required    bool
	Description string
	// Default is the default rendered as HCL; empty when there is none.
	Default string

	// Constraints, each optional. Decode and the agent's check of a block
	// (Validate) apply them at the value's file:line:column, and `plugin
	// docs` shows them (Constraint). SchemaOf reads them from the tags
	// `min`, `max`, `min_items`, `max_items`, `enum` and `format`.

	// Min and Max bound an integer, a number or a duration (in seconds),
	// inclusive.
	Min, Max *float64
	// MinItems and MaxItems bound a list's length; 0 is no bound.
	MinItems, MaxItems int
	// Enum lists the values a string, or each element of a list, may take.
	Enum []string
	// Format is what a string, or each element of a list, must be:
	// FormatCIDR, FormatIP, FormatMAC or FormatIfname.
	Format string
}

// Schema describes a plugin's config { } block.
type Schema struct {
	Attributes []Attribute
}

// RawConfig is a plugin's config { } block as it stands in the agent's
// config: its source text and where that text starts, so that errors found
// while decoding it name the operator's file, line and column.
type RawConfig struct {
	Filename string
	Body     []byte
	Start    hcl.Pos
}

// ConfigError is a config that does not fit its schema. Its Error names
// file:line:column for every problem.
type ConfigError struct {
	Diagnostics hcl.Diagnostics
}

func (e *ConfigError) Error() string { return FormatDiagnostics(e.Diagnostics) }

// FormatDiagnostics renders HCL diagnostics one per line as
// "file:line:col: summary: detail".
func FormatDiagnostics(diags hcl.Diagnostics) string {
	lines := make([]string, 0, len(diags))
	for _, d := range diags {
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
		}
		lines = append(lines, msg)
	}
	return strings.Join(lines, "\n")
}

// Parse parses the block's source into an HCL body. An empty RawConfig is an
// empty body.
func (r RawConfig) Parse() (hcl.Body, hcl.Diagnostics) {
	if len(r.Body) == 0 {
		return hcl.EmptyBody(), nil
	}
	start := r.Start
	if start.Line == 0 {
		start = hcl.InitialPos
	}
	if diags := CheckNesting(r.Body, r.Filename, start); diags.HasErrors() {
		return nil, diags
	}
	f, diags := hclsyntax.ParseConfig(r.Body, r.Filename, start)
	if diags.HasErrors() {
		return nil, diags
	}
	return f.Body, nil
}

// Decode decodes the block into targets, pointers to structs whose fields
// carry `hcl:"name"` or `hcl:"name,optional"` tags (see SchemaOf). Several
// targets share one block: a plugin's own struct beside a shared options
// struct, say; an attribute name may appear in only one of them. Fields the
// block does not set keep their values, so fill targets with defaults
// first. Nothing is assigned unless the whole block decodes.
//
// A non-nil error is a *ConfigError whose every diagnostic names
// file:line:column: a syntax error, an unknown attribute (with HCL's
// did-you-mean), a value of the wrong type, a fraction for an integer field
// or a number out of the field's range. A bad target (not a pointer to a
// struct, an unsupported field type) is a programming error and comes back
// as a plain error.
func (r RawConfig) Decode(targets ...any) error {
	schema, fields, err := schemaOf(targets)
	if err != nil {
		return err
	}
	body, diags := r.Parse()
	if diags.HasErrors() {
		return &ConfigError{Diagnostics: diags}
	}
	_, err = decodeInto(body, schema, fields, nil, "")
	return err
}

// DecodeBody decodes a block the caller has parsed itself - a block of
// the agent's own configuration file - the way Decode decodes a plugin's:
// the attributes of body into targets (tagged structs, see SchemaOf),
// every problem at file:line:column with HCL's did-you-mean, nothing
// assigned unless every attribute fits. blocks names the nested block
// types body may hold: they come back in the content's Blocks, in order,
// for the caller to decode in turn (with DecodeBody again); the content's
// Attributes say where each attribute stands, for the checks the caller
// makes after decoding. prefix qualifies attribute names in messages:
// "etcd." gives `Invalid value for "etcd.endpoints"`.
//
// A non-nil error is a *ConfigError (the content is then what could be
// read, possibly nil), or a plain error for a bad target, as for Decode.
func DecodeBody(body hcl.Body, blocks []hcl.BlockHeaderSchema, prefix string, targets ...any) (*hcl.BodyContent, error) {
	schema, fields, err := schemaOf(targets)
	if err != nil {
		return nil, err
	}
	return decodeInto(body, schema, fields, blocks, prefix)
}

// decodeInto checks body against schema (and the nested block types
// blocks), converts every attribute to its field's type and assigns them
// all only when all fit.
func decodeInto(body hcl.Body, schema Schema, fields []boundField, blocks []hcl.BlockHeaderSchema, prefix string) (*hcl.BodyContent, error) {
	values, content, diags := decodeBody(body, schema, blocks, prefix)
	if diags.HasErrors() {
		return content, &ConfigError{Diagnostics: diags}
	}
	// Convert every value first and assign only when all fit.
	type set struct {
		fv reflect.Value
		v  reflect.Value
	}
	var sets []set
	for _, f := range fields {
		av, ok := values[f.name]
		if !ok {
			continue
		}
		v, d := convertTo(prefix+f.name, f.value.Type(), av)
		if d != nil {
			diags = append(diags, d)
			continue
		}
		sets = append(sets, set{f.value, v})
	}
	if diags.HasErrors() {
		return content, &ConfigError{Diagnostics: diags}
	}
	for _, s := range sets {
		s.fv.Set(s.v)
	}
	return content, nil
}

// AttrError reports a value that parses but is wrong - out of the range the
// plugin accepts, say - at the attribute's position in the agent's config,
// so that `config validate` and a refused reload name file:line:column.
// When the block does not set the attribute (its default is wrong), the
// position is the block's start. detail is a sentence for the operator.
func (r RawConfig) AttrError(attr, detail string) *ConfigError {
	return r.EntryError(attr, "", false, detail)
}

// EntryError is AttrError for one entry of a list(string) or map(string)
// attribute: the list element equal to entry, or the map key entry (its
// value instead when atValue is set). Without such an entry it points at
// the attribute.
func (r RawConfig) EntryError(attr, entry string, atValue bool, detail string) *ConfigError {
	rng := r.attrRange(attr, entry, atValue)
	return &ConfigError{Diagnostics: hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Invalid value for %q", attr),
		Detail:   detail,
		Subject:  &rng,
	}}}
}

// attrRange finds where attr (and entry, see EntryError) stands in the
// block, or the block's start.
func (r RawConfig) attrRange(attr, entry string, atValue bool) hcl.Range {
	start := r.Start
	if start.Line == 0 {
		start = hcl.InitialPos
	}
	whole := hcl.Range{Filename: r.Filename, Start: start, End: start}
	body, diags := r.Parse()
	if diags.HasErrors() {
		return whole
	}
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return whole
	}
	a, ok := sb.Attributes[attr]
	if !ok {
		return whole
	}
	rng := a.Expr.Range()
	if entry == "" {
		return rng
	}
	is := func(e hclsyntax.Expression) bool {
		v, d := e.Value(nil)
		return !d.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.String && v.AsString() == entry
	}
	switch e := a.Expr.(type) {
	case *hclsyntax.ObjectConsExpr:
		for _, item := range e.Items {
			if is(item.KeyExpr) {
				if atValue {
					return item.ValueExpr.Range()
				}
				return item.KeyExpr.Range()
			}
		}
	case *hclsyntax.TupleConsExpr:
		for _, x := range e.Exprs {
			if is(x) {
				return x.Range()
			}
		}
	}
	return rng
}

// Validate checks the block against a schema without decoding it into a Go
// value. The agent uses it with the schema a plugin reports, before it asks
// the plugin itself (ValidateConfig) about what only the plugin knows.
func (r RawConfig) Validate(schema Schema) error {
	body, diags := r.Parse()
	if !diags.HasErrors() {
		_, _, diags = decodeBody(body, schema, nil, "")
	}
	if diags.HasErrors() {
		return &ConfigError{Diagnostics: diags}
	}
	return nil
}

// attrValue is one decoded attribute: its value converted to the schema's
// type and where it stands.
type attrValue struct {
	v   any // string, *big.Float, bool, time.Duration, []string, map[string]string
	rng hcl.Range
}

// decodeBody checks body against schema and the nested block types
// blocks, and returns every attribute it sets with the body's content.
// Unknown attributes and blocks get HCL's did-you-mean. prefix qualifies
// attribute names in messages.
func decodeBody(body hcl.Body, schema Schema, blocks []hcl.BlockHeaderSchema, prefix string) (map[string]attrValue, *hcl.BodyContent, hcl.Diagnostics) {
	bs := &hcl.BodySchema{Blocks: blocks}
	byName := make(map[string]Attribute, len(schema.Attributes))
	for _, a := range schema.Attributes {
		bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required})
		byName[a.Name] = a
	}
	content, diags := body.Content(bs)
	values := make(map[string]attrValue, len(content.Attributes))
	names := make([]string, 0, len(content.Attributes))
	for name := range content.Attributes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		attr := content.Attributes[name]
		spec := byName[name]
		spec.Name = prefix + spec.Name
		v, d := attributeValue(attr, spec)
		diags = append(diags, d...)
		if v != nil {
			values[name] = attrValue{v: v, rng: attr.Expr.Range()}
		}
	}
	return values, content, diags
}

func attributeValue(attr *hcl.Attribute, spec Attribute) (any, hcl.Diagnostics) {
	val, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return nil, diags
	}
	if val.IsNull() {
		return nil, nil
	}
	rng := attr.Expr.Range()
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for %q", spec.Name),
			Detail:   detail,
			Subject:  &rng,
		}}
	}
	want := map[string]cty.Type{
		TypeString: cty.String, TypeDuration: cty.String, TypeNumber: cty.Number, TypeInteger: cty.Number, TypeBool: cty.Bool,
		TypeStringList: cty.List(cty.String), TypeStringMap: cty.Map(cty.String),
	}[spec.Type]
	if want == cty.NilType {
		return nil, bad(fmt.Sprintf("the schema gives the unknown type %q", spec.Type))
	}
	conv, err := convert.Convert(val, want)
	if err != nil {
		// cty's own message ("a number is required") says no more.
		return nil, bad(fmt.Sprintf("%s is required, not %s", article(spec.Type), val.Type().FriendlyName()))
	}
	if !conv.IsWhollyKnown() {
		return nil, bad("the value must be known without variables")
	}
	switch spec.Type {
	case TypeString:
		return conv.AsString(), checkConstraints(spec, conv.AsString(), attr.Expr)
	case TypeDuration:
		d, err := time.ParseDuration(conv.AsString())
		if err != nil || d < 0 {
			return nil, bad(fmt.Sprintf("%q is not a duration such as \"100ms\" or \"30s\"", conv.AsString()))
		}
		return d, checkConstraints(spec, d, attr.Expr)
	case TypeNumber, TypeInteger:
		f := conv.AsBigFloat()
		if f.IsInf() {
			return nil, bad("the number is out of range")
		}
		if spec.Type == TypeInteger && !f.IsInt() {
			return nil, bad(fmt.Sprintf("%s is not a whole number", numText(f)))
		}
		return f, checkConstraints(spec, f, attr.Expr)
	case TypeBool:
		return conv.True(), nil
	case TypeStringList:
		out := []string{}
		for _, e := range conv.AsValueSlice() {
			if e.IsNull() {
				return nil, bad("list elements must not be null")
			}
			out = append(out, e.AsString())
		}
		return out, checkConstraints(spec, out, attr.Expr)
	default: // TypeStringMap
		out := map[string]string{}
		for k, e := range conv.AsValueMap() {
			if e.IsNull() {
				return nil, bad(fmt.Sprintf("map element %q must not be null", k))
			}
			out[k] = e.AsString()
		}
		return out, nil
	}
}

// field is one tagged struct field.
type field struct {
	index    int
	name     string
	optional bool
	help     string
}

func taggedFields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("hcl")
		if !ok || !sf.IsExported() {
			continue
		}
		parts := strings.Split(tag, ",")
		f := field{index: i, name: parts[0], help: sf.Tag.Get("help")}
		for _, p := range parts[1:] {
			if p == "optional" {
				f.optional = true
			}
		}
		if f.name != "" {
			out = append(out, f)
		}
	}
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

func typeName(t reflect.Type) (string, bool) {
	if typ, _, ok := netTypeName(t); ok {
		return typ, true
	}
	if t == durationType {
		return TypeDuration, true
	}
	switch t.Kind() {
	case reflect.String:
		return TypeString, true
	case reflect.Bool:
		return TypeBool, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return TypeInteger, true
	case reflect.Float32, reflect.Float64:
		return TypeNumber, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return TypeStringList, true
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return TypeStringMap, true
		}
	}
	return "", false
}

// SchemaOf derives a schema from pointers to structs, in order (see Decode
// for several). Fields tagged `hcl:"name"` are required,
// `hcl:"name,optional"` optional; a `help:"..."` tag is the description.
// Supported field types: string, bool, integers, floats, time.Duration,
// []string, map[string]string, and netip.Prefix, netip.Addr and
// net.HardwareAddr (schema type string with that format) and slices of
// them (list(string)). Non-zero values are reported as defaults. The tags
// `min`, `max`, `min_items`, `max_items`, `enum` and `format` add
// constraints (see Attribute):
//
//	MaxPrefix int            `hcl:"max_prefix,optional" min:"0" max:"32"`
//	Deny      []netip.Prefix `hcl:"deny" min_items:"1"`
//	Mode      string         `hcl:"mode,optional" enum:"strict,loose"`
func SchemaOf(targets ...any) (Schema, error) {
	s, _, err := schemaOf(targets)
	return s, err
}

// boundField is a tagged field of one of Decode's targets.
type boundField struct {
	field
	value reflect.Value
}

func schemaOf(targets []any) (Schema, []boundField, error) {
	var s Schema
	var fields []boundField
	seen := map[string]bool{}
	if len(targets) == 0 {
		return Schema{}, nil, fmt.Errorf("sdk: no config struct given")
	}
	for _, v := range targets {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
			return Schema{}, nil, fmt.Errorf("sdk: want a pointer to a struct, got %T", v)
		}
		rv = rv.Elem()
		for _, f := range taggedFields(rv.Type()) {
			fv := rv.Field(f.index)
			tn, ok := typeName(fv.Type())
			if !ok {
				return Schema{}, nil, fmt.Errorf("sdk: field %s (%q) has unsupported type %s", rv.Type().Field(f.index).Name, f.name, fv.Type())
			}
			if seen[f.name] {
				return Schema{}, nil, fmt.Errorf("sdk: attribute %q is defined twice", f.name)
			}
			seen[f.name] = true
			a := Attribute{Name: f.name, Type: tn, Required: !f.optional, Description: f.help}
			_, a.Format, _ = netTypeName(fv.Type())
			if err := tagConstraints(rv.Type().Field(f.index), &a); err != nil {
				return Schema{}, nil, fmt.Errorf("sdk: field %s (%q): %w", rv.Type().Field(f.index).Name, f.name, err)
			}
			if !fv.IsZero() {
				a.Default = renderHCL(fv)
			}
			s.Attributes = append(s.Attributes, a)
			fields = append(fields, boundField{f, fv})
		}
	}
	return s, fields, nil
}

// MustSchemaOf is SchemaOf for package-level use with a known-good struct.
func MustSchemaOf(targets ...any) Schema {
	s, err := SchemaOf(targets...)
	if err != nil {
		panic(err)
	}
	return s
}

func renderHCL(v reflect.Value) string {
	if v.Type() == durationType {
		return fmt.Sprintf("%q", time.Duration(v.Int()).String())
	}
	if _, ok := netTypes[v.Type()]; ok {
		return fmt.Sprintf("%q", fmt.Sprint(v.Interface()))
	}
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprintf("%q", fmt.Sprint(v.Index(i).Interface()))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%q = %q", k, v.MapIndex(reflect.ValueOf(k)).String())
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	default:
		return fmt.Sprint(v.Interface())
	}
}

// convertTo turns a decoded value into a value of Go type t, or says at
// the attribute's position why it does not fit.
func convertTo(name string, t reflect.Type, av attrValue) (reflect.Value, *hcl.Diagnostic) {
	switch x := av.v.(type) {
	case string:
		if _, ok := netTypes[t]; ok {
			return parseNet(t, x), nil
		}
	case []string:
		if _, ok := netTypes[t.Elem()]; ok {
			out := reflect.MakeSlice(t, len(x), len(x))
			for i, s := range x {
				out.Index(i).Set(parseNet(t.Elem(), s))
			}
			return out, nil
		}
	}
	bf, ok := av.v.(*big.Float)
	if !ok {
		return reflect.ValueOf(av.v).Convert(t), nil
	}
	rng := av.rng
	bad := func(detail string) *hcl.Diagnostic {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid value for %q", name), Detail: detail, Subject: &rng}
	}
	out := reflect.New(t).Elem()
	text := numText(bf)
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		f, _ := bf.Float64()
		if math.IsInf(f, 0) || out.OverflowFloat(f) {
			return out, bad(fmt.Sprintf("%s is out of range", text))
		}
		out.SetFloat(f)
		return out, nil
	}
	if !bf.IsInt() {
		return out, bad(fmt.Sprintf("%s is not a whole number", text))
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, acc := bf.Uint64()
		if bf.Sign() < 0 || acc != big.Exact || out.OverflowUint(u) {
			return out, bad(fmt.Sprintf("%s is out of range: 0 to %d", text, maxUint(t)))
		}
		out.SetUint(u)
	default:
		i, acc := bf.Int64()
		if acc != big.Exact || out.OverflowInt(i) {
			lo, hi := intRange(t)
			return out, bad(fmt.Sprintf("%s is out of range: %d to %d", text, lo, hi))
		}
		out.SetInt(i)
	}
	return out, nil
}

// numText renders a number for a message: whole numbers of sensible size
// in full, others short.
func numText(f *big.Float) string {
	if f.IsInt() && f.MantExp(nil) <= 70 {
		return f.Text('f', 0)
	}
	return f.Text('g', 10)
}

func maxUint(t reflect.Type) uint64 { return math.MaxUint64 >> (64 - t.Bits()) }

func intRange(t reflect.Type) (int64, int64) {
	hi := int64(math.MaxInt64 >> (64 - t.Bits()))
	return -hi - 1, hi
}

// article puts "a" or "an" before a schema type for a message.
func article(typ string) string {
	if strings.IndexByte("aeiou", typ[0]) >= 0 {
		return "an " + typ
	}
	return "a " + typ
}
