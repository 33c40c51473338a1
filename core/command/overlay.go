package command

import (
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"path"
	"slices"
	"strconv"
	"strings"
)

// overlayDecls writes a Go file from base, a whole file, and overlay, the
// declarations that differ from it: a declaration of overlay replaces
// base's of the same name in base's place (under base's doc comment when
// overlay gives none), one base lacks is added at the end, and those
// named in drop ("func verdict", "func Plugin.Check", "type Config") are
// left out. The package clause and its doc are overlay's; the imports are
// those of either file that the result uses, standard library first. It
// refuses a comment it would lose and a drop that names nothing, so that
// a change to base cannot pass unnoticed.
func overlayDecls(base, overlay string, drop []string) ([]byte, error) {
	b, err := parseDecls("base", base)
	if err != nil {
		return nil, err
	}
	o, err := parseDecls("overlay", overlay)
	if err != nil {
		return nil, err
	}
	replaced := map[string]bool{}
	var decls []string
	for _, d := range b.decls {
		if slices.Contains(drop, d.key) {
			replaced[d.key] = true
			continue
		}
		i := slices.IndexFunc(o.decls, func(od decl) bool { return od.key == d.key })
		if i < 0 {
			decls = append(decls, d.text())
			continue
		}
		od := o.decls[i]
		if od.doc == "" {
			od.doc = d.doc
		}
		decls = append(decls, od.text())
		replaced[d.key] = true
	}
	for _, k := range drop {
		if !replaced[k] {
			return nil, fmt.Errorf("base has no %s to drop", k)
		}
	}
	for _, d := range o.decls {
		if !replaced[d.key] {
			decls = append(decls, d.text())
		}
	}

	doc := o.doc
	if doc == "" {
		doc = b.doc
	}
	head := doc + "package " + o.pkg + "\n\n"
	body := strings.Join(decls, "\n\n") + "\n"
	used, err := selectorsOf(head + body)
	if err != nil {
		return nil, err
	}
	imports, err := importBlock(append(b.imports, o.imports...), used)
	if err != nil {
		return nil, err
	}
	out, err := format.Source([]byte(head + imports + body))
	if err != nil {
		return nil, fmt.Errorf("format the result: %w", err)
	}
	return out, nil
}

// decl is one top-level declaration's text.
type decl struct {
	key  string // "func Plugin.Info", "type Config", "var Version", "var _,_"
	doc  string // its doc comment with the newline after it, or ""
	code string
}

func (d decl) text() string { return d.doc + d.code }

type parsedFile struct {
	doc     string
	pkg     string
	imports []*ast.ImportSpec
	decls   []decl
}

func parseDecls(name, src string) (parsedFile, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name+".go", src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return parsedFile{}, err
	}
	tf := fset.File(f.Pos())
	text := func(from, to token.Pos) string { return src[tf.Offset(from):tf.Offset(to)] }
	docText := func(g *ast.CommentGroup) string {
		if g == nil {
			return ""
		}
		return text(g.Pos(), g.End()) + "\n"
	}
	out := parsedFile{doc: docText(f.Doc), pkg: f.Name.Name, imports: f.Imports}
	// Every comment must be the file's doc or inside a declaration with
	// its doc: one between declarations would be dropped silently.
	covered := []ast.Node{f.Name}
	if f.Doc != nil {
		covered = append(covered, f.Doc)
	}
	for _, d := range f.Decls {
		var doc *ast.CommentGroup
		switch d := d.(type) {
		case *ast.FuncDecl:
			doc = d.Doc
		case *ast.GenDecl:
			doc = d.Doc
			if d.Tok == token.IMPORT {
				covered = append(covered, d)
				continue
			}
		}
		covered = append(covered, d)
		if doc != nil {
			covered = append(covered, doc)
		}
		out.decls = append(out.decls, decl{key: declKey(d), doc: docText(doc), code: text(d.Pos(), d.End())})
	}
	for _, c := range f.Comments {
		if !slices.ContainsFunc(covered, func(n ast.Node) bool { return n.Pos() <= c.Pos() && c.End() <= n.End() }) {
			return parsedFile{}, fmt.Errorf("%s:%v: a comment outside any declaration", name, fset.Position(c.Pos()))
		}
	}
	return out, nil
}

// declKey names a declaration: its keyword and its names, a method's with
// its receiver's type.
func declKey(d ast.Decl) string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil || len(d.Recv.List) == 0 {
			return "func " + d.Name.Name
		}
		t := d.Recv.List[0].Type
		if s, ok := t.(*ast.StarExpr); ok {
			t = s.X
		}
		if id, ok := t.(*ast.Ident); ok {
			return "func " + id.Name + "." + d.Name.Name
		}
		return "func ?." + d.Name.Name
	case *ast.GenDecl:
		var names []string
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				names = append(names, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names = append(names, n.Name)
				}
			}
		}
		return d.Tok.String() + " " + strings.Join(names, ",")
	}
	return "?"
}

// selectorsOf lists the X of every X.Sel in the file src: the packages it
// may use.
func selectorsOf(src string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "result.go", src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("the result does not parse: %w", err)
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if s, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := s.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	return used, nil
}

// importBlock is the import declaration of the specs whose package is
// used, once each: the standard library's, then the others.
func importBlock(specs []*ast.ImportSpec, used map[string]bool) (string, error) {
	var std, other []string
	seen := map[string]bool{}
	for _, s := range specs {
		p, err := strconv.Unquote(s.Path.Value)
		if err != nil {
			return "", err
		}
		name := path.Base(p)
		line := s.Path.Value
		if s.Name != nil {
			name = s.Name.Name
			line = name + " " + line
		}
		if seen[line] || !used[name] && name != "_" {
			continue
		}
		seen[line] = true
		if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") {
			other = append(other, line)
		} else {
			std = append(std, line)
		}
	}
	slices.Sort(std)
	slices.Sort(other)
	var groups []string
	for _, g := range [][]string{std, other} {
		if len(g) > 0 {
			groups = append(groups, "\t"+strings.Join(g, "\n\t")+"\n")
		}
	}
	if len(groups) == 0 {
		return "", nil
	}
	return "import (\n" + strings.Join(groups, "\n") + ")\n\n", nil
}
