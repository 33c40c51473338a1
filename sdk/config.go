package sdk

import (
	"fmt"
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
	TypeString     = "string"
	TypeNumber     = "number"
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

// Decode decodes the block into target, a pointer to a struct whose fields
// carry `hcl:"name"` or `hcl:"name,optional"` tags (see SchemaOf). Fields the
// block does not set keep their values, so fill target with defaults first.
// A non-nil error is a *ConfigError.
func (r RawConfig) Decode(target any) error {
	schema, err := SchemaOf(target)
	if err != nil {
		return err
	}
	body, diags := r.Parse()
	if diags.HasErrors() {
		return &ConfigError{Diagnostics: diags}
	}
	values, diags := DecodeBody(body, schema)
	if diags.HasErrors() {
		return &ConfigError{Diagnostics: diags}
	}
	return assign(target, values)
}

// Validate checks the block against a schema without decoding it into a Go
// value. The agent uses it with the schema a plugin reports.
func (r RawConfig) Validate(schema Schema) error {
	body, diags := r.Parse()
	if !diags.HasErrors() {
		_, diags = DecodeBody(body, schema)
	}
	if diags.HasErrors() {
		return &ConfigError{Diagnostics: diags}
	}
	return nil
}

// DecodeBody checks body against schema and returns the Go value of every
// attribute it sets: string, float64, bool, time.Duration, []string or
// map[string]string. Unknown attributes get HCL's did-you-mean.
func DecodeBody(body hcl.Body, schema Schema) (map[string]any, hcl.Diagnostics) {
	bs := &hcl.BodySchema{}
	byName := make(map[string]Attribute, len(schema.Attributes))
	for _, a := range schema.Attributes {
		bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required})
		byName[a.Name] = a
	}
	content, diags := body.Content(bs)
	values := make(map[string]any, len(content.Attributes))
	names := make([]string, 0, len(content.Attributes))
	for name := range content.Attributes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		attr := content.Attributes[name]
		v, d := attributeValue(attr, byName[name])
		diags = append(diags, d...)
		if v != nil {
			values[name] = v
		}
	}
	return values, diags
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
			Summary:  fmt.Sprintf("Invalid value for %q", attr.Name),
			Detail:   detail,
			Subject:  &rng,
		}}
	}
	want := map[string]cty.Type{
		TypeString: cty.String, TypeDuration: cty.String, TypeNumber: cty.Number, TypeBool: cty.Bool,
		TypeStringList: cty.List(cty.String), TypeStringMap: cty.Map(cty.String),
	}[spec.Type]
	if want == cty.NilType {
		return nil, bad(fmt.Sprintf("the schema gives the unknown type %q", spec.Type))
	}
	conv, err := convert.Convert(val, want)
	if err != nil {
		return nil, bad(fmt.Sprintf("a %s is required: %s", spec.Type, err))
	}
	if !conv.IsWhollyKnown() {
		return nil, bad("the value must be known without variables")
	}
	switch spec.Type {
	case TypeString:
		return conv.AsString(), nil
	case TypeDuration:
		d, err := time.ParseDuration(conv.AsString())
		if err != nil || d < 0 {
			return nil, bad(fmt.Sprintf("%q is not a duration such as \"100ms\" or \"30s\"", conv.AsString()))
		}
		return d, nil
	case TypeNumber:
		f, _ := conv.AsBigFloat().Float64()
		return f, nil
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
		return out, nil
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
	if t == durationType {
		return TypeDuration, true
	}
	switch t.Kind() {
	case reflect.String:
		return TypeString, true
	case reflect.Bool:
		return TypeBool, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
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

// SchemaOf derives a schema from a pointer to a struct. Fields tagged
// `hcl:"name"` are required, `hcl:"name,optional"` optional; a `help:"..."`
// tag is the description. Supported field types: string, bool, integers,
// floats, time.Duration, []string and map[string]string. Non-zero values in
// v are reported as defaults.
func SchemaOf(v any) (Schema, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return Schema{}, fmt.Errorf("sdk.SchemaOf: want a pointer to a struct, got %T", v)
	}
	rv = rv.Elem()
	var s Schema
	for _, f := range taggedFields(rv.Type()) {
		fv := rv.Field(f.index)
		tn, ok := typeName(fv.Type())
		if !ok {
			return Schema{}, fmt.Errorf("sdk.SchemaOf: field %s (%q) has unsupported type %s", rv.Type().Field(f.index).Name, f.name, fv.Type())
		}
		a := Attribute{Name: f.name, Type: tn, Required: !f.optional, Description: f.help}
		if !fv.IsZero() {
			a.Default = renderHCL(fv)
		}
		s.Attributes = append(s.Attributes, a)
	}
	return s, nil
}

// MustSchemaOf is SchemaOf for package-level use with a known-good struct.
func MustSchemaOf(v any) Schema {
	s, err := SchemaOf(v)
	if err != nil {
		panic(err)
	}
	return s
}

func renderHCL(v reflect.Value) string {
	if v.Type() == durationType {
		return fmt.Sprintf("%q", time.Duration(v.Int()).String())
	}
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprintf("%q", v.Index(i).String())
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

func assign(target any, values map[string]any) error {
	rv := reflect.ValueOf(target).Elem()
	for _, f := range taggedFields(rv.Type()) {
		v, ok := values[f.name]
		if !ok {
			continue
		}
		fv := rv.Field(f.index)
		switch x := v.(type) {
		case float64:
			if err := setNumber(fv, x); err != nil {
				return fmt.Errorf("config attribute %q: %w", f.name, err)
			}
		default:
			fv.Set(reflect.ValueOf(x).Convert(fv.Type()))
		}
	}
	return nil
}

func setNumber(fv reflect.Value, x float64) error {
	switch fv.Kind() {
	case reflect.Float32, reflect.Float64:
		fv.SetFloat(x)
		return nil
	}
	bf := big.NewFloat(x)
	if !bf.IsInt() {
		return fmt.Errorf("%v is not a whole number", x)
	}
	switch fv.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if x < 0 || fv.OverflowUint(uint64(x)) {
			return fmt.Errorf("%v is out of range", x)
		}
		fv.SetUint(uint64(x))
	default:
		if fv.OverflowInt(int64(x)) {
			return fmt.Errorf("%v is out of range", x)
		}
		fv.SetInt(int64(x))
	}
	return nil
}
