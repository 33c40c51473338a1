package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEtcdBlock checks that the etcd block reaches the Config whole.
func TestEtcdBlock(t *testing.T) {
	dir := t.TempDir()
	src := `node_name = "n1"
etcd {
  endpoints       = ["http://10.0.0.1:2379", "https://10.0.0.2:2379"]
  prefix          = "/rack1/"
  dial_timeout    = "3s"
  request_timeout = "1s"
  outage_wait     = "0s"
  username        = "sp"
  password_file   = "/etc/pw"
  tls {
    ca_file   = "/ca.pem"
    cert_file = "/c.pem"
    key_file  = "/k.pem"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "a.hcl"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, LoadOptions{ConfigDir: dir})
	e := c.Etcd
	if c.NodeName != "n1" || len(e.Endpoints) != 2 || e.Endpoints[1] != "https://10.0.0.2:2379" || e.Prefix != "/rack1/" ||
		e.DialTimeout != 3*time.Second || e.RequestTimeout != time.Second || e.Username != "sp" || e.PasswordFile != "/etc/pw" ||
		e.CAFile != "/ca.pem" || e.CertFile != "/c.pem" || e.KeyFile != "/k.pem" || e.OutageWait != 0 {
		t.Fatalf("node %q etcd %+v", c.NodeName, e)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := (&Config{}).ResolvedNodeName(); err != nil || n != host {
		t.Fatalf("default node name %q, %v; want the hostname %q", n, err, host)
	}
	if n, err := c.ResolvedNodeName(); err != nil || n != "n1" {
		t.Fatalf("node name %q, %v; want node_name's n1", n, err)
	}
}
