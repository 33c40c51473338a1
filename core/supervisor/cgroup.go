package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Each plugin instance runs in a cgroup of its own, a child of the agent's
// cgroup, when the node lets the agent make one. The cgroup is what bounds
// the plugin's processes (pids) and the memory of its whole tree (memory),
// and what ends the tree for good: membership is inherited by every fork
// and no process can leave a cgroup by itself (moving needs write access
// to the cgroup files, which a plugin's children have only as root; see
// the README on the trust placed in plugins).
//
// cgroup v2 (one cgroup2 hierarchy at /sys/fs/cgroup): the agent needs its
// cgroup delegated (systemd Delegate=yes). v2 allows processes only in
// leaves once controllers are enabled for children, so the agent first
// moves itself into <own>/agent; plugins get <own>/plugin-<name>-<mark>.
// They are started inside it (clone3 CLONE_INTO_CGROUP), limited by
// pids.max, memory.max (memory.swap.max 0, memory.oom.group 1) and ended
// with cgroup.kill.
//
// cgroup v1 (a hierarchy per controller): the pids and memory hierarchies,
// each where /proc/self/cgroup puts the agent; plugins get
// <own>/spiderpool-plugin-<name>-<mark> in each. The plugin is forked by a
// thread that was moved into those cgroups first, so it is born inside;
// it is ended by SIGKILLing every pid in cgroup.procs until none is left
// (pids.max bounds how many a fork bomb can make meanwhile).

// cgroupKind says which cgroup mechanism is in force.
type cgroupKind int

const (
	cgroupNone cgroupKind = iota
	cgroupV1
	cgroupV2
)

// cgroupRoot is where cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// agentLeaf is the v2 leaf the agent moves itself into.
const agentLeaf = "agent"

// cgroupSetup is what the agent found at start: where plugin cgroups go.
type cgroupSetup struct {
	kind cgroupKind
	// v2: the parent of the plugin cgroups. v1: the parents in the pids
	// and the memory hierarchies ("" when that controller is missing).
	v2, pids, memory string
	// v2: which controllers are enabled for the plugin cgroups.
	v2Pids, v2Memory bool
	// noClone3 is set once clone3 was refused (systemd's seccomp filter
	// for RestrictNamespaces= answers it with ENOSYS): plugins are then
	// moved into their v2 cgroup right after they start.
	noClone3 atomic.Bool
	// why no cgroups are used, or what is missing, for the log.
	note string
}

// describe says what is in force, for the Limits line and the log.
func (c *cgroupSetup) describe() string {
	switch {
	case c == nil || c.kind == cgroupNone:
		return "no cgroup (" + c.noteOr("not detected") + ")"
	case c.kind == cgroupV2:
		s := "cgroup v2 " + c.v2
		if !c.v2Pids || !c.v2Memory {
			s += " (" + c.note + ")"
		}
		return s
	default:
		var parts []string
		if c.pids != "" {
			parts = append(parts, "pids "+c.pids)
		}
		if c.memory != "" {
			parts = append(parts, "memory "+c.memory)
		}
		return "cgroup v1 " + strings.Join(parts, ", ")
	}
}

func (c *cgroupSetup) noteOr(s string) string {
	if c != nil && c.note != "" {
		return c.note
	}
	return s
}

// detectCgroups finds where this process may make plugin cgroups, and on
// v2 prepares its own cgroup for them. It never fails: what it cannot use
// it reports in note and the agent falls back to process groups and
// environment marks.
func detectCgroups() *cgroupSetup {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return &cgroupSetup{note: fmt.Sprintf("read /proc/self/cgroup: %v", err)}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return &cgroupSetup{note: fmt.Sprintf("read /proc/self/mountinfo: %v", err)}
	}
	own := parseProcCgroup(self)
	ms := parseCgroupMounts(mounts)
	if m, ok := ms["cgroup2"]; ok && m.point == cgroupRoot {
		return setupV2(m.dir(own[""]))
	}
	c := &cgroupSetup{kind: cgroupV1}
	var notes []string
	for _, ctl := range []string{"pids", "memory"} {
		m, ok := ms[ctl]
		p, in := own[ctl]
		if !ok || !in {
			notes = append(notes, "no "+ctl+" controller")
			continue
		}
		dir := m.dir(p)
		if err := probeDir(dir); err != nil {
			notes = append(notes, err.Error())
			continue
		}
		if ctl == "pids" {
			c.pids = dir
		} else {
			c.memory = dir
		}
	}
	c.note = strings.Join(notes, "; ")
	if c.pids == "" && c.memory == "" {
		c.kind = cgroupNone
	}
	return c
}

