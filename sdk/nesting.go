package sdk

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// MaxNesting is how deeply brackets, braces, parentheses, strings and
// template interpolations may nest in a config. HCL's parser recurses once
// per level: a file of 100,000 open brackets overflows the Go stack and
// kills the process, which no recover can catch, so depth is checked first.
const MaxNesting = 100

// CheckNesting scans HCL native syntax for nesting deeper than MaxNesting
// and reports where it starts. It follows strings, escapes, template
// interpolations, comments and heredocs well enough for that; everything
// else is left to the parser.
func CheckNesting(src []byte, filename string, start hcl.Pos) hcl.Diagnostics {
	if start.Line == 0 {
		start = hcl.InitialPos
	}
	pos := start
	var stack []byte // 'b' bracket, 's' string, 't' template interpolation
	advance := func(n int) {
		for i := 0; i < n && pos.Byte-start.Byte < len(src); i++ {
			if src[pos.Byte-start.Byte] == '\n' {
				pos.Line, pos.Column = pos.Line+1, 1
			} else {
				pos.Column++
			}
			pos.Byte++
		}
	}
	at := func(off int) byte {
		if i := pos.Byte - start.Byte + off; i < len(src) {
			return src[i]
		}
		return 0
	}
	push := func(kind byte) hcl.Diagnostics {
		stack = append(stack, kind)
		if len(stack) <= MaxNesting {
			return nil
		}
		rng := hcl.Range{Filename: filename, Start: pos, End: pos}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Nesting too deep",
			Detail:   fmt.Sprintf("Brackets, strings and templates nest more than %d levels deep here.", MaxNesting),
			Subject:  &rng,
		}}
	}
	for pos.Byte-start.Byte < len(src) {
		c := at(0)
		inString := len(stack) > 0 && stack[len(stack)-1] == 's'
		switch {
		case inString && c == '\\':
			advance(2)
			continue
		case inString && c == '"', inString && c == '\n':
			stack = stack[:len(stack)-1]
		case inString && (c == '$' || c == '%') && at(1) == '{':
			if d := push('t'); d != nil {
				return d
			}
			advance(1)
		case inString:
		case c == '"':
			if d := push('s'); d != nil {
				return d
			}
		case c == '{' || c == '[' || c == '(':
			if d := push('b'); d != nil {
				return d
			}
		case c == '}' || c == ']' || c == ')':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case c == '#' || (c == '/' && at(1) == '/'):
			for at(0) != '\n' && at(0) != 0 {
				advance(1)
			}
			continue
		case c == '/' && at(1) == '*':
			advance(2)
			for !(at(0) == '*' && at(1) == '/') && at(0) != 0 {
				advance(1)
			}
			advance(2)
			continue
		case c == '<' && at(1) == '<':
			skipHeredoc(src, &pos, start, advance, at)
			continue
		}
		advance(1)
	}
	return nil
}

// skipHeredoc moves past <<MARKER ... MARKER (or <<-MARKER) without
// looking inside: a heredoc's body nests nothing the parser recurses on
// beyond its own templates, which are bounded by the line they are on.
func skipHeredoc(src []byte, pos *hcl.Pos, start hcl.Pos, advance func(int), at func(int) byte) {
	advance(2)
	if at(0) == '-' {
		advance(1)
	}
	var marker []byte
	for c := at(0); c != 0 && c != '\n'; c = at(0) {
		marker = append(marker, c)
		advance(1)
	}
	if len(marker) == 0 {
		return
	}
	for at(0) != 0 {
		advance(1) // the newline ending the previous line
		for at(0) == ' ' || at(0) == '\t' {
			advance(1)
		}
		i := pos.Byte - start.Byte
		if i+len(marker) <= len(src) && string(src[i:i+len(marker)]) == string(marker) {
			advance(len(marker))
			return
		}
		for at(0) != '\n' && at(0) != 0 {
			advance(1)
		}
	}
}
