package tuner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/sysctl-tuner/tuner/tunertest"
)

// initNS is a sysctl tree like the initial network namespace's, with the
// kernel's defaults for the six tuned keys, an interface whose name has a
// dot and a multi-value key printed with tabs.
var initNS = withTree(tunertest.InitNS(), map[string]string{
	"net/ipv4/conf/eth0.100/rp_filter":  "1\n",
	"net/ipv4/conf/eth0.100/arp_ignore": "0\n",
	"net/ipv4/tcp_rmem":                 "4096\t131072\t6291456\n",
})

func withTree(m, more map[string]string) map[string]string {
	for k, v := range more {
		m[k] = v
	}
	return m
}

// childNS is the same without neigh/default, as in any other namespace.
func childNS() map[string]string {
	m := map[string]string{}
	for k, v := range initNS {
		if !strings.Contains(k, "neigh/default") {
			m[k] = v
		}
	}
	return m
}

// mkTree builds a sysctl tree in a temporary directory.
func mkTree(t *testing.T, files map[string]string) string { return tunertest.Tree(t, files) }

func readFile(t *testing.T, root, rel string) string { return tunertest.Read(t, root, rel) }

func writeFile(t *testing.T, root, rel, v string) { tunertest.Write(t, root, rel, v) }

func byKey(t *testing.T, r Report, key string) KeyStatus {
	return tunertest.Key(t, r.Keys, key, func(k KeyStatus) string { return k.Key })
}

// newTest returns a tuner on root that refuses, and fails the test, if a
// pass would open a sysctl root outside the temporary directory: unit
// tests must never touch the host's /proc/sys.
func newTest(t *testing.T, root string) *Tuner {
	t.Helper()
	tu := New(root)
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	tu.openRoot = func(dir string) (*os.Root, error) {
		if !strings.HasPrefix(filepath.Clean(dir)+string(filepath.Separator), tmp) {
			t.Errorf("test tuner asked to open sysctl root %s outside %s", dir, tmp)
			return nil, errors.New("test guard: root outside the temporary directory")
		}
		return os.OpenRoot(dir)
	}
	return tu
}

func configured(t *testing.T, root string, s Settings) *Tuner {
	t.Helper()
	tu := newTest(t, root)
	if err := tu.Configure(s); err != nil {
		t.Fatal(err)
	}
	return tu
}