// sweep ends what an agent that died without stopping its plugins (kill
// -9, a crash) left in plugin cgroups below parents: the processes of its
// plugins, however they escaped, and the cgroups. An agent that still
// runs (its pid is alive: another agent sharing this cgroup, as in
// tests) is left alone. It returns how many cgroups it removed.
func (c *cgroupSetup) sweep(reap func()) int {
	if c == nil || c.kind == cgroupNone {
		return 0
	}
	n := 0
	for _, parent := range []string{c.v2, c.pids, c.memory} {
		if parent == "" {
			continue
		}
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			pid, ok := sweptAgentPID(e.Name(), c.kind)
			if !e.IsDir() || !ok || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
				continue
			}
			pc := &pluginCgroup{kind: c.kind, dirs: []string{filepath.Join(parent, e.Name())}}
			if _, err := pc.kill(2*time.Second, 0, reap); err == nil && pc.remove(time.Second) == nil {
				n++
			}
		}
	}
	return n
}

// sweptAgentPID reads the agent's pid from the name of a plugin cgroup:
// [spiderpool-]plugin-<name>-<agent pid>-<n>.
func sweptAgentPID(name string, kind cgroupKind) (int, bool) {
	prefix := "spiderpool-plugin-"
	if kind == cgroupV2 {
		prefix = "plugin-"
	}
	if !strings.HasPrefix(name, prefix) {
		return 0, false
	}
	f := strings.Split(name, "-")
	if len(f) < 4 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[len(f)-2])
	if _, err2 := strconv.Atoi(f[len(f)-1]); err != nil || err2 != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// parseProcCgroup maps each controller of /proc/self/cgroup (and "" for
// the v2 hierarchy) to this process's path in it.
func parseProcCgroup(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			out[""] = f[2]
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			out[ctl] = f[2]
		}
	}
	return out
}

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct{ root, point string }

// dir is where the cgroup at path (as /proc/self/cgroup names it) is.
func (m cgroupMount) dir(path string) string {
	rel := strings.TrimPrefix(path, m.root)
	if m.root == "/" {
		rel = path
	}
	return filepath.Join(m.point, rel)
}

