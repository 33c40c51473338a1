package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
)

func TestConfYML(t *testing.T) {
	// A Spiderpool conf.yml as the Helm chart renders it.
	yml := `ipamUnixSocketPath: /var/run/spidernet/other.sock
enableIPv4: true
enableIPv6: false
enableStatefulSet: true
enableKubevirtStaticIP: true
enableSpiderSubnet: false
clusterSubnetDefaultFlexibleIPNumber: 1
tuneSysctlConfig: false
enableIPConflictDetection: true
enableGatewayDetection: no
clusterDefaultIPv4IPPool: [default-v4-ippool]
clusterDefaultIPv6IPPool: []
`
	dir := writeDir(t, map[string]string{"conf.yml": yml})
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	path := filepath.Join(dir, "conf.yml")
	if c.SocketPath != "/var/run/spidernet/other.sock" || !c.EnableIPv4 || c.EnableIPv6 {
		t.Errorf("socket %q ipv4 %v ipv6 %v", c.SocketPath, c.EnableIPv4, c.EnableIPv6)
	}
	for name, want := range map[string]bool{"sysctl-tuner": false, "ip-conflict": true, "gateway-detector": false} {
		if got := c.Plugin(name).Enabled; got != want {
			t.Errorf("plugin %s enabled = %v, want %v", name, got, want)
		}
	}
	for key, line := range map[string]int{"socket_path": 1, "enable_ipv6": 3, "plugin.sysctl-tuner.enabled": 8, "plugin.gateway-detector.enabled": 10} {
		want := Source{Kind: KindConfYML, Where: fmt.Sprintf("%s:%d", path, line)}
		if s := setting(t, c, key).Source; s != want {
			t.Errorf("%s source = %v, want %v", key, s, want)
		}
	}
	wantIgnored := []string{"enableStatefulSet", "enableKubevirtStaticIP", "enableSpiderSubnet",
		"clusterSubnetDefaultFlexibleIPNumber", "clusterDefaultIPv4IPPool", "clusterDefaultIPv6IPPool"}
	if !reflect.DeepEqual(c.IgnoredConfYMLKeys, wantIgnored) {
		t.Errorf("ignored = %v, want %v", c.IgnoredConfYMLKeys, wantIgnored)
	}
	if !reflect.DeepEqual(c.Files, []string{path}) {
		t.Errorf("Files = %v", c.Files)
	}

	errs := []struct {
		name, yml string
		want      []string
	}{
		{"bad bool", "enableIPv4: true\nenableIPv6: maybe\n", []string{"conf.yml:2: enableIPv6: want a boolean"}},
		{"bad plugin bool", "\n\ntuneSysctlConfig: [a]\n", []string{"conf.yml:3: tuneSysctlConfig: want a boolean"}},
		{"empty socket", "ipamUnixSocketPath: \"\"\n", []string{"conf.yml:1: ipamUnixSocketPath: not an absolute path"}},
		{"relative socket", "ipamUnixSocketPath: run/x.sock\n", []string{"conf.yml:1: ipamUnixSocketPath: not an absolute path"}},
		{"syntax", "enableIPv4: true\n  enableIPv6: [\n", []string{"conf.yml:2: "}},
		{"not a mapping", "- a\n- b\n", []string{"conf.yml:1: want a mapping"}},
		{"both bad", "enableIPv4: x\nenableIPv6: perhaps\n", []string{"conf.yml:1: enableIPv4", "conf.yml:2: enableIPv6"}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"conf.yml": tt.yml})})
			wantContains(t, msg, tt.want...)
		})
	}

	t.Run("empty file", func(t *testing.T) {
		mustLoad(t, LoadOptions{ConfigDir: writeDir(t, map[string]string{"conf.yml": ""})})
	})
	t.Run("not read beside a named file", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"conf.yml": "enableIPv6: false\n", "agent.hcl": "log_level = \"debug\"\n"})
		c := mustLoad(t, LoadOptions{ConfigDir: filepath.Join(dir, "agent.hcl")})
		if !c.EnableIPv6 || c.LogLevel != "debug" {
			t.Errorf("ipv6 %v log_level %q: conf.yml beside a named file was read or the file was not", c.EnableIPv6, c.LogLevel)
		}
		if !reflect.DeepEqual(c.Files, []string{filepath.Join(dir, "agent.hcl")}) {
			t.Errorf("Files = %v", c.Files)
		}
	})
}
