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

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
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

var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "pool", LabelNames: []string{"name"}}}}

// poolBlock is a pool { } block as written, decoded by the SDK's decoder
// (sdk.DecodeBody): types, did-you-mean and positions as for every other
// block. What the values mean is ipam.NewPool's to check.
type poolBlock struct {
	Subnet            string        `hcl:"subnet"`
	Ranges            []string      `hcl:"ranges,optional"`
	Exclude           []string      `hcl:"exclude,optional"`
	Gateway           string        `hcl:"gateway,optional"`
	VLAN              int           `hcl:"vlan,optional"`
	ConflictDetection bool          `hcl:"conflict_detection,optional"`
	GatewayDetection  bool          `hcl:"gateway_detection,optional"`
	Quarantine        time.Duration `hcl:"quarantine,optional"`
	Store             string        `hcl:"store,optional"`
	Domain            string        `hcl:"domain,optional"`
	Defend            bool          `hcl:"defend,optional"`
}

// routeBlock is a route { } block inside a pool.
type routeBlock struct {
	Dst string `hcl:"dst"`
	GW  string `hcl:"gw,optional"`
}

var poolBlocks = []hcl.BlockHeaderSchema{{Type: "route"}}

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
	if err := api.ValidatePoolName("name", name); err != nil {
		l.errAt(blk.LabelRanges[0], "Invalid pool name", err.(*api.FieldError).Msg)
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
	spec, ranges, ok := l.decode(blk, name)
	if !ok {
		return
	}
	p, err := ipam.NewPool(spec, l.max)
	if err != nil {
		l.refused(blk, name, ranges, err)
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

// decode reads the pool block blk into a spec, with where each value
// stands under the field names of ipam.FieldError ("ranges[1]",
// "routes[0].gw").
func (l *loader) decode(blk *hcl.Block, name string) (ipam.PoolSpec, map[string]hcl.Range, bool) {
	w := poolBlock{ConflictDetection: true}
	content, err := sdk.DecodeBody(blk.Body, poolBlocks, "", &w)
	ok := l.decoded(err)
	if content == nil {
		return ipam.PoolSpec{}, nil, false
	}
	ranges := map[string]hcl.Range{}
	for a, attr := range content.Attributes {
		ranges[a] = attr.Expr.Range()
		if tup, isTuple := attr.Expr.(*hclsyntax.TupleConsExpr); isTuple {
			for i, e := range tup.Exprs {
				ranges[fmt.Sprintf("%s[%d]", a, i)] = e.Range()
			}
		}
	}
	if q := content.Attributes["quarantine"]; q != nil && ok && w.Quarantine <= 0 {
		l.errAt(q.Expr.Range(), `Invalid value for "quarantine"`, fmt.Sprintf("%q is not a positive duration such as \"10m\".", w.Quarantine.String()))
		ok = false
	}
	spec := ipam.PoolSpec{
		Name: name, Subnet: w.Subnet, Ranges: w.Ranges, Exclude: w.Exclude, Gateway: w.Gateway,
		PoolOptions: ipam.PoolOptions{
			VLAN: w.VLAN, ConflictDetection: w.ConflictDetection, GatewayDetection: w.GatewayDetection,
			Quarantine: w.Quarantine, Store: w.Store, Domain: w.Domain, Defend: w.Defend,
		},
	}
	for i, rb := range content.Blocks {
		var r routeBlock
		rc, err := sdk.DecodeBody(rb.Body, nil, "", &r)
		if !l.decoded(err) {
			ok = false
			continue
		}
		ranges[fmt.Sprintf("routes[%d].dst", i)] = rc.Attributes["dst"].Expr.Range()
		if g := rc.Attributes["gw"]; g != nil {
			ranges[fmt.Sprintf("routes[%d].gw", i)] = g.Expr.Range()
		}
		spec.Routes = append(spec.Routes, ipam.RouteSpec{Dst: r.Dst, GW: r.GW})
	}
	return spec, ranges, ok
}

// decoded records what sdk.DecodeBody refused; it says whether the block
// decoded.
func (l *loader) decoded(err error) bool {
	if err == nil {
		return true
	}
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		l.diags = append(l.diags, ce.Diagnostics...)
	} else {
		// A bad target struct: the program's fault.
		l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undecodable pool", Detail: err.Error()})
	}
	return false
}

// refused reports ipam.NewPool's refusal of pool name at the value it
// names (its FieldError's field), else at the block.
func (l *loader) refused(blk *hcl.Block, name string, ranges map[string]hcl.Range, err error) {
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

func upper(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