// parseCgroupMounts maps each v1 controller to its hierarchy's mount,
// and "cgroup2" to the v2 mount, from /proc/self/mountinfo. The first
// mount of a hierarchy wins.
func parseCgroupMounts(b []byte) map[string]cgroupMount {
	out := map[string]cgroupMount{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := cgroupMount{root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		switch g[0] {
		case "cgroup2":
			if _, dup := out["cgroup2"]; !dup {
				out["cgroup2"] = m
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if _, dup := out[opt]; !dup && (opt == "pids" || opt == "memory") {
					out[opt] = m
				}
			}
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// probeDir checks that a child cgroup can be made (and removed) in dir.
func probeDir(dir string) error {
	p := filepath.Join(dir, fmt.Sprintf("spiderpool-probe-%d", os.Getpid()))
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cannot make a cgroup in %s: %w", dir, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("cannot remove cgroup %s: %w", p, err)
	}
	return nil
}

// setupV2 prepares the agent's own v2 cgroup (dir) for plugin cgroups:
// the agent moves into the leaf dir/agent (unless it is there already, as
// after an earlier setup in this process) and enables the pids and memory
// controllers for the children of the parent.
func setupV2(dir string) *cgroupSetup {
	parent := dir
	if filepath.Base(dir) == agentLeaf {
		parent = filepath.Dir(dir)
	} else if dir != cgroupRoot {
		leaf := filepath.Join(dir, agentLeaf)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return &cgroupSetup{note: fmt.Sprintf("cgroup v2 %s is not delegated to the agent (systemd Delegate=yes): %v", dir, err)}
		}
		if err := writeCgroupFile(leaf, "cgroup.procs", "0"); err != nil {
			return &cgroupSetup{note: fmt.Sprintf("move the agent into %s: %v", leaf, err)}
		}
	}
	avail, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	var enable []string
	for _, ctl := range []string{"pids", "memory"} {
		if hasWord(string(avail), ctl) {
			enable = append(enable, "+"+ctl)
		}
	}
	c := &cgroupSetup{kind: cgroupV2, v2: parent}
	if len(enable) < 2 {
		c.note = fmt.Sprintf("controllers available in %s: %q", parent, strings.TrimSpace(string(avail)))
	}
	if len(enable) > 0 {
		// Fails (EBUSY) while another process than the agent is in
		// parent: then there are no limits, but cgroup.kill still ends
		// a plugin's tree.
		if err := writeCgroupFile(parent, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
			c.note = fmt.Sprintf("enable %s in %s: %v", strings.Join(enable, " "), parent, err)
		} else {
			c.v2Pids = hasWord(strings.Join(enable, " "), "+pids")
			c.v2Memory = hasWord(strings.Join(enable, " "), "+memory")
		}
	}
	if err := probeDir(parent); err != nil {
		return &cgroupSetup{note: err.Error()}
	}
	return c
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// writeCgroupFile writes one value to a cgroup control file.
func writeCgroupFile(dir, file, val string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(val)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", val, p, werr)
	}
	return cerr
}

// pluginCgroup is the cgroup (one directory per hierarchy) of one plugin
// instance.
type pluginCgroup struct {
	kind cgroupKind
	dirs []string // v2: one; v1: pids and/or memory
	pids string   // the directory holding pids.max, "" when none
	mem  string   // the directory holding the memory files, "" when none
}

// create makes the cgroup of one instance and sets its limits. Nothing is
// left behind when it fails.
func (c *cgroupSetup) create(name, mark string, l Limits) (*pluginCgroup, error) {
	if c == nil || c.kind == cgroupNone {
		return nil, nil
	}
	pc := &pluginCgroup{kind: c.kind}
	base := "spiderpool-plugin-" + name + "-" + mark
	if c.kind == cgroupV2 {
		d := filepath.Join(c.v2, "plugin-"+name+"-"+mark)
		pc.dirs = []string{d}
		if c.v2Pids {
			pc.pids = d
		}
		if c.v2Memory {
			pc.mem = d
		}
	} else {
		if c.pids != "" {
			pc.pids = filepath.Join(c.pids, base)
			pc.dirs = append(pc.dirs, pc.pids)
		}
		if c.memory != "" {
			pc.mem = filepath.Join(c.memory, base)
			pc.dirs = append(pc.dirs, pc.mem)
		}
	}
	for _, d := range pc.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			pc.remove(0)
			return nil, fmt.Errorf("make plugin cgroup: %w", err)
		}
	}
	if err := pc.setLimits(l); err != nil {
		pc.remove(0)
		return nil, err
	}
	return pc, nil
}

// setLimits writes the limits. A file the kernel does not offer (no pids
// controller enabled, no swap accounting) is skipped; a write that fails
// is an error.
func (pc *pluginCgroup) setLimits(l Limits) error {
	type w struct{ dir, file, val string }
	var ws []w
	if pc.pids != "" && l.PidsMax > 0 {
		ws = append(ws, w{pc.pids, "pids.max", strconv.FormatInt(l.PidsMax, 10)})
	}
	if pc.mem != "" && l.MemoryMax > 0 {
		v := strconv.FormatUint(l.MemoryMax, 10)
		if pc.kind == cgroupV2 {
			ws = append(ws, w{pc.mem, "memory.max", v}, w{pc.mem, "memory.swap.max", "0"}, w{pc.mem, "memory.oom.group", "1"})
		} else {
			// memsw (memory+swap) must be at least the memory limit and is
			// set after it: equal means no swap.
			ws = append(ws, w{pc.mem, "memory.limit_in_bytes", v}, w{pc.mem, "memory.memsw.limit_in_bytes", v})
		}
	}
	for _, x := range ws {
		if _, err := os.Stat(filepath.Join(x.dir, x.file)); errors.Is(err, os.ErrNotExist) {
			if x.file == "pids.max" || x.file == "memory.max" || x.file == "memory.limit_in_bytes" {
				return fmt.Errorf("plugin cgroup %s has no %s: is the controller enabled?", x.dir, x.file)
			}
			continue
		}
		if err := writeCgroupFile(x.dir, x.file, x.val); err != nil {
			return fmt.Errorf("set plugin cgroup limit: %w", err)
		}
	}
	return nil
}

