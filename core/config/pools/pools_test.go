package pools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadGood(t *testing.T) {
	dir := write(t, map[string]string{
		"10-v4.hcl": `
pool "lan4" {
  subnet             = "10.20.0.0/24"
  ranges             = ["10.20.0.10-10.20.0.19", "10.20.0.32/30"]
  exclude            = ["10.20.0.12"]
  gateway            = "10.20.0.1"
  vlan               = 20
  gateway_detection  = true
  quarantine         = "5m"
  route { dst = "0.0.0.0/0" }
  route {
    dst = "192.168.0.0/16"
    gw  = "10.20.0.254"
  }
}
`,
		"20-v6.hcl": `pool "lan6" {
  subnet = "fd00:20::/64"
  ranges = ["fd00:20::100-fd00:20::1ff"]
  conflict_detection = false
}
`,
		"notes.txt": "not read",
	})
	res, err := Load(dir, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pools) != 2 || len(res.Files) != 2 {
		t.Fatalf("%d pools from %v", len(res.Pools), res.Files)
	}
	p4, p6 := res.Pools[0], res.Pools[1]
	if p4.Name != "lan4" || p4.Size() != 13 || p4.VLAN != 20 || !p4.ConflictDetection || !p4.GatewayDetection || p4.Quarantine.String() != "5m0s" || len(p4.Routes) != 2 || p4.Routes[1].GW.String() != "10.20.0.254" {
		t.Fatalf("lan4 %+v", p4)
	}
	if p6.Size() != 256 || p6.ConflictDetection || p6.GatewayDetection || p6.Quarantine.String() != "10m0s" || p6.Store != "local" {
		t.Fatalf("lan6 %+v", p6)
	}
}

