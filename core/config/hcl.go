package config

import (
	"bytes"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// PluginNameRE is what a plugin name must match.
var PluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func attrSchema(keys map[string]*keySpec) []hcl.AttributeSchema {
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		out[i] = hcl.AttributeSchema{Name: n}
	}
	return out
}

var (
	topKeys     = keysIn("")
	metricsKeys = keysIn("metrics.")
	ipamKeys    = keysIn("ipam.")
	superKeys   = keysIn("supervisor.")

	topSchema = &hcl.BodySchema{
		Attributes: attrSchema(topKeys),
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "metrics"},
			{Type: "ipam"},
			{Type: "etcd"},
			{Type: "supervisor"},
			{Type: "plugin", LabelNames: []string{"name"}},
		},
	}
	metricsSchema = &hcl.BodySchema{Attributes: attrSchema(metricsKeys)}
	ipamSchema    = &hcl.BodySchema{Attributes: attrSchema(ipamKeys)}
	superSchema   = &hcl.BodySchema{Attributes: attrSchema(superKeys)}
	pluginSchema  = func() *hcl.BodySchema {
		keys := map[string]*keySpec{}
		for _, k := range pluginKeys {
			keys[k.name] = k
		}
		return &hcl.BodySchema{
			Attributes: attrSchema(keys),
			Blocks:     []hcl.BlockHeaderSchema{{Type: "config"}},
		}
	}()
)

// diags records HCL diagnostics (errors only) as problems.
func (l *loader) diags(ds hcl.Diagnostics) {
	for _, d := range ds {
		if d.Severity != hcl.DiagError {
			continue
		}
		src := Source{Kind: KindFile}
		if d.Subject != nil {
			src.Where = posString(d.Subject.Filename, d.Subject.Start)
		}
		l.err.Diagnostics = append(l.err.Diagnostics, d)
		l.err.Problems = append(l.err.Problems, Problem{Source: src, Message: sdk.FormatDiagnostics(hcl.Diagnostics{d})})
	}
}

func posString(file string, p hcl.Pos) string {
	return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
}

// loadHCL applies one HCL file.
func (l *loader) loadHCL(path string) {
	src, err := ReadFile(path)
	if err != nil {
		l.problem(Source{Kind: KindFile, Where: path}, "%s", fileErr(path, err))
		return
	}
	l.c.Files = append(l.c.Files, path)
	if ds := sdk.CheckNesting(src, path, hcl.InitialPos); ds.HasErrors() {
		// HCL's parser would recurse until the stack overflows.
		l.diags(ds)
		return
	}
	f, ds := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if ds.HasErrors() {
		l.diags(ds)
		return
	}
	content, ds := f.Body.Content(topSchema)
	l.diags(ds)

	for _, attr := range sortedAttrs(content.Attributes) {
		k := topKeys[attr.Name]
		l.applyAttr(attr, k, k.ptr(l.c), k.name)
	}
	seen := map[string]hcl.Range{}
	for _, blk := range content.Blocks {
		id := blk.Type
		if blk.Type == "plugin" {
			id += " " + strconv.Quote(blk.Labels[0])
		}
		if prev, dup := seen[id]; dup {
			rng := blk.DefRange
			l.diags(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Duplicate " + blk.Type + " block",
				Detail:   fmt.Sprintf("A %s block is already declared at %s in this file; put its settings in that block.", id, posString(prev.Filename, prev.Start)),
				Subject:  &rng,
			}})
			continue
		}
		seen[id] = blk.DefRange
		switch blk.Type {
		case "metrics":
			l.applyBlock(blk, metricsSchema, metricsKeys)
		case "ipam":
			l.applyBlock(blk, ipamSchema, ipamKeys)
		case "supervisor":
			l.applyBlock(blk, superSchema, superKeys)
		case "etcd":
			l.applyEtcd(blk)
		case "plugin":
			l.applyPlugin(blk, src, path)
		}
	}
}

func sortedAttrs(m hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Range.Start.Byte < out[j].Range.Start.Byte })
	return out
}

// applyBlock applies a metrics or ipam block.
func (l *loader) applyBlock(blk *hcl.Block, schema *hcl.BodySchema, keys map[string]*keySpec) {
	content, ds := blk.Body.Content(schema)
	l.diags(ds)
	for _, attr := range sortedAttrs(content.Attributes) {
		k := keys[attr.Name]
		l.applyAttr(attr, k, k.ptr(l.c), k.name)
	}
}

