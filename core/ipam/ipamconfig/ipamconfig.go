// Package ipamconfig reads the IPAM pools from the *.hcl files of
// --ipam-config-dir, in lexical order, with hcl/v2 like the agent's own
// configuration: every problem at file:line:col, an unknown attribute gets
// a did-you-mean, and a directory with any problem yields no pools at all.
//
//	pool "lan4" {
//	  subnet             = "10.20.0.0/24"
//	  ranges             = ["10.20.0.10-10.20.0.200", "10.20.0.224/28"]
//	  exclude            = ["10.20.0.57"]
//	  gateway            = "10.20.0.1"
//	  vlan               = 20
//	  conflict_detection = true
//	  gateway_detection  = true
//	  quarantine         = "10m"
//	  store              = "local"
//	  route { dst = "0.0.0.0/0" }          # gw defaults to the gateway
//	}
//
// A pool is defined once: a second definition (in any file) is an error
// naming both places.
package ipamconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Limits of the directory. Each file has the bounds of the agent's own
// configuration files (config.ReadFile: regular, at most 1 MiB).
const (
	MaxFiles = 256
	MaxPools = 1024
)

// Error lists every problem of the directory.
type Error struct {
	Diagnostics hcl.Diagnostics
}

func (e *Error) Error() string {
	return "invalid IPAM configuration:\n" + sdk.FormatDiagnostics(e.Diagnostics)
}

// Result is what Load read.
type Result struct {
	Pools []*ipam.Pool
	Files []string
}

var (
	topSchema  = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "pool", LabelNames: []string{"name"}}}}
	poolAttrs  = []string{"subnet", "ranges", "exclude", "gateway", "vlan", "conflict_detection", "gateway_detection", "quarantine", "store"}
	poolSchema = func() *hcl.BodySchema {
		s := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "route"}}}
		for _, a := range poolAttrs {
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a, Required: a == "subnet"})
		}
		return s
	}()
	routeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "dst", Required: true}, {Name: "gw"}}}
)

// Load reads the pools of dir. maxSize is ipam.max_allocated_ips.
func Load(dir string, maxSize int) (Result, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return Result{}, fmt.Errorf("IPAM config dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return Result{}, fmt.Errorf("IPAM config dir %s: not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Result{}, fmt.Errorf("IPAM config dir %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".hcl") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	if len(files) > MaxFiles {
		return Result{}, fmt.Errorf("IPAM config dir %s: %d .hcl files, at most %d", dir, len(files), MaxFiles)
	}
	l := &loader{max: maxSize, seen: map[string]hcl.Range{}}
	for _, f := range files {
		l.file(f)
	}
	if l.diags.HasErrors() {
		return Result{}, &Error{Diagnostics: l.diags}
	}
	return Result{Pools: l.pools, Files: files}, nil
}

type loader struct {
	max   int
	diags hcl.Diagnostics
	pools []*ipam.Pool
	seen  map[string]hcl.Range
}

func (l *loader) errAt(rng hcl.Range, summary, detail string) {
	r := rng
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: &r})
}

func (l *loader) file(path string) {
	src, err := config.ReadFile(path)
	if err != nil {
		l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unreadable file", Detail: err.Error(),
			Subject: &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos}})
		return
	}
	if ds := sdk.CheckNesting(src, path, hcl.InitialPos); ds.HasErrors() {
		l.diags = append(l.diags, ds...)
		return
	}
	f, ds := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if ds.HasErrors() {
		l.diags = append(l.diags, ds...)
		return
	}
	content, ds := f.Body.Content(topSchema)
	l.diags = append(l.diags, ds...)
	for _, blk := range content.Blocks {
		l.pool(blk)
	}
}

