// Package tuner sets kernel network parameters (sysctls) and keeps them
// set: it applies a desired list, reports per key what it found and did,
// and on every reconcile reads each key again and rewrites the ones that
// drifted.
//
// A key the kernel does not have is skipped and reported unsupported (the
// neigh/default/gc_thresh3 keys, for one, exist only in the initial
// network namespace). A key that cannot be written is reported failed and
// makes the report degraded; it never stops the other keys.
//
// All file I/O happens on the calling goroutine, and /proc/sys/net shows
// the network namespace of the thread that opens it. To tune another
// namespace, call Apply or Reconcile from a goroutine locked to an OS
// thread that has joined that namespace.
//
// The package depends on nothing but the standard library; the plugin glue
// translates its types to the SDK's.
package tuner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// State is what a pass found and did for one key.
type State string

const (
	// StatePending: configured, not visited by a pass yet.
	StatePending State = "pending"
	// StateApplied: the key holds the desired value, and the tuner wrote it
	// (since the desired value was last changed).
	StateApplied State = "applied"
	// StateUnchanged: the key already held the desired value; the tuner
	// never had to write it.
	StateUnchanged State = "unchanged"
	// StateUnsupported: the kernel does not have the key (ENOENT or
	// ENOTDIR); skipped, not an error.
	StateUnsupported State = "unsupported"
	// StateFailed: the key could not be read or written, or reads back
	// something other than what was written. See KeyStatus.Error.
	StateFailed State = "failed"
)

// KeyStatus is the state of one managed key.
type KeyStatus struct {
	// Key is the key as configured (dotted or slash form).
	Key string `json:"key"`
	// Path is the file it resolved to, relative to the sysctl root, with
	// slashes (e.g. "net/ipv4/conf/eth0.100/rp_filter").
	Path string `json:"path,omitempty"`
	// Desired is the normalised value the tuner keeps.
	Desired string `json:"desired"`
	// Actual is the normalised value read by the last pass; empty when it
	// could not be read.
	Actual string `json:"actual,omitempty"`
	// State is the outcome of the last pass.
	State State `json:"state"`
	// Previous is the value the key had when this tuner first read it,
	// before any write of its own; remembered across passes and
	// reconfigurations. Empty if the key was never readable.
	Previous string `json:"previous,omitempty"`
	// Error explains StateFailed.
	Error string `json:"error,omitempty"`
	// LastDrift is when a pass last found the key changed behind the
	// tuner's back (it was at the desired value at the end of the pass
	// before); zero if never.
	LastDrift time.Time `json:"last_drift,omitzero"`
	// Drifts counts drift corrections: rewrites of a key that had drifted.
	Drifts uint64 `json:"drifts_total"`
	// Failures counts the passes that ended with the key failed.
	Failures uint64 `json:"failures_total"`
}

// Change is one successful write, for the caller to log.
type Change struct {
	// Key is the key as configured.
	Key string `json:"key"`
	// Path is the file written, relative to the sysctl root.
	Path string `json:"path"`
	// Old is the normalised value found before the write.
	Old string `json:"old"`
	// New is the value written.
	New string `json:"new"`
	// Drift is true when the key had been at the desired value and was
	// changed by someone else; the write corrected that drift.
	Drift bool `json:"drift"`
}

// Report is the outcome of a pass (Apply, Reconcile) or the current state
// (Status).
type Report struct {
	// Keys holds every managed key in configuration order: the defaults
	// first, then added keys sorted.
	Keys []KeyStatus `json:"keys"`
	// Changes lists the writes of this pass; always empty from Status.
	Changes []Change `json:"changes,omitempty"`
	// LastReconcile is when the last pass started; zero before the first.
	LastReconcile time.Time `json:"last_reconcile,omitzero"`
	// Duration is how long the last pass took.
	Duration time.Duration `json:"duration"`
	// Degraded is true when any key is failed.
	Degraded bool `json:"degraded"`
	// Err is set when the last pass did not visit every key because its
	// context ended; the keys it did not reach keep their earlier state.
	Err string `json:"error,omitempty"`
}

// keyState is what the tuner remembers about one key.
type keyState struct {
	param  Param
	path   string
	actual string
	state  State
	err    string
	// inSync: the last pass ended with the key at the desired value.
	inSync bool
	// wrote: the tuner wrote the current desired value at least once.
	wrote     bool
	lastDrift time.Time
	drifts    uint64
	failures  uint64
}

// file is what the tuner needs of an open sysctl file.
type file interface {
	io.Reader
	io.Writer
	io.Closer
}

// Tuner keeps a set of sysctls at their desired values. It is safe for
// concurrent use: passes run one at a time, and Configure and Status never
// wait for a pass's file I/O.
type Tuner struct {
	defaultRoot string

	// passMu serialises passes.
	passMu sync.Mutex

	mu        sync.Mutex
	root      string
	params    []Param
	keys      map[string]*keyState // by keyID
	originals map[string]string    // first value read, by absolute path
	last      time.Time
	duration  time.Duration
	lastErr   string

	// now, openRoot and openFile are replaced by tests.
	now      func() time.Time
	openRoot func(dir string) (*os.Root, error)
	openFile func(r *os.Root, name string, flag int) (file, error)
}

