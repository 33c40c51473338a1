package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeDir writes files (name -> content) into a fresh temporary directory.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// env is a fake environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// mustLoad loads and fails the test on error.
func mustLoad(t *testing.T, opts LoadOptions) *Config {
	t.Helper()
	c, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// loadErr loads, expects an *Error and returns its message.
func loadErr(t *testing.T, opts LoadOptions) string {
	t.Helper()
	c, err := Load(opts)
	if err == nil {
		t.Fatalf("Load succeeded, want an error; settings: %+v", c.Settings())
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error is %T, want *config.Error: %v", err, err)
	}
	if c != nil {
		t.Errorf("Load returned a config together with an error")
	}
	return err.Error()
}

func wantContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("message lacks %q:\n%s", w, got)
		}
	}
}

func setting(t *testing.T, c *Config, key string) Setting {
	t.Helper()
	for _, s := range c.Settings() {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no setting %q", key)
	return Setting{}
}