func TestApply(t *testing.T) {
	type want struct {
		state    State
		actual   string
		previous string
		path     string // relative path; checked when set
		file     string // file content afterwards; checked when set
		errPart  string
	}
	tests := []struct {
		name         string
		files        map[string]string
		dirs         []string // keys that are directories
		s            Settings
		want         map[string]want
		wantDegraded bool
	}{
		{
			name:  "defaults in the initial namespace",
			files: initNS,
			s:     DefaultSettings(),
			want: map[string]want{
				"net.ipv4.neigh.default.gc_thresh3": {state: StateApplied, actual: "28160", previous: "1024", file: "28160\n"},
				"net.ipv6.neigh.default.gc_thresh3": {state: StateApplied, actual: "28160", previous: "1024", file: "28160\n"},
				"net.ipv4.conf.all.arp_notify":      {state: StateApplied, actual: "1", previous: "0", file: "1\n"},
				"net.ipv4.conf.all.forwarding":      {state: StateApplied, actual: "1", previous: "0", file: "1\n"},
				"net.ipv6.conf.all.forwarding":      {state: StateApplied, actual: "1", previous: "0", file: "1\n"},
				"net.ipv4.conf.all.rp_filter":       {state: StateApplied, actual: "0", previous: "2", file: "0\n"},
			},
		},
		{
			name:  "child namespace: gc_thresh3 unsupported, not an error",
			files: childNS(),
			s:     DefaultSettings(),
			want: map[string]want{
				"net.ipv4.neigh.default.gc_thresh3": {state: StateUnsupported, path: "net/ipv4/neigh/default/gc_thresh3"},
				"net.ipv6.neigh.default.gc_thresh3": {state: StateUnsupported},
				"net.ipv4.conf.all.arp_notify":      {state: StateApplied, actual: "1", previous: "0"},
				"net.ipv4.conf.all.rp_filter":       {state: StateApplied, actual: "0", previous: "2"},
			},
		},
		{
			name:  "already at the desired value",
			files: map[string]string{"net/ipv4/conf/all/rp_filter": "0\n", "net/ipv4/conf/all/forwarding": "1"},
			s:     Settings{EnableIPv4: true},
			want: map[string]want{
				"net.ipv4.conf.all.rp_filter":  {state: StateUnchanged, actual: "0", previous: "0", file: "0\n"},
				"net.ipv4.conf.all.forwarding": {state: StateUnchanged, actual: "1", previous: "1", file: "1"},
				"net.ipv4.conf.all.arp_notify": {state: StateUnsupported},
			},
		},
		{
			name:  "override and drop",
			files: initNS,
			s: Settings{EnableIPv4: true, EnableIPv6: true,
				Set:  map[string]string{"net.ipv4.conf.all.rp_filter": "1"},
				Drop: []string{"net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"}},
			want: map[string]want{
				"net.ipv4.conf.all.rp_filter": {state: StateApplied, actual: "1", previous: "2", file: "1\n"},
			},
		},
		{
			name:  "ipv6 disabled leaves ipv6 keys alone",
			files: initNS,
			s:     Settings{EnableIPv4: true},
			want: map[string]want{
				"net.ipv4.conf.all.forwarding": {state: StateApplied, actual: "1"},
				"net.ipv4.conf.all.rp_filter":  {state: StateApplied, actual: "0"},
			},
		},
		{
			name:  "ipv4 disabled: rp_filter still applies",
			files: initNS,
			s:     Settings{EnableIPv6: true},
			want: map[string]want{
				"net.ipv6.conf.all.forwarding":      {state: StateApplied, actual: "1"},
				"net.ipv6.neigh.default.gc_thresh3": {state: StateApplied, actual: "28160"},
				"net.ipv4.conf.all.rp_filter":       {state: StateApplied, actual: "0"},
			},
		},
		{
			name:  "dotted interface name, slash form",
			files: initNS,
			s:     Settings{Set: map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "2"}},
			want: map[string]want{
				"net/ipv4/conf/eth0.100/rp_filter": {state: StateApplied, actual: "2", previous: "1",
					path: "net/ipv4/conf/eth0.100/rp_filter", file: "2\n"},
			},
		},
		{
			name:  "dotted interface name, dotted form resolves to the interface",
			files: initNS,
			s:     Settings{Set: map[string]string{"net.ipv4.conf.eth0.100.rp_filter": "2"}},
			want: map[string]want{
				"net.ipv4.conf.eth0.100.rp_filter": {state: StateApplied, actual: "2", previous: "1",
					path: "net/ipv4/conf/eth0.100/rp_filter", file: "2\n"},
			},
		},
		{
			name: "dotted form falls back to the plain path when that is what exists",
			files: map[string]string{
				"net/ipv4/conf/eth0/100/rp_filter": "1\n",
			},
			s: Settings{Set: map[string]string{"net.ipv4.conf.eth0.100.rp_filter": "2"}},
			want: map[string]want{
				"net.ipv4.conf.eth0.100.rp_filter": {state: StateApplied, actual: "2",
					path: "net/ipv4/conf/eth0/100/rp_filter", file: "2\n"},
			},
		},
		{
			name:  "missing interface is unsupported under its interface path",
			files: initNS,
			s:     Settings{Set: map[string]string{"net.ipv4.conf.eth0.300.rp_filter": "2"}},
			want: map[string]want{
				"net.ipv4.conf.eth0.300.rp_filter": {state: StateUnsupported, path: "net/ipv4/conf/eth0.300/rp_filter"},
			},
		},
		{
			name:  "tabs versus spaces is unchanged",
			files: initNS,
			s:     Settings{Set: map[string]string{"net.ipv4.tcp_rmem": "4096 131072 6291456"}},
			want: map[string]want{
				"net.ipv4.tcp_rmem": {state: StateUnchanged, actual: "4096 131072 6291456",
					previous: "4096 131072 6291456", file: "4096\t131072\t6291456\n"},
			},
		},
		{
			name:  "multi-value write",
			files: initNS,
			s:     Settings{Set: map[string]string{"net.ipv4.tcp_rmem": "4096\t87380\t6291456"}},
			want: map[string]want{
				"net.ipv4.tcp_rmem": {state: StateApplied, actual: "4096 87380 6291456",
					previous: "4096 131072 6291456", file: "4096 87380 6291456\n"},
			},
		},
		{
			name:  "a path through a file is unsupported (ENOTDIR)",
			files: initNS,
			s:     Settings{Set: map[string]string{"net/ipv4/tcp_rmem/x": "1"}},
			want: map[string]want{
				"net/ipv4/tcp_rmem/x": {state: StateUnsupported},
			},
		},
		{
			name:  "a key that is a directory fails (EISDIR), the others apply",
			files: initNS,
			dirs:  []string{"net/ipv4/conf/all/arp_notify"},
			s:     Settings{EnableIPv4: true},
			want: map[string]want{
				"net.ipv4.conf.all.arp_notify": {state: StateFailed, errPart: "is a directory"},
				"net.ipv4.conf.all.forwarding": {state: StateApplied, actual: "1"},
			},
			wantDegraded: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkTree(t, tt.files)
			for _, d := range tt.dirs {
				p := filepath.Join(root, filepath.FromSlash(d))
				if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			tu := configured(t, root, tt.s)
			rep := tu.Apply(context.Background())
			if rep.Degraded != tt.wantDegraded {
				t.Errorf("Degraded = %v, want %v (%+v)", rep.Degraded, tt.wantDegraded, rep.Keys)
			}
			if rep.Err != "" {
				t.Errorf("Err = %q", rep.Err)
			}
			if rep.LastReconcile.IsZero() {
				t.Error("LastReconcile not set")
			}
			wantKeys := map[string]bool{}
			ps, _ := Desired(tt.s)
			for _, p := range ps {
				wantKeys[p.Key] = true
			}
			if len(rep.Keys) != len(wantKeys) {
				t.Errorf("report has %d keys, want %d", len(rep.Keys), len(wantKeys))
			}
			for key, w := range tt.want {
				ks := byKey(t, rep, key)
				if ks.State != w.state {
					t.Errorf("%s: state %q, want %q (error %q)", key, ks.State, w.state, ks.Error)
				}
				if w.actual != "" && ks.Actual != w.actual {
					t.Errorf("%s: actual %q, want %q", key, ks.Actual, w.actual)
				}
				if w.previous != "" && ks.Previous != w.previous {
					t.Errorf("%s: previous %q, want %q", key, ks.Previous, w.previous)
				}
				if w.path != "" && ks.Path != w.path {
					t.Errorf("%s: path %q, want %q", key, ks.Path, w.path)
				}
				if w.file != "" {
					if got := readFile(t, root, ks.Path); got != w.file {
						t.Errorf("%s: file holds %q, want %q", key, got, w.file)
					}
				}
				if (ks.Error != "") != (w.state == StateFailed) || !strings.Contains(ks.Error, w.errPart) {
					t.Errorf("%s: error %q, want one containing %q", key, ks.Error, w.errPart)
				}
				if ks.State == StateFailed && ks.Failures != 1 {
					t.Errorf("%s: failures %d, want 1", key, ks.Failures)
				}
			}
			// Changes name exactly the applied keys.
			applied := 0
			for _, ks := range rep.Keys {
				if ks.State == StateApplied {
					applied++
				}
			}
			if len(rep.Changes) != applied {
				t.Errorf("%d changes for %d applied keys: %+v", len(rep.Changes), applied, rep.Changes)
			}
			for _, c := range rep.Changes {
				if c.Drift || c.Old == c.New {
					t.Errorf("bad change on first apply: %+v", c)
				}
			}
			// Nothing is created under the root: unsupported stays absent.
			for _, ks := range rep.Keys {
				if ks.State == StateUnsupported {
					if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(ks.Path))); err == nil {
						t.Errorf("%s: unsupported key's file %s exists", ks.Key, ks.Path)
					}
				}
			}
			// A second pass changes nothing and keeps the previous values.
			rep2 := tu.Reconcile(context.Background())
			if len(rep2.Changes) != 0 {
				t.Errorf("second pass changed %+v", rep2.Changes)
			}
			for i, ks := range rep2.Keys {
				first := rep.Keys[i]
				if ks.State != first.State || ks.Previous != first.Previous || ks.Actual != first.Actual {
					t.Errorf("second pass: %+v, first %+v", ks, first)
				}
			}
		})
	}
}