// New returns a tuner working on the sysctl tree at root (DefaultProcSysRoot
// when empty) with no keys configured; call Configure next.
func New(root string) *Tuner {
	if root == "" {
		root = DefaultProcSysRoot
	}
	root = filepath.Clean(root)
	return &Tuner{
		defaultRoot: root,
		root:        root,
		keys:        map[string]*keyState{},
		originals:   map[string]string{},
		now:         time.Now,
		openRoot:    os.OpenRoot,
		openFile: func(r *os.Root, name string, flag int) (file, error) {
			return r.OpenFile(name, flag, 0)
		},
	}
}

// Configure replaces the desired parameters (see Desired); an empty
// s.ProcSysRoot keeps the root given to New. It does no I/O: the next
// Apply or Reconcile acts on it. On error nothing changes.
//
// Configure is idempotent. A key whose desired value stays the same keeps
// its state and counters; a key whose value changes keeps its counters and
// is pending again; a key no longer configured is forgotten (the tuner does
// not restore it). Changing the root forgets all state.
func (t *Tuner) Configure(s Settings) error {
	params, err := Desired(s)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	root := t.defaultRoot
	if s.ProcSysRoot != "" {
		root = filepath.Clean(s.ProcSysRoot)
	}
	sameRoot := root == t.root
	keys := make(map[string]*keyState, len(params))
	for _, p := range params {
		id := keyID(p.Key)
		ks := &keyState{param: p, state: StatePending}
		if old := t.keys[id]; old != nil && sameRoot {
			if old.param.Value == p.Value {
				*ks = *old
				ks.param = p
			} else {
				ks.lastDrift, ks.drifts, ks.failures = old.lastDrift, old.drifts, old.failures
			}
		}
		keys[id] = ks
	}
	if !sameRoot {
		t.last, t.duration, t.lastErr = time.Time{}, 0, ""
	}
	t.root, t.params, t.keys = root, params, keys
	return nil
}

// Apply reads every configured key and writes the ones that differ from
// their desired value. It is the same pass as Reconcile; the two names let
// callers say what they mean (first application vs. periodic check).
func (t *Tuner) Apply(ctx context.Context) Report { return t.pass(ctx) }

// Reconcile reads every configured key again and rewrites any that differs
// from its desired value. A key that was at its desired value after the
// previous pass and differs now has drifted: the correction is counted in
// its Drifts, its LastDrift is set, and the Change is marked Drift.
func (t *Tuner) Reconcile(ctx context.Context) Report { return t.pass(ctx) }

// Status returns the state left by the last pass, without any I/O.
func (t *Tuner) Status() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reportLocked(nil)
}

// outcome is what visiting one key found and did.
type outcome struct {
	path   string
	found  string // normalised value read before any write
	readOK bool
	// sent: a write reached the file, also when the pass reports a
	// failure after it (an error on close, a short write, a read-back
	// that differs).
	sent   bool
	actual string
	state  State
	err    error
}

func (t *Tuner) pass(ctx context.Context) Report {
	t.passMu.Lock()
	defer t.passMu.Unlock()

	t.mu.Lock()
	root := t.root
	params := append([]Param(nil), t.params...)
	t.mu.Unlock()

	start := t.now()
	began := time.Now()
	outcomes := make([]outcome, 0, len(params))
	var stopped error
	r, rootErr := t.openRoot(root)
	if r != nil {
		defer r.Close()
	}
	for _, p := range params {
		if err := ctx.Err(); err != nil {
			stopped = err
			break
		}
		if rootErr != nil {
			outcomes = append(outcomes, outcome{path: keyID(p.Key), state: StateFailed,
				err: fmt.Errorf("sysctl root: %w", rootErr)})
			continue
		}
		outcomes = append(outcomes, t.visit(r, p))
	}
	elapsed := time.Since(began)

	t.mu.Lock()
	defer t.mu.Unlock()
	var changes []Change
	if root == t.root {
		for i, o := range outcomes {
			p := params[i]
			ks := t.keys[keyID(p.Key)]
			if ks == nil || ks.param.Value != p.Value {
				continue // reconfigured during the pass; the next pass sees it
			}
			if c, ok := t.mergeLocked(ks, root, o, start); ok {
				changes = append(changes, c)
			}
		}
		t.last, t.duration = start, elapsed
		t.lastErr = ""
		if stopped != nil {
			t.lastErr = fmt.Sprintf("pass stopped after %d of %d keys: %v", len(outcomes), len(params), stopped)
		}
	}
	return t.reportLocked(changes)
}

