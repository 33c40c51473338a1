package layout

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// One check vocabulary: a check's request and its verdict are declared
// once on each side of each wire, and every other package uses those.
//
//   - The control socket: core/api, which the daemon's server, the CLI and
//     the CNI plugin share (the JSON CheckRequest, its parsed Check, the
//     Verdict of its answer).
//   - The plugin wire: sdk (the Go API a plugin author implements) and
//     sdk/proto (the generated protobuf messages), with one conversion per
//     direction between them in sdk/convert.go.
//
// core/check maps the plugin's sdk.CheckResult onto the control API's
// api.DetectorResult: that is the one crossing between the two wires.
//
// Before this rule a request existed in six shapes and a verdict was
// re-mapped at every hop; a new package that declares its own copy "just
// for itself" is how that starts again, so the rule refuses it by shape,
// not by name: renaming the copy does not get it past.
var vocabularyHomes = []string{"core/api", "sdk", "sdk/proto/..."}

// Besides, no two struct types on one side of the plugin wire have the
// same shape (the same JSON or field names with the same types): the rule
// found three copies of {Field, Msg} (api.FieldError, input.FieldError,
// cniplugin.ConfError), now one.

// What counts as a check request: a struct that says where (a network
// namespace and an interface) and what (the address or addresses), by Go
// name or JSON name. A record that names an interface and an address but
// no namespace (a history entry, a conflict seen on the wire) is not one.
// probe.Target (Netns, Interface, Addr) is the probe engine's argument for
// one probe, candidate or gateway, not a request: it has no gateway and no
// verdict of its own, and the probe library is no wire.
func isCheckRequestShape(fields map[string]bool) bool {
	return fields["netns"] && fields["interface"] && (fields["address"] || fields["addresses"])
}

// What counts as a verdict: a named type with constants of both of the
// words "pass" and "block".
func isVerdictShape(values map[string]bool) bool {
	return values["pass"] && values["block"]
}

// decl is a type declaration found in the tree.
type decl struct {
	pkg  string // directory relative to the repository root
	name string
	pos  string // file:line
	// generated: a protoc-generated message.
	generated bool
	// fields are the struct's field names, lowercased, and their JSON
	// names; shape is its fields with their types, for the copy rule.
	fields map[string]bool
	shape  string
}

// scanVocab parses the non-test Go files under dirs of root and returns the
// struct types and, per named type, the string values of its constants.
func scanVocab(t *testing.T, root string, dirs ...string) (structs []decl, consts map[string]map[string]bool, where map[string]string) {
	t.Helper()
	consts = map[string]map[string]bool{}
	where = map[string]string{}
	fset := token.NewFileSet()
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			s, c, w := vocabOf(fset, root, rel, f)
			structs = append(structs, s...)
			for k, v := range c {
				if consts[k] == nil {
					consts[k] = map[string]bool{}
				}
				for val := range v {
					consts[k][val] = true
				}
			}
			for k, v := range w {
				where[k] = v
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scan %s: %v", d, err)
		}
	}
	return structs, consts, where
}

// vocabOf reads one parsed file: its struct types and the string constants
// of its named types (keyed "pkg.Type"), with where each type is declared.
func vocabOf(fset *token.FileSet, root, pkg string, f *ast.File) ([]decl, map[string]map[string]bool, map[string]string) {
	var structs []decl
	consts := map[string]map[string]bool{}
	where := map[string]string{}
	pos := func(p token.Pos) string {
		at := fset.Position(p)
		rel, err := filepath.Rel(root, at.Filename)
		if err != nil {
			rel = at.Filename
		}
		return fmt.Sprintf("%s:%d", rel, at.Line)
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		var lastType ast.Expr // a const block's type carries over to untyped lines
		for _, spec := range gd.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				where[pkg+"."+s.Name.Name] = pos(s.Pos())
				st, ok := s.Type.(*ast.StructType)
				if !ok {
					continue
				}
				dl := decl{pkg: pkg, name: s.Name.Name, pos: pos(s.Pos()), fields: map[string]bool{},
					generated: strings.HasSuffix(fset.Position(s.Pos()).Filename, ".pb.go")}
				var shape []string
				for _, fl := range st.Fields.List {
					typ := types(fl.Type)
					names := fl.Names
					if len(names) == 0 { // embedded
						names = []*ast.Ident{{Name: typ}}
					}
					for _, n := range names {
						wire := strings.ToLower(n.Name)
						if fl.Tag != nil {
							if tag, err := strconv.Unquote(fl.Tag.Value); err == nil {
								if j, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ","); j != "" && j != "-" {
									wire = j
								}
							}
						}
						dl.fields[strings.ToLower(n.Name)] = true
						dl.fields[wire] = true
						shape = append(shape, wire+" "+typ)
					}
				}
				slices.Sort(shape)
				dl.shape = strings.Join(shape, "; ")
				if len(shape) >= 2 {
					structs = append(structs, dl)
				}
			case *ast.ValueSpec:
				if gd.Tok != token.CONST {
					continue
				}
				switch {
				case s.Type != nil:
					lastType = s.Type
				case len(s.Values) > 0:
					lastType = nil // an untyped constant with a value of its own
				}
				id, ok := lastType.(*ast.Ident)
				if !ok {
					continue
				}
				for _, v := range s.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if val, err := strconv.Unquote(lit.Value); err == nil {
							key := pkg + "." + id.Name
							if consts[key] == nil {
								consts[key] = map[string]bool{}
							}
							consts[key][val] = true
						}
					}
				}
			}
		}
	}
	return structs, consts, where
}

// types renders a field's type without package qualifiers, so that a copy
// that swaps netip.Prefix for a local alias of it still compares equal.
func types(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.StarExpr:
		return "*" + types(x.X)
	case *ast.ArrayType:
		return "[]" + types(x.Elt)
	case *ast.MapType:
		return "map[" + types(x.Key) + "]" + types(x.Value)
	}
	return fmt.Sprintf("%T", e)
}