func TestDriftAndPreviousMemory(t *testing.T) {
	root := mkTree(t, initNS)
	tu := configured(t, root, DefaultSettings())
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := base
	tu.now = func() time.Time { return clock }
	ctx := context.Background()

	rep := tu.Apply(ctx)
	if ks := byKey(t, rep, "net.ipv4.conf.all.arp_notify"); ks.State != StateApplied || ks.Previous != "0" || ks.Drifts != 0 {
		t.Fatalf("after apply: %+v", ks)
	}
	if !rep.LastReconcile.Equal(base) {
		t.Fatalf("LastReconcile %v, want %v", rep.LastReconcile, base)
	}

	// Someone changes two keys behind the tuner's back.
	clock = base.Add(time.Minute)
	writeFile(t, root, "net/ipv4/conf/all/arp_notify", "0\n")
	writeFile(t, root, "net/ipv4/conf/all/rp_filter", "1\n")
	rep = tu.Reconcile(ctx)
	if len(rep.Changes) != 2 {
		t.Fatalf("changes %+v, want 2", rep.Changes)
	}
	for _, c := range rep.Changes {
		if !c.Drift {
			t.Errorf("change not marked drift: %+v", c)
		}
	}
	if c := rep.Changes[0]; c.Key != "net.ipv4.conf.all.arp_notify" || c.Old != "0" || c.New != "1" ||
		c.Path != "net/ipv4/conf/all/arp_notify" {
		t.Errorf("change %+v", c)
	}
	ks := byKey(t, rep, "net.ipv4.conf.all.arp_notify")
	if ks.State != StateApplied || ks.Actual != "1" || ks.Drifts != 1 || !ks.LastDrift.Equal(clock) {
		t.Errorf("after drift: %+v", ks)
	}
	if ks.Previous != "0" {
		t.Errorf("previous %q, want the original 0", ks.Previous)
	}
	rp := byKey(t, rep, "net.ipv4.conf.all.rp_filter")
	if rp.Previous != "2" || rp.Drifts != 1 {
		t.Errorf("rp_filter previous %q drifts %d; want the original 2 and 1 drift", rp.Previous, rp.Drifts)
	}
	if got := readFile(t, root, "net/ipv4/conf/all/arp_notify"); got != "1\n" {
		t.Errorf("file %q after reconcile", got)
	}
	if fw := byKey(t, rep, "net.ipv4.conf.all.forwarding"); fw.Drifts != 0 || !fw.LastDrift.IsZero() {
		t.Errorf("undrifted key counted: %+v", fw)
	}

	// A second drift counts again; the original previous is kept.
	clock = base.Add(2 * time.Minute)
	writeFile(t, root, "net/ipv4/conf/all/arp_notify", "7\n")
	rep = tu.Reconcile(ctx)
	ks = byKey(t, rep, "net.ipv4.conf.all.arp_notify")
	if ks.Drifts != 2 || !ks.LastDrift.Equal(clock) || ks.Previous != "0" || rep.Changes[0].Old != "7" {
		t.Errorf("after second drift: %+v changes %+v", ks, rep.Changes)
	}

	// Status shows the same, without changes and without I/O.
	st := tu.Status()
	if len(st.Changes) != 0 || byKey(t, st, "net.ipv4.conf.all.arp_notify").Drifts != 2 ||
		!st.LastReconcile.Equal(clock) {
		t.Errorf("status %+v", st)
	}

	// A key that vanishes and comes back is not a drift.
	p := filepath.Join(root, "net/ipv4/conf/all/forwarding")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if ks := byKey(t, tu.Reconcile(ctx), "net.ipv4.conf.all.forwarding"); ks.State != StateUnsupported {
		t.Errorf("removed key: %+v", ks)
	}
	writeFile(t, root, "net/ipv4/conf/all/forwarding", "0\n")
	rep = tu.Reconcile(ctx)
	if fw := byKey(t, rep, "net.ipv4.conf.all.forwarding"); fw.State != StateApplied || fw.Drifts != 0 || fw.Previous != "0" {
		t.Errorf("returned key: %+v", fw)
	}
}