func (l *loader) pool(blk *hcl.Block) {
	name := blk.Labels[0]
	if err := ipamapi.ValidatePoolName("name", name); err != nil {
		l.errAt(blk.LabelRanges[0], "Invalid pool name", err.(*ipamapi.FieldError).Msg)
		return
	}
	if prev, dup := l.seen[name]; dup {
		l.errAt(blk.DefRange, "Duplicate pool", fmt.Sprintf("Pool %q is already defined at %s:%d:%d.", name, prev.Filename, prev.Start.Line, prev.Start.Column))
		return
	}
	l.seen[name] = blk.DefRange
	if len(l.seen) > MaxPools {
		l.errAt(blk.DefRange, "Too many pools", fmt.Sprintf("At most %d pools.", MaxPools))
		return
	}
	content, ds := blk.Body.Content(poolSchema)
	l.diags = append(l.diags, ds...)
	if ds.HasErrors() {
		return
	}
	spec := ipam.PoolSpec{Name: name, ConflictDetection: true}
	ranges := map[string]hcl.Range{}
	ok := true
	for _, a := range poolAttrs {
		attr := content.Attributes[a]
		if attr == nil {
			continue
		}
		ranges[a] = attr.Expr.Range()
		if tup, isTuple := attr.Expr.(*hclsyntax.TupleConsExpr); isTuple {
			for i, e := range tup.Exprs {
				ranges[fmt.Sprintf("%s[%d]", a, i)] = e.Range()
			}
		}
		switch a {
		case "subnet":
			ok = l.str(attr, &spec.Subnet) && ok
		case "gateway":
			ok = l.str(attr, &spec.Gateway) && ok
		case "store":
			ok = l.str(attr, &spec.Store) && ok
		case "ranges":
			ok = l.list(attr, &spec.Ranges) && ok
		case "exclude":
			ok = l.list(attr, &spec.Exclude) && ok
		case "vlan":
			ok = l.int(attr, &spec.VLAN) && ok
		case "conflict_detection":
			ok = l.bool(attr, &spec.ConflictDetection) && ok
		case "gateway_detection":
			ok = l.bool(attr, &spec.GatewayDetection) && ok
		case "quarantine":
			var s string
			if l.str(attr, &s) {
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 {
					l.errAt(attr.Expr.Range(), `Invalid value for "quarantine"`, fmt.Sprintf("%q is not a positive duration such as \"10m\".", s))
					ok = false
				} else {
					spec.Quarantine = d
				}
			} else {
				ok = false
			}
		}
	}
	for i, rb := range content.Blocks {
		rc, ds := rb.Body.Content(routeSchema)
		l.diags = append(l.diags, ds...)
		if ds.HasErrors() {
			ok = false
			continue
		}
		var r ipam.RouteSpec
		ok = l.str(rc.Attributes["dst"], &r.Dst) && ok
		if g := rc.Attributes["gw"]; g != nil {
			ok = l.str(g, &r.GW) && ok
			ranges[fmt.Sprintf("routes[%d].gw", i)] = g.Expr.Range()
		}
		ranges[fmt.Sprintf("routes[%d].dst", i)] = rc.Attributes["dst"].Expr.Range()
		spec.Routes = append(spec.Routes, r)
	}
	if !ok {
		return
	}
	p, err := ipam.NewPool(spec, l.max)
	if err != nil {
		rng := blk.DefRange
		detail := err.Error()
		var fe *ipam.FieldError
		if errors.As(err, &fe) {
			if r, ok := ranges[fe.Field]; ok {
				rng = r
			} else if i := strings.IndexByte(fe.Field, '['); i > 0 {
				if r, ok := ranges[fe.Field[:i]]; ok {
					rng = r
				}
			}
			detail = fe.Field + ": " + fe.Msg
		}
		if errors.Is(err, ipam.ErrPoolTooLarge) {
			// "pool too large: pool "x" has N addresses, ..."
			detail = strings.TrimPrefix(detail, ipam.ErrPoolTooLarge.Error()+": ")
			l.errAt(rng, "Pool too large", upper(detail)+".")
			return
		}
		l.errAt(rng, "Invalid pool", fmt.Sprintf("Pool %q: %s.", name, strings.TrimSuffix(detail, ".")))
		return
	}
	l.pools = append(l.pools, p)
}

func (l *loader) value(attr *hcl.Attribute, want cty.Type, what string) (cty.Value, bool) {
	v, ds := attr.Expr.Value(nil)
	if ds.HasErrors() {
		l.diags = append(l.diags, ds...)
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() || v.IsNull() {
		l.errAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", attr.Name), upper(what)+" is required.")
		return cty.NilVal, false
	}
	c, err := convert.Convert(v, want)
	if err != nil {
		l.errAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", attr.Name), fmt.Sprintf("%s is required, not %s.", upper(what), v.Type().FriendlyName()))
		return cty.NilVal, false
	}
	return c, true
}

func upper(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func (l *loader) str(attr *hcl.Attribute, dst *string) bool {
	v, ok := l.value(attr, cty.String, "a string")
	if ok {
		*dst = v.AsString()
	}
	return ok
}

func (l *loader) bool(attr *hcl.Attribute, dst *bool) bool {
	v, ok := l.value(attr, cty.Bool, "a boolean")
	if ok {
		*dst = v.True()
	}
	return ok
}

func (l *loader) int(attr *hcl.Attribute, dst *int) bool {
	v, ok := l.value(attr, cty.Number, "a whole number")
	if !ok {
		return false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != 0 || n < 0 || n > 1<<20 {
		l.errAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", attr.Name), "A whole number between 0 and 4094 is required.")
		return false
	}
	*dst = int(n)
	return true
}

func (l *loader) list(attr *hcl.Attribute, dst *[]string) bool {
	v, ok := l.value(attr, cty.List(cty.String), "a list of strings")
	if !ok {
		return false
	}
	for _, e := range v.AsValueSlice() {
		if e.IsNull() {
			l.errAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", attr.Name), "The list has a null element.")
			return false
		}
		*dst = append(*dst, e.AsString())
	}
	return true
}