func TestLoadEmptyDir(t *testing.T) {
	res, err := Load(t.TempDir(), 5000)
	if err != nil || len(res.Pools) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"did you mean", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  gatway = \"10.0.0.1\"\n}\n",
			[]string{"a.hcl:3:3", `Did you mean "gateway"?`}},
		{"missing subnet", "pool \"a\" {\n  ranges = []\n}\n", []string{"a.hcl:1:", `"subnet" is required`}},
		{"bad range element", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  ranges = [\"10.0.0.5\", \"10.0.9.1-10.0.9.2\"]\n}\n",
			[]string{"a.hcl:3:25", "ranges[1]: 10.0.9.1 is outside the subnet 10.0.0.0/24"}},
		{"too large", "pool \"big\" {\n  subnet = \"10.0.0.0/16\"\n}\n",
			[]string{"a.hcl:1:1", "Pool too large", "65534 addresses, more than max_allocated_ips (SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS) = 5000"}},
		{"v6 /64", "pool \"six\" {\n  subnet = \"fd00::/64\"\n}\n", []string{"Pool \"six\" has 18446744073709551616 addresses", "Pool too large"}},
		{"wrong type", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  conflict_detection = \"maybe\"\n}\n", []string{"a.hcl:3:24", `Invalid value for "conflict_detection": a bool is required, not string`}},
		{"bad quarantine", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  quarantine = \"soon\"\n}\n", []string{"a.hcl:3:16", `"soon" is not a duration such as "100ms"`}},
		{"zero quarantine", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  quarantine = \"0s\"\n}\n", []string{"a.hcl:3:16", `"0s" is not a positive duration`}},
		{"fraction vlan", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  vlan = 2.5\n}\n", []string{"a.hcl:3:10", `Invalid value for "vlan": 2.5 is not a whole number`}},
		{"vlan range", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  vlan = 5000\n}\n", []string{"a.hcl:3:10", `vlan: 5000 is not a VLAN id (0-4094)`}},
		{"route", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  route {\n    dst = \"0.0.0.0/0\"\n    gv = \"10.0.0.1\"\n  }\n  route {\n    gw = \"10.0.0.1\"\n  }\n  rout {\n  }\n}\n",
			[]string{"a.hcl:5:5", `Did you mean "gw"?`, `a.hcl:7:9: Missing required argument: The argument "dst" is required`, "a.hcl:10:3", `Did you mean "route"?`}},
		{"route gateway", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  route {\n    dst = \"0.0.0.0/0\"\n    gw = \"10.0.0.1/24\"\n  }\n}\n", []string{"a.hcl:5:10", "routes[0].gw"}},
		{"bad name", "pool \"-x\" {\n  subnet = \"10.0.0.0/24\"\n}\n", []string{"a.hcl:1:6", "Invalid pool name"}},
		{"syntax", "pool \"a\" {\n  subnet = \n}\n", []string{"a.hcl:2:"}},
		{"unknown block", "pools \"a\" {\n}\n", []string{"a.hcl:1:1", `Did you mean "pool"?`}},
		{"gateway field", "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  gateway = \"10.1.0.1\"\n}\n", []string{"a.hcl:3:13", "gateway: 10.1.0.1 is outside"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, map[string]string{"a.hcl": tc.body, "b.hcl": "pool \"fine\" {\n  subnet = \"10.9.0.0/24\"\n}\n"})
			res, err := Load(dir, 5000)
			if err == nil {
				t.Fatalf("accepted: %+v", res)
			}
			if len(res.Pools) != 0 {
				t.Fatal("a directory with a problem gave pools")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestDuplicatePoolAcrossFiles(t *testing.T) {
	dir := write(t, map[string]string{
		"a.hcl": "pool \"p\" {\n  subnet = \"10.0.0.0/24\"\n}\n",
		"b.hcl": "\npool \"p\" {\n  subnet = \"10.1.0.0/24\"\n}\n",
	})
	_, err := Load(dir, 5000)
	if err == nil || !strings.Contains(err.Error(), "b.hcl:2:1") || !strings.Contains(err.Error(), "a.hcl:1:1") {
		t.Fatalf("%v", err)
	}
}

func TestRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := mkfifo(filepath.Join(dir, "x.hcl")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, 5000)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("%v", err)
	}
}

// TestPackagedExample: the example shipped in the package loads as is.
func TestPackagedExample(t *testing.T) {
	src, err := os.ReadFile("../../../packaging/ipam.d/pools.hcl.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := write(t, map[string]string{"pools.hcl": string(src)})
	res, err := Load(dir, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pools) != 2 || res.Pools[0].Size() != 190 || res.Pools[1].Size() != 256 {
		t.Fatalf("%d pools", len(res.Pools))
	}
}

// Two pools of one domain that would hand out the same addresses, or one
// that would hand out another's gateway, are refused naming both pools
// where they are written; in different domains they are fine.
func TestOverlappingPoolsRefused(t *testing.T) {
	ovA := "pool \"ovA\" {\n  subnet  = \"10.90.0.0/24\"\n  ranges  = [\"10.90.0.10-10.90.0.40\"]\n  gateway = \"10.90.0.1\"\n}\n"
	ovB := "\n\npool \"ovB\" {\n  subnet = \"10.90.0.0/24\"\n  ranges = [\"10.90.0.1-10.90.0.40\"]\n}\n"
	dir := write(t, map[string]string{"a.hcl": ovA, "b.hcl": ovB})
	res, err := Load(dir, 5000)
	if err == nil || len(res.Pools) != 0 {
		t.Fatalf("accepted: %+v", res)
	}
	a, b := filepath.Join(dir, "a.hcl"), filepath.Join(dir, "b.hcl")
	for _, want := range []string{
		b + `:5:12: Overlapping pools: Pool "ovB" (` + b + `:5:12) and pool "ovA" (` + a + `:3:13) both hand out 31 address(es) of domain "default", the first 10.90.0.10: one address would have two holders.`,
		b + `:5:12: Pool hands out a gateway: Pool "ovB" (` + b + `:5:12) hands out 10.90.0.1, the gateway of pool "ovA" (` + a + `:4:13) in domain "default"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%s\nlacks\n%s", err, want)
		}
	}
	// A pool without ranges is its whole subnet: the position is the subnet.
	dir = write(t, map[string]string{"a.hcl": ovA, "b.hcl": "pool \"all\" {\n  subnet = \"10.90.0.0/24\"\n}\n"})
	_, err = Load(dir, 5000)
	if err == nil || !strings.Contains(err.Error(), `Pool "all" (`+filepath.Join(dir, "b.hcl")+`:2:12) and pool "ovA" (`+filepath.Join(dir, "a.hcl")+`:3:13) both hand out 31`) {
		t.Fatalf("%v", err)
	}
	// Different domains: the same ranges are two address spaces.
	dir = write(t, map[string]string{"a.hcl": strings.Replace(ovA, "{\n", "{\n  domain = \"vlan10\"\n", 1), "b.hcl": strings.Replace(ovB, "{\n", "{\n  domain = \"vlan20\"\n", 1)})
	res, err = Load(dir, 5000)
	if err != nil || len(res.Pools) != 2 || res.Pools[0].Domain != "vlan10" || res.Pools[1].Domain != "vlan20" {
		t.Fatalf("%+v %v", res, err)
	}
	// Adjacent ranges do not overlap.
	dir = write(t, map[string]string{"a.hcl": ovA, "b.hcl": strings.Replace(ovB, "10.90.0.1-10.90.0.40", "10.90.0.41-10.90.0.50", 1)})
	if _, err := Load(dir, 5000); err != nil {
		t.Fatal(err)
	}
}

func TestDomainValidated(t *testing.T) {
	dir := write(t, map[string]string{"a.hcl": "pool \"a\" {\n  subnet = \"10.0.0.0/24\"\n  domain = \"vlan 20\"\n}\n"})
	_, err := Load(dir, 5000)
	if err == nil || !strings.Contains(err.Error(), `a.hcl:3:12: Invalid pool: Pool "a": domain: "vlan 20": a domain name has letters, digits`) {
		t.Fatalf("%v", err)
	}
}
