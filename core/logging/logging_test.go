package logging

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLevel(t *testing.T) {
	tests := map[string]hclog.Level{
		"debug": hclog.Debug, "info": hclog.Info, "INFO": hclog.Info, "warn": hclog.Warn,
		"error": hclog.Error, "fatal": hclog.Error, "panic": hclog.Error, "": hclog.Info,
	}
	for in, want := range tests {
		if got := Level(in); got != want {
			t.Errorf("Level(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFatalLogsErrorsOnly(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "fatal", "json")
	log.Warn("not shown")
	log.Error("shown")
	out := buf.String()
	if strings.Contains(out, "not shown") || !strings.Contains(out, `"@message":"shown"`) {
		t.Errorf("fatal level output %q: want the error only, as JSON", out)
	}
}
