// Package tunertest holds the sysctl fixtures that the tuner's tests, the
// plugin's and test/sysctl's share: a sysctl tree like the kernel's in a
// temporary directory, and reading and writing its files. It uses only the
// standard library, so the tuner's own tests can import it.
package tunertest

import (
	"os"
	"path/filepath"
	"testing"
)

// InitNS returns a sysctl tree like the initial network namespace's, with
// the kernel's defaults for the six tuned keys (paths relative to the
// sysctl root, values as the kernel prints them). Each call returns a new
// map, free to change.
func InitNS() map[string]string {
	return map[string]string{
		"net/ipv4/neigh/default/gc_thresh3": "1024\n",
		"net/ipv6/neigh/default/gc_thresh3": "1024\n",
		"net/ipv4/conf/all/arp_notify":      "0\n",
		"net/ipv4/conf/all/forwarding":      "0\n",
		"net/ipv6/conf/all/forwarding":      "0\n",
		"net/ipv4/conf/all/rp_filter":       "2\n",
	}
}

// Tree writes the files of layers, later layers overriding earlier ones,
// into a new temporary directory and returns it. An empty value leaves
// the file out (a key this kernel does not have).
func Tree(t testing.TB, layers ...map[string]string) string {
	t.Helper()
	files := map[string]string{}
	for _, l := range layers {
		for k, v := range l {
			files[k] = v
		}
	}
	root := t.TempDir()
	for rel, content := range files {
		if content == "" {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Read returns the content of the file rel below root.
func Read(t testing.TB, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Write replaces the content of the file rel below root, as someone
// changing a key behind the tuner's back.
func Write(t testing.TB, root, rel, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(rel)), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Key returns the entry of keys that name says is key (a tuner.KeyStatus,
// an sdk.TunedKey: this package imports neither), failing the test when
// there is none.
func Key[K any](t testing.TB, keys []K, key string, name func(K) string) K {
	t.Helper()
	for _, k := range keys {
		if name(k) == key {
			return k
		}
	}
	t.Fatalf("key %q not in %+v", key, keys)
	var zero K
	return zero
}