// side is the side of the plugin wire a package is on: the agent's (core,
// and its control socket) or the plugins' (sdk, plugins). The two may hold
// types of one shape: sdk.TunedKey is what a tuner reports over gRPC,
// api.TunedKey what the control API shows of it, and core/api may not link
// the sdk (the CNI plugin links core/api). Within one side a second type of
// the same shape is a copy.
func side(pkg string) string {
	if p := filepath.ToSlash(pkg); p == "sdk" || strings.HasPrefix(p, "sdk/") || strings.HasPrefix(p, "plugins/") {
		return "plugin"
	}
	return "agent"
}

// vocabViolations applies the rules: a check request or verdict declared
// outside vocabularyHomes, and two struct types of the same shape (the same
// wire names with the same types: a pure copy) on the same side of the
// plugin wire.
func vocabViolations(structs []decl, consts map[string]map[string]bool, where map[string]string) []string {
	var out []string
	home := func(pkg string) bool {
		return slices.ContainsFunc(vocabularyHomes, func(h string) bool {
			if tree, ok := strings.CutSuffix(h, "/..."); ok {
				return under(tree)(module + "/" + filepath.ToSlash(pkg))
			}
			return h == filepath.ToSlash(pkg)
		})
	}
	for _, s := range structs {
		if isCheckRequestShape(s.fields) && !home(s.pkg) {
			out = append(out, fmt.Sprintf("%s: %s is a check request (netns, interface and address fields) outside %v: use api.Check / api.CheckRequest (control socket) or sdk.CheckRequest (plugin wire)", s.pos, s.name, vocabularyHomes))
		}
	}
	var verdicts []string
	for k := range consts {
		verdicts = append(verdicts, k)
	}
	slices.Sort(verdicts)
	for _, k := range verdicts {
		pkg := k[:strings.LastIndexByte(k, '.')]
		if isVerdictShape(consts[k]) && !home(pkg) {
			out = append(out, fmt.Sprintf("%s: %s is a verdict (\"pass\" and \"block\") outside %v: use api.Verdict or sdk.Verdict", where[k], k, vocabularyHomes))
		}
	}
	byShape := map[string][]decl{}
	for _, s := range structs {
		if s.generated {
			continue // protoc's empty messages all look alike
		}
		if !ast.IsExported(s.name) {
			// A package's own map keys and helpers ({addr, domain}) are
			// not vocabulary: nothing outside it sees them.
			continue
		}
		key := side(s.pkg) + ": " + s.shape
		byShape[key] = append(byShape[key], s)
	}
	for _, ds := range byShape {
		if len(ds) < 2 {
			continue
		}
		var names []string
		for _, d := range ds {
			names = append(names, d.pos+" "+d.name)
		}
		slices.Sort(names)
		out = append(out, fmt.Sprintf("%d struct types of one shape {%s}: %s: declare it once and use that", len(ds), ds[0].shape, strings.Join(names, ", ")))
	}
	slices.Sort(out)
	return out
}

func TestOneCheckVocabulary(t *testing.T) {
	root := moduleRoot(t)
	structs, consts, where := scanVocab(t, root, "core", "plugins", "sdk")
	if len(structs) < 50 {
		t.Fatalf("found %d struct types under core, plugins and sdk: the scan is broken", len(structs))
	}
	for _, v := range vocabViolations(structs, consts, where) {
		t.Error(v)
	}
}

// The rule must be able to fail: a copy of the check request in another
// package, a verdict of its own, and a renamed pure copy are all found.
func TestVocabularyRuleFindsCopies(t *testing.T) {
	src := map[string]string{
		"core/api": `package api
type CheckRequest struct {
	Interface string ` + "`json:\"interface\"`" + `
	Addresses []AddressRequest ` + "`json:\"addresses\"`" + `
}
type AddressRequest struct {
	Address string ` + "`json:\"address\"`" + `
	Gateway string ` + "`json:\"gateway,omitempty\"`" + `
}
type Verdict string
const (
	VerdictPass Verdict = "pass"
	VerdictBlock Verdict = "block"
)`,
		"core/ipam": `package ipam
type Probe struct {
	Iface string ` + "`json:\"interface\"`" + `
	Address string
	Netns string
}
type Seen struct {
	Interface string
	Address string
}
type Outcome string
const (
	OutcomeOK Outcome = "pass"
	OutcomeNo = "x"
	OutcomeBad Outcome = "block"
)
type Candidate struct {
	Addr string ` + "`json:\"address\"`" + `
	GW   string ` + "`json:\"gateway\"`" + `
}`,
	}
	var structs []decl
	consts := map[string]map[string]bool{}
	where := map[string]string{}
	fset := token.NewFileSet()
	for pkg, code := range src {
		f, err := parser.ParseFile(fset, "/r/"+pkg+"/x.go", code, 0)
		if err != nil {
			t.Fatal(err)
		}
		s, c, w := vocabOf(fset, "/r", pkg, f)
		structs = append(structs, s...)
		for k, v := range c {
			consts[k] = v
		}
		for k, v := range w {
			where[k] = v
		}
	}
	got := vocabViolations(structs, consts, where)
	want := []string{"Probe is a check request", "core/ipam.Outcome is a verdict", "2 struct types of one shape"}
	if len(got) != len(want) {
		t.Fatalf("violations:\n%s\nwant %d: %v", strings.Join(got, "\n"), len(want), want)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			t.Errorf("no violation %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, "core/ipam/x.go:2") }) {
		t.Errorf("the check request copy is not named by file and line:\n%s", strings.Join(got, "\n"))
	}
}