// applyPlugin merges a plugin block into its plugin: attributes override
// what earlier files set one by one, a config block replaces the earlier one.
func (l *loader) applyPlugin(blk *hcl.Block, src []byte, path string) {
	name := blk.Labels[0]
	if !PluginNameRE.MatchString(name) {
		rng := blk.LabelRanges[0]
		l.diags(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid plugin name",
			Detail:   fmt.Sprintf("%q must match %s: lowercase letters, digits and dashes, not starting with a dash.", name, PluginNameRE),
			Subject:  &rng,
		}})
		return
	}
	p := l.c.Plugin(name)
	if p == nil {
		p = l.c.addPlugin(name)
	}
	if p.DeclRange == (hcl.Range{}) {
		p.DeclRange = blk.DefRange
	}
	content, ds := blk.Body.Content(pluginSchema)
	l.diags(ds)
	for _, attr := range sortedAttrs(content.Attributes) {
		k := pluginKeySpec(attr.Name)
		l.applyAttr(attr, k, k.pptr(p), pluginKey(name, k.name))
	}
	for i, cb := range content.Blocks {
		if i > 0 {
			rng := cb.DefRange
			first := content.Blocks[0].DefRange
			l.diags(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Duplicate config block",
				Detail:   fmt.Sprintf("Plugin %q already has a config block at %s; put its settings in that block.", name, posString(first.Filename, first.Start)),
				Subject:  &rng,
			}})
			continue
		}
		raw, ok := rawConfig(blk, cb, src, path)
		if !ok {
			rng := cb.DefRange
			l.diags(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Unreadable config block",
				Detail:   "The text of the block could not be located in the file.",
				Subject:  &rng,
			}})
			continue
		}
		p.Config = raw
		l.c.setSource(pluginKey(name, "config"), Source{Kind: KindFile, Where: posString(path, cb.DefRange.Start)})
	}
}

// rawConfig extracts the source text strictly between the braces of the
// config block cb inside the plugin block blk.
func rawConfig(blk, cb *hcl.Block, src []byte, path string) (sdk.RawConfig, bool) {
	parent, ok := blk.Body.(*hclsyntax.Body)
	if !ok {
		return sdk.RawConfig{}, false
	}
	for _, sb := range parent.Blocks {
		if sb.Type != "config" || hcl.Body(sb.Body) != cb.Body {
			continue
		}
		open, closing := sb.OpenBraceRange, sb.CloseBraceRange
		from, to := open.End.Byte, closing.Start.Byte
		if from < 0 || from > to || to > len(src) {
			return sdk.RawConfig{}, false
		}
		return sdk.RawConfig{
			Filename: path,
			Body:     bytes.Clone(src[from:to]),
			Start:    open.End,
		}, true
	}
	return sdk.RawConfig{}, false
}

// applyAttr evaluates attr as a value of k and stores it through dst,
// recording key's source.
func (l *loader) applyAttr(attr *hcl.Attribute, k *keySpec, dst any, key string) {
	val, ds := attr.Expr.Value(nil)
	if ds.HasErrors() {
		l.diags(ds)
		return
	}
	if val.IsNull() {
		return // null leaves the value as the lower layers set it
	}
	v, detail := k.fromCty(val)
	if detail != "" {
		rng := attr.Expr.Range()
		l.diags(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for %q", key),
			Detail:   detail,
			Subject:  &rng,
		}})
		return
	}
	set(dst, v)
	l.c.setSource(key, Source{Kind: KindFile, Where: posString(attr.Range.Filename, attr.Range.Start)})
}

// fromCty converts an HCL value to k's Go type and checks it. detail is
// non-empty when the value does not fit.
func (k *keySpec) fromCty(val cty.Value) (v any, detail string) {
	if !val.IsWhollyKnown() {
		return nil, "The value must be known without variables."
	}
	typeName := map[valueKind]string{kindString: "a string", kindInt: "a whole number", kindBool: "a boolean", kindDuration: "a duration string"}[k.kind]
	want := map[valueKind]cty.Type{kindString: cty.String, kindInt: cty.Number, kindBool: cty.Bool, kindDuration: cty.String}[k.kind]
	conv, err := convert.Convert(val, want)
	if err != nil || conv.IsNull() {
		return nil, fmt.Sprintf("%s is required, not %s.", upperFirst(typeName), val.Type().FriendlyName())
	}
	var shown string
	switch k.kind {
	case kindString:
		v, shown = conv.AsString(), strconv.Quote(conv.AsString())
	case kindBool:
		v, shown = conv.True(), strconv.FormatBool(conv.True())
	case kindInt:
		bf := conv.AsBigFloat()
		shown = showNumber(bf)
		n, acc := bf.Int64()
		if !bf.IsInt() || acc != big.Exact || int64(int(n)) != n {
			return nil, fmt.Sprintf("%s is not %s.", shown, k.want)
		}
		v = int(n)
	case kindDuration:
		s := conv.AsString()
		shown = strconv.Quote(s)
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Sprintf("%s is not %s.", shown, k.want)
		}
		v = d
	}
	checked, ok := k.check(v)
	if !ok {
		return nil, fmt.Sprintf("%s is not %s.", shown, k.want)
	}
	return checked, ""
}

// showNumber renders a number for an error message. Exact decimal rendering
// of a huge exponent ("1e9999999") takes seconds, so such numbers are shown
// through float64.
func showNumber(bf *big.Float) string {
	if exp := bf.MantExp(nil); exp > -64 && exp < 64 {
		return bf.Text('g', 20)
	}
	f, _ := bf.Float64()
	if f == 0 && bf.Sign() != 0 {
		return "a number close to 0"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