func TestUnchangedKeyThatDriftsIsCorrected(t *testing.T) {
	root := mkTree(t, map[string]string{"net/ipv4/conf/all/rp_filter": "0\n"})
	tu := configured(t, root, Settings{EnableIPv4: true})
	ctx := context.Background()
	if ks := byKey(t, tu.Apply(ctx), "net.ipv4.conf.all.rp_filter"); ks.State != StateUnchanged {
		t.Fatalf("%+v", ks)
	}
	writeFile(t, root, "net/ipv4/conf/all/rp_filter", "1\n")
	rep := tu.Reconcile(ctx)
	ks := byKey(t, rep, "net.ipv4.conf.all.rp_filter")
	if ks.State != StateApplied || ks.Drifts != 1 || ks.Previous != "0" || len(rep.Changes) != 1 || !rep.Changes[0].Drift {
		t.Errorf("%+v %+v", ks, rep.Changes)
	}
}

func TestConfigure(t *testing.T) {
	root := mkTree(t, initNS)
	tu := newTest(t, root)
	if st := tu.Status(); len(st.Keys) != 0 || !st.LastReconcile.IsZero() {
		t.Fatalf("new tuner status %+v", st)
	}
	if err := tu.Configure(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	for _, ks := range tu.Status().Keys {
		if ks.State != StatePending {
			t.Errorf("before any pass: %+v", ks)
		}
	}
	ctx := context.Background()
	tu.Apply(ctx)
	writeFile(t, root, "net/ipv4/conf/all/rp_filter", "1\n")
	tu.Reconcile(ctx) // one drift on rp_filter

	// A bad configuration changes nothing.
	if err := tu.Configure(Settings{Set: map[string]string{"net..x": "1"}}); err == nil {
		t.Fatal("bad key accepted")
	}
	if n := len(tu.Status().Keys); n != 6 {
		t.Fatalf("%d keys after a rejected configure", n)
	}

	// Same settings again: nothing changes (idempotent).
	before := tu.Status()
	if err := tu.Configure(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	after := tu.Status()
	for i := range before.Keys {
		if before.Keys[i] != after.Keys[i] {
			t.Errorf("reconfigure changed %+v to %+v", before.Keys[i], after.Keys[i])
		}
	}

	// Changed value: pending again, counters and previous kept; dropped key gone.
	s := DefaultSettings()
	s.Set = map[string]string{"net.ipv4.conf.all.rp_filter": "2"}
	s.Drop = []string{"net.ipv4.conf.all.arp_notify"}
	if err := tu.Configure(s); err != nil {
		t.Fatal(err)
	}
	st := tu.Status()
	if len(st.Keys) != 5 {
		t.Errorf("%d keys, want 5", len(st.Keys))
	}
	rp := byKey(t, st, "net.ipv4.conf.all.rp_filter")
	if rp.State != StatePending || rp.Desired != "2" || rp.Drifts != 1 || rp.Previous != "2" {
		t.Errorf("rp_filter after value change: %+v", rp)
	}
	rep := tu.Reconcile(ctx)
	rp = byKey(t, rep, "net.ipv4.conf.all.rp_filter")
	if rp.State != StateApplied || rp.Actual != "2" || rp.Drifts != 1 {
		t.Errorf("rp_filter applied: %+v", rp)
	}
	for _, c := range rep.Changes {
		if c.Drift {
			t.Errorf("a changed desired value is not drift: %+v", c)
		}
	}
	if got := readFile(t, root, "net/ipv4/conf/all/arp_notify"); got != "1\n" {
		t.Errorf("dropped key changed: %q", got)
	}

	// Another root: state starts over.
	other := mkTree(t, childNS())
	s2 := DefaultSettings()
	s2.ProcSysRoot = other
	if err := tu.Configure(s2); err != nil {
		t.Fatal(err)
	}
	st = tu.Status()
	if !st.LastReconcile.IsZero() || byKey(t, st, "net.ipv4.conf.all.rp_filter").Drifts != 0 {
		t.Errorf("new root kept state: %+v", st)
	}
	if ks := byKey(t, tu.Apply(ctx), "net.ipv4.conf.all.forwarding"); ks.State != StateApplied || readFile(t, other, ks.Path) != "1\n" {
		t.Errorf("new root: %+v", ks)
	}
}

func TestCanceledContext(t *testing.T) {
	root := mkTree(t, initNS)
	tu := configured(t, root, DefaultSettings())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := tu.Apply(ctx)
	if !strings.Contains(rep.Err, "context canceled") || len(rep.Changes) != 0 {
		t.Errorf("%+v", rep)
	}
	if got := readFile(t, root, "net/ipv4/conf/all/forwarding"); got != "0\n" {
		t.Errorf("canceled pass wrote %q", got)
	}
	if rep := tu.Apply(context.Background()); rep.Err != "" {
		t.Errorf("Err survives a full pass: %q", rep.Err)
	}
}

// TestConcurrent runs passes, reconfigurations and status reads at once;
// meant for -race.
func TestConcurrent(t *testing.T) {
	root := mkTree(t, initNS)
	tu := configured(t, root, DefaultSettings())
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for range 50 {
				tu.Reconcile(ctx)
			}
		}()
		go func() {
			defer wg.Done()
			for j := range 50 {
				s := DefaultSettings()
				if (i+j)%2 == 0 {
					s.Set = map[string]string{"net.ipv4.conf.all.rp_filter": "1"}
				}
				if err := tu.Configure(s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				st := tu.Status()
				if len(st.Keys) != 6 {
					t.Errorf("%d keys", len(st.Keys))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := tu.Configure(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	rep := tu.Reconcile(ctx)
	if rep.Degraded || byKey(t, rep, "net.ipv4.conf.all.rp_filter").Actual != "0" {
		t.Errorf("final state %+v", rep)
	}
}

func TestNotExist(t *testing.T) {
	for err, want := range map[error]bool{
		&os.PathError{Err: syscall.ENOENT}:  true,
		&os.PathError{Err: syscall.ENOTDIR}: true,
		&os.PathError{Err: syscall.EACCES}:  false,
		errors.New("x"):                     false,
	} {
		if got := notExist(err); got != want {
			t.Errorf("notExist(%v) = %v", err, got)
		}
	}
}

func TestRoots(t *testing.T) {
	// No I/O here: only which root a tuner would use.
	if got := New("").root; got != DefaultProcSysRoot {
		t.Errorf("New(\"\") root %q", got)
	}
	root := t.TempDir()
	tu := New(root + "/")
	if err := tu.Configure(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	if tu.root != root {
		t.Errorf("DefaultSettings moved the root to %q, want %q", tu.root, root)
	}
	other := t.TempDir()
	if err := tu.Configure(Settings{ProcSysRoot: other}); err != nil {
		t.Fatal(err)
	}
	if tu.root != other {
		t.Errorf("root %q, want %q", tu.root, other)
	}
	if err := tu.Configure(Settings{}); err != nil {
		t.Fatal(err)
	}
	if tu.root != root {
		t.Errorf("empty ProcSysRoot: root %q, want New's %q", tu.root, root)
	}
}