// startIn runs start (which forks the plugin) so that the new process is
// born inside the cgroup: its first instruction already counts against the
// limits, and nothing it forks can be outside. v2 does this with
// CLONE_INTO_CGROUP (set up by the caller through dirFD); on v1 the fork
// is made by an OS thread that was moved into the cgroups first and is
// moved back (into the agent's own cgroups, the parents) afterwards. A
// thread that cannot be moved back is never handed back to the Go
// scheduler: its goroutine ends locked to it, which ends the thread (or,
// for the main thread, parks it for good).
func (pc *pluginCgroup) startIn(start func() error) error {
	if pc == nil || pc.kind != cgroupV1 {
		return start()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := strconv.Itoa(unix.Gettid())
		var moved []string
		back := func() bool {
			ok := true
			for _, d := range moved {
				ok = writeCgroupFile(filepath.Dir(d), "tasks", tid) == nil && ok
			}
			return ok
		}
		for _, d := range pc.dirs {
			if err := writeCgroupFile(d, "tasks", tid); err != nil {
				if back() {
					runtime.UnlockOSThread()
				}
				done <- fmt.Errorf("enter plugin cgroup: %w", err)
				return
			}
			moved = append(moved, d)
		}
		err := start()
		if back() {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// dirFD opens the v2 cgroup directory for CLONE_INTO_CGROUP; nil on v1
// and where clone3 is refused.
func (pc *pluginCgroup) dirFD(c *cgroupSetup) (*os.File, error) {
	if pc == nil || pc.kind != cgroupV2 || c.noClone3.Load() {
		return nil, nil
	}
	f, err := os.OpenFile(pc.dirs[0], os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open plugin cgroup: %w", err)
	}
	return f, nil
}

// procs lists the processes in the cgroup (every hierarchy).
func (pc *pluginCgroup) procs() ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, d := range pc.dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return out, err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	return out, nil
}

// kill ends every process in the cgroup and waits, up to bound, until
// none is left and those it killed are gone or reaped: reap collects the
// ones that became the agent's children (orphans, as subreaper); leader,
// the plugin process os/exec waits for, is left to it.
func (pc *pluginCgroup) kill(bound time.Duration, leader int, reap func()) (int, error) {
	if pc == nil {
		return 0, nil
	}
	deadline := time.Now().Add(bound)
	killed := map[int]bool{}
	self := os.Getpid()
	for {
		// Listed before cgroup.kill: it is asynchronous, and a process
		// that left cgroup.procs may still be a zombie to reap.
		pids, err := pc.procs()
		if err != nil {
			return len(killed), fmt.Errorf("list plugin cgroup: %w", err)
		}
		if pc.kind == cgroupV2 {
			// Kills every process, including ones forked meanwhile.
			if err := writeCgroupFile(pc.dirs[0], "cgroup.kill", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return len(killed), fmt.Errorf("kill plugin cgroup: %w", err)
			}
		}
		live := 0
		for _, pid := range pids {
			if pid == self || pid <= 0 {
				continue // never: the agent is not in a plugin cgroup
			}
			live++
			_ = unix.Kill(pid, unix.SIGKILL)
			killed[pid] = true
		}
		if reap != nil {
			reap()
		}
		if live == 0 && settled(killed, self, leader) {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%d processes still in plugin cgroup %s after %v", live, pc.dirs[0], bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled reports whether every killed process is gone, or a zombie that
// is not the agent's to reap (its parent, not one of the killed, will).
func settled(killed map[int]bool, self, leader int) bool {
	for pid := range killed {
		ppid, st, ok := procStat(pid)
		if !ok || pid == leader {
			continue
		}
		if st != 'Z' || ppid == self || killed[ppid] {
			return false
		}
	}
	return true
}

// remove deletes the cgroup's directories, retrying up to bound while the
// kernel still counts exiting processes in them.
func (pc *pluginCgroup) remove(bound time.Duration) error {
	if pc == nil {
		return nil
	}
	deadline := time.Now().Add(bound)
	var errs []error
	for _, d := range pc.dirs {
		for {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				tasks, _ := os.ReadFile(filepath.Join(d, "tasks"))
				errs = append(errs, fmt.Errorf("remove plugin cgroup (tasks %q): %w", strings.Fields(string(tasks)), err))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// oomKills reads how many processes of the cgroup the kernel's OOM killer
// ended (v1 memory.oom_control, v2 memory.events: "oom_kill N").
func (pc *pluginCgroup) oomKills() int64 {
	if pc == nil || pc.mem == "" {
		return 0
	}
	file := "memory.oom_control"
	if pc.kind == cgroupV2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(pc.mem, file))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