// visit reads one key, writes it if it differs, and reads it back.
func (t *Tuner) visit(r *os.Root, p Param) outcome {
	cands := candidates(p.Key)
	var (
		path  string
		found string
		err   error
	)
	for _, c := range cands {
		found, err = t.read(r, c)
		if err == nil || !notExist(err) {
			path = c
			break
		}
	}
	if path == "" {
		return outcome{path: cands[0], state: StateUnsupported}
	}
	if err != nil {
		return outcome{path: path, state: StateFailed, err: fmt.Errorf("read: %w", err)}
	}
	o := outcome{path: path, found: found, readOK: true, actual: found}
	if found == p.Value {
		o.state = StateUnchanged
		return o
	}
	sent, err := t.write(r, path, p.Value)
	o.sent = sent
	if err != nil {
		if notExist(err) { // vanished between read and write
			return outcome{path: path, state: StateUnsupported}
		}
		o.state, o.err = StateFailed, fmt.Errorf("write %q: %w", p.Value, err)
		return o
	}
	back, err := t.read(r, path)
	if err != nil {
		o.actual = ""
		o.state, o.err = StateFailed, fmt.Errorf("read back after writing %q: %w", p.Value, err)
		return o
	}
	o.actual = back
	if back != p.Value {
		o.state, o.err = StateFailed, fmt.Errorf("wrote %q but the kernel reads back %q; configure the value as the kernel prints it", p.Value, back)
		return o
	}
	o.state = StateApplied
	return o
}

// mergeLocked folds one outcome into the key's state. It returns the
// Change to report when the pass wrote the key successfully.
func (t *Tuner) mergeLocked(ks *keyState, root string, o outcome, at time.Time) (Change, bool) {
	if o.readOK {
		abs := filepath.Join(root, filepath.FromSlash(o.path))
		if _, ok := t.originals[abs]; !ok {
			t.originals[abs] = o.found
		}
	}
	drift := ks.inSync && o.readOK && o.found != ks.param.Value
	if drift {
		ks.lastDrift = at
	}
	ks.path, ks.actual, ks.err = o.path, o.actual, ""
	if o.err != nil {
		ks.err = o.err.Error()
	}
	var change Change
	wrote := false
	if o.sent {
		ks.wrote = true
	}
	switch o.state {
	case StateApplied:
		ks.wrote, ks.inSync = true, true
		ks.state = StateApplied
		if drift {
			ks.drifts++
		}
		change = Change{Key: ks.param.Key, Path: o.path, Old: o.found, New: o.actual, Drift: drift}
		wrote = true
	case StateUnchanged:
		ks.inSync = true
		ks.state = StateUnchanged
		if ks.wrote {
			ks.state = StateApplied
		}
	case StateUnsupported:
		ks.inSync = false
		ks.state = StateUnsupported
	default:
		ks.inSync = false
		ks.state = StateFailed
		ks.failures++
	}
	return change, wrote
}

func (t *Tuner) reportLocked(changes []Change) Report {
	rep := Report{
		Keys:          make([]KeyStatus, 0, len(t.params)),
		Changes:       changes,
		LastReconcile: t.last,
		Duration:      t.duration,
		Err:           t.lastErr,
	}
	for _, p := range t.params {
		ks := t.keys[keyID(p.Key)]
		st := KeyStatus{
			Key:       ks.param.Key,
			Path:      ks.path,
			Desired:   ks.param.Value,
			Actual:    ks.actual,
			State:     ks.state,
			Error:     ks.err,
			LastDrift: ks.lastDrift,
			Drifts:    ks.drifts,
			Failures:  ks.failures,
		}
		if st.Path == "" {
			st.Path = keyID(p.Key)
		}
		st.Previous = t.originals[filepath.Join(t.root, filepath.FromSlash(st.Path))]
		if ks.state == StateFailed {
			rep.Degraded = true
		}
		rep.Keys = append(rep.Keys, st)
	}
	return rep
}

// maxRead bounds what is read from one sysctl file; the kernel prints at
// most a page.
const maxRead = 1 << 16

func (t *Tuner) read(r *os.Root, rel string) (string, error) {
	f, err := t.openFile(r, rel, os.O_RDONLY)
	if err != nil {
		return "", err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRead))
	cerr := f.Close()
	if err != nil {
		return "", err
	}
	if cerr != nil {
		return "", fmt.Errorf("close: %w", cerr)
	}
	return Normalize(string(data)), nil
}

// write writes v with one write(2), as sysctl(8) does; the kernel parses
// the whole value from it. Errors that show only on close count. sent
// reports whether any byte was accepted.
func (t *Tuner) write(r *os.Root, rel, v string) (sent bool, err error) {
	f, err := t.openFile(r, rel, os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		return false, err
	}
	buf := []byte(v + "\n")
	n, err := f.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	cerr := f.Close()
	if err != nil {
		return n > 0, err
	}
	if cerr != nil {
		return true, fmt.Errorf("close %s: %w", rel, cerr)
	}
	return true, nil
}

// notExist reports whether err means the key is not there.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
