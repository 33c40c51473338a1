package sdk

import (
	"strings"
	"testing"
)

func TestCheckAPIVersion(t *testing.T) {
	tests := []struct {
		agent, plugin string
		wantErr       string
	}{
		{"1.0", "1.0", ""},
		{"1.3", "1.1", ""},
		{"1.1", "1.2", "upgrade the agent"},
		{"1.0", "2.0", "upgrade the agent"},
		{"2.0", "1.9", "upgrade the plugin"},
		{"1.0", "one", "plugin: api version \"one\" is not MAJOR.MINOR"},
		{"1.0", "1.", "is not MAJOR.MINOR"},
		{"1.0", "-1.0", "is not MAJOR.MINOR"},
	}
	for _, tt := range tests {
		err := CheckAPIVersion(tt.agent, tt.plugin)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("CheckAPIVersion(%q, %q) = %v, want nil", tt.agent, tt.plugin, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckAPIVersion(%q, %q) = %v, want error containing %q", tt.agent, tt.plugin, err, tt.wantErr)
		}
	}
}
