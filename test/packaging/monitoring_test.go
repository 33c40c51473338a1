package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// TestAlertRules runs promtool on the shipped rules: they parse, and every
// alert fires on the series that should raise it and not on a healthy node
// (packaging/monitoring/rules_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	dir := repoFile(t, "packaging/monitoring")
	out := run(t, dir, promtool, "check", "rules", "spiderpool-agent.rules.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
	out = run(t, dir, promtool, "test", "rules", "rules_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	// Every rule has a test that expects it to fire.
	rules := ruleExprs(t)
	tests := readRepoFile(t, "packaging/monitoring/rules_test.yml")
	for name := range rules {
		if !regexp.MustCompile(`alertname: ` + name + `\n\s+exp_alerts:\n\s+- exp_labels`).Match(tests) {
			t.Errorf("rules_test.yml never expects %s to fire", name)
		}
	}
}

// ruleExprs reads the shipped rules: alert name -> expression.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	b := readRepoFile(t, "packaging/monitoring/spiderpool-agent.rules.yml")
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("rules: %v", err)
	}
	m := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			for _, a := range []string{"summary", "description", "runbook"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s", r.Alert, a)
				}
			}
			m[r.Alert] = r.Expr
		}
	}
	return m
}

// dashboardExprs reads every query of the shipped Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b := readRepoFile(t, "packaging/monitoring/spiderpool-agent.dashboard.json")
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

var metricName = regexp.MustCompile(`\bspiderpool_[a-z0-9_]+`)

// TestMonitoringUsesRealMetrics starts the real agent with metrics on, makes
// it see a conflict, a dead gateway and an error, and checks that every
// metric the alert rules and the dashboard query is in its exposition - so a
// renamed metric cannot leave an alert that never fires.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	netlab.RequireRoot(t)
	lan := netlab.NewStdLAN(t)
	// A pool whose range holds the busy host's address, so that the IPAM
	// series exist and one allocation may meet a conflict.
	ipamDir := t.TempDir()
	pool := `pool "mon4" {
  subnet  = "10.0.0.0/24"
  ranges  = ["10.0.0.10-10.0.0.12"]
  gateway = "10.0.0.1"
  gateway_detection = true
}
`
	if err := os.WriteFile(filepath.Join(ipamDir, "pools.hcl"), []byte(pool), 0o644); err != nil {
		t.Fatal(err)
	}
	a := agenttest.Start(t, agentBinaries(t), agenttest.Options{
		Netns:  lan.Node.NS,
		Config: "gops_port = 0\nipam {\n db_path = \"" + filepath.Join(t.TempDir(), "ipam.db") + "\"\n}\nmetrics {\n enabled = true\n port = 15711\n address = \"127.0.0.1\"\n}\n",
		Args:   []string{"--ipam-config-dir", ipamDir},
	})
	a.WaitReady(agenttest.ReadyTimeout)
	if out, stderr, code := a.CLI("ipam", "allocate", "--socket", a.Socket, "--container-id", "mon1", "--interface", "eth0", "--pool", "mon4"); code != 0 {
		t.Fatalf("ipam allocate: exit %d: %s%s", code, out, stderr)
	}
	for _, args := range [][]string{
		{"--interface", "eth0", "--ip", netlab.Busy4 + "/24", "--gateway", netlab.GW4},
		{"--interface", "eth0", "--ip", netlab.Free4 + "/24", "--gateway", "10.0.0.99"},
		{"--interface", "nosuch0", "--ip", netlab.Free4 + "/24"},
	} {
		if _, stderr, code := a.CLI(append([]string{"check", "--socket", a.Socket}, args...)...); code == 0 {
			t.Fatalf("check %v passed; want block or error (%s)", args, stderr)
		}
	}
	// Plugin samples arrive with the health poll: wait for the detectors'
	// counters to show the conflict.
	var families map[string]bool
	netlab.WaitFor(t, "plugin samples in the exposition", func() (bool, error) {
		mf, _ := a.Metric(t, 15711)
		families = map[string]bool{}
		for name := range mf {
			families[name] = true
		}
		c := mf["spiderpool_ip_conflict_conflicts_total"]
		if c == nil {
			return false, nil
		}
		for _, m := range c.Metric {
			if m.GetCounter().GetValue() > 0 {
				return true, nil
			}
		}
		return false, nil
	})

	used := map[string][]string{}
	for name, expr := range ruleExprs(t) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], "alert "+name)
		}
	}
	for _, expr := range dashboardExprs(t) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], "dashboard")
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the rules and the dashboard: %v", len(used), used)
	}
	var missing []string
	for m, where := range used {
		base := m
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b := strings.TrimSuffix(m, suf); b != m && families[b] {
				base = b
			}
		}
		if !families[base] {
			missing = append(missing, m+" (used by "+strings.Join(where, ", ")+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics queried but not exported by the agent:\n  %s", strings.Join(missing, "\n  "))
	}
}
