package sysctltuner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// MinReconcileInterval is the shortest reconcile_interval accepted (0 turns
// the loop off).
const MinReconcileInterval = 10 * time.Millisecond

// Config is the plugin's config { } block.
type Config struct {
	ReconcileInterval time.Duration     `hcl:"reconcile_interval,optional" help:"how often every key is read again and a drifted one rewritten; \"0s\" turns the loop off (keys are then applied at configure only)"`
	ProcSysRoot       string            `hcl:"proc_sys_root,optional" help:"absolute path of the sysctl tree; /proc/sys shows the network namespace of the plugin process"`
	Set               map[string]string `hcl:"set,optional" help:"keys to set: a default's new value or any other key; dotted (net.ipv4.conf.all.rp_filter) or with slashes (net/ipv4/conf/eth0.100/rp_filter)"`
	Drop              []string          `hcl:"drop,optional" help:"defaults not to touch"`
}

func defaults() Config {
	return Config{ReconcileInterval: 30 * time.Second, ProcSysRoot: tuner.DefaultProcSysRoot}
}

// checkRoot, when set, vets every proc_sys_root before it is used. Tests
// set it to refuse anything outside their temporary directories, so that no
// test run can ever write the host's /proc/sys by accident. It is nil in
// the plugin binary.
var checkRoot func(root string) error

// parse decodes and checks a config block as Configure applies it.
func parse(req sdk.ConfigureRequest) (Config, tuner.Settings, error) {
	cfg := defaults()
	if err := req.Config.Decode(&cfg); err != nil {
		return Config{}, tuner.Settings{}, err
	}
	settings := tuner.Settings{
		ProcSysRoot: cfg.ProcSysRoot,
		Set:         cfg.Set,
		Drop:        cfg.Drop,
		EnableIPv4:  req.Agent.EnableIPv4,
		EnableIPv6:  req.Agent.EnableIPv6,
	}
	if err := validate(req.Config, cfg, settings); err != nil {
		return Config{}, tuner.Settings{}, err
	}
	return cfg, settings, nil
}

// ValidateConfig implements sdk.Validator: the block decoded and checked as
// Configure would, no key touched.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	_, _, err := parse(req)
	return err
}

// validate checks what Decode cannot: the root, the interval and every key
// and value. Its errors are *sdk.ConfigError pointing at the attribute, and
// for set and drop at the offending entry.
func validate(raw sdk.RawConfig, cfg Config, s tuner.Settings) error {
	fail := raw.EntryError // (attr, entry, atValue, detail)
	if i := cfg.ReconcileInterval; i != 0 && i < MinReconcileInterval {
		return fail("reconcile_interval", "", false, fmt.Sprintf("%s is shorter than %s; use \"0s\" to turn reconciliation off", i, MinReconcileInterval))
	}
	root := cfg.ProcSysRoot
	if !filepath.IsAbs(root) {
		return fail("proc_sys_root", "", false, fmt.Sprintf("%q is not an absolute path", root))
	}
	if checkRoot != nil {
		if err := checkRoot(filepath.Clean(root)); err != nil {
			return fail("proc_sys_root", "", false, err.Error())
		}
	}
	if st, err := os.Stat(root); err != nil {
		return fail("proc_sys_root", "", false, err.Error())
	} else if !st.IsDir() {
		return fail("proc_sys_root", "", false, fmt.Sprintf("%s is not a directory", root))
	}

	// Each entry on its own first, so that the error points at it.
	for _, k := range s.Drop {
		if _, err := tuner.Desired(tuner.Settings{Drop: []string{k}}); err != nil {
			return fail("drop", k, false, strings.TrimPrefix(err.Error(), "drop: "))
		}
	}
	keys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := tuner.ValidateKey(k); err != nil {
			return fail("set", k, false, err.Error())
		}
		if _, err := tuner.Desired(tuner.Settings{Set: map[string]string{k: s.Set[k]}}); err != nil {
			return fail("set", k, true, strings.TrimPrefix(err.Error(), "set: "))
		}
	}
	// Then the entries together: a key both set and dropped, two
	// spellings of one key.
	for _, k := range keys {
		if _, err := tuner.Desired(tuner.Settings{Set: map[string]string{k: s.Set[k]}, Drop: s.Drop}); err != nil {
			return fail("set", k, false, strings.TrimPrefix(err.Error(), "set: "))
		}
	}
	if _, err := tuner.Desired(s); err != nil {
		return fail("set", "", false, strings.TrimPrefix(err.Error(), "set: "))
	}
	return nil
}
