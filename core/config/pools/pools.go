// Package pools reads the IPAM pools from the *.hcl files of
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
//	  domain             = "vlan20"        # layer-2 domain, default "default"
//	  defend             = true            # answer a claim of a held address, default false
//	  route { dst = "0.0.0.0/0" }          # gw defaults to the gateway
//	}
//
// A pool is defined once: a second definition (in any file) is an error
// naming both places. Two pools of one domain that would hand out the same
// address, or a pool that would hand out another one's gateway, are an
// error naming both pools at their file:line:col (the store keys addresses
// per domain, so such pools could never give one address twice; this is
// the error that says so before a workload finds out).
package pools

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
	poolAttrs  = []string{"subnet", "ranges", "exclude", "gateway", "vlan", "conflict_detection", "gateway_detection", "quarantine", "store", "domain", "defend"}
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
	l := &loader{max: maxSize, seen: map[string]hcl.Range{}, at: map[*ipam.Pool]poolPos{}}
	for _, f := range files {
		l.file(f)
	}
	if !l.diags.HasErrors() {
		l.overlaps()
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
	at    map[*ipam.Pool]poolPos
}

// poolPos is where a loaded pool's addresses and gateway are written.
type poolPos struct {
	addrs   hcl.Range // ranges, or subnet when the pool has no ranges
	gateway hcl.Range
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
		case "domain":
			ok = l.str(attr, &spec.Domain) && ok
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
		case "defend":
			ok = l.bool(attr, &spec.Defend) && ok
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
	pos := poolPos{addrs: ranges["subnet"], gateway: ranges["gateway"]}
	if r, ok := ranges["ranges"]; ok {
		pos.addrs = r
	}
	if pos.addrs.Filename == "" {
		pos.addrs = blk.DefRange
	}
	l.at[p] = pos
}

// maxOverlaps bounds the overlaps listed: a directory of pools all on one
// range would otherwise list every pair.
const maxOverlaps = 20

// overlaps refuses two pools of one domain that would hand out the same
// address, and a pool that would hand out another pool's gateway, naming
// both pools where they are written.
func (l *loader) overlaps() {
	at := func(r hcl.Range) string { return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column) }
	found := 0
	defer func() {
		if found > maxOverlaps {
			l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Overlapping pools",
				Detail: fmt.Sprintf("%d more overlap(s) not listed.", found-maxOverlaps)})
		}
	}()
	errAt := func(rng hcl.Range, summary, detail string) {
		if found++; found <= maxOverlaps {
			l.errAt(rng, summary, detail)
		}
	}
	for i, p := range l.pools {
		for _, q := range l.pools[:i] {
			pp, qp := l.at[p], l.at[q]
			if n, first := p.Overlap(q); n > 0 {
				errAt(pp.addrs, "Overlapping pools", fmt.Sprintf("Pool %q (%s) and pool %q (%s) both hand out %d address(es) of domain %q, the first %s: one address would have two holders. Narrow or exclude the ranges so that they do not overlap, or, if the pools are on different layer-2 segments (VLANs), give them different domains.",
					p.Name, at(pp.addrs), q.Name, at(qp.addrs), n, p.Domain, first))
			}
			for _, pair := range [][2]*ipam.Pool{{p, q}, {q, p}} {
				holder, owner := pair[0], pair[1]
				if holder.HoldsGatewayOf(owner) {
					hp, op := l.at[holder], l.at[owner]
					errAt(hp.addrs, "Pool hands out a gateway", fmt.Sprintf("Pool %q (%s) hands out %s, the gateway of pool %q (%s) in domain %q: a workload given it would answer for the router. Exclude %s from pool %q.",
						holder.Name, at(hp.addrs), owner.Gateway, owner.Name, at(op.gateway), holder.Domain, owner.Gateway, holder.Name))
				}
			}
		}
	}
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
