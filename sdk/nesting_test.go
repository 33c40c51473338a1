package sdk

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestCheckNesting(t *testing.T) {
	deep := func(n int, open, close string) string {
		return "a = " + strings.Repeat(open, n) + strings.Repeat(close, n) + "\n"
	}
	tests := []struct {
		name, src string
		wantErr   string
	}{
		{"flat", `a = [1, 2]` + "\n" + `b { c = "}" }`, ""},
		{"at the limit", deep(MaxNesting, "[", "]"), ""},
		{"lists", deep(MaxNesting+1, "[", "]"), "f.hcl:1:105: Nesting too deep"},
		{"parentheses", deep(200, "(", ")"), "Nesting too deep"},
		{"closers in strings do not hide depth", "a = " + strings.Repeat(`[")" `, 150), "Nesting too deep"},
		{"templates", "a = " + strings.Repeat(`"${`, 60), "Nesting too deep"},
		{"brackets in comments do not count", "# " + strings.Repeat("[", 500) + "\na = 1\n", ""},
		{"brackets in block comments do not count", "/* " + strings.Repeat("{", 500) + " */\na = 1\n", ""},
		{"brackets in a heredoc do not count", "a = <<EOT\n" + strings.Repeat("[", 500) + "\nEOT\nb = 1\n", ""},
		{"escaped quotes", `a = "\"[[[["` + "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := CheckNesting([]byte(tt.src), "f.hcl", hcl.InitialPos)
			got := FormatDiagnostics(diags)
			if tt.wantErr == "" && diags.HasErrors() {
				t.Fatalf("unexpected error: %s", got)
			}
			if tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Fatalf("got %q, want %q", got, tt.wantErr)
			}
		})
	}
}

// A body deep enough to overflow the parser's stack is refused, not fatal.
func TestDecodeRefusesDeepNesting(t *testing.T) {
	body := "name = " + strings.Repeat("[", 100000)
	var cfg struct {
		Name []string `hcl:"name"`
	}
	err := RawConfig{Filename: "deep.hcl", Body: []byte(body), Start: hcl.Pos{Line: 3, Column: 5, Byte: 40}}.Decode(&cfg)
	if err == nil || !strings.Contains(err.Error(), "deep.hcl:3:") || !strings.Contains(err.Error(), "Nesting too deep") {
		t.Fatalf("Decode = %v", err)
	}
}
