package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"golang.org/x/sys/unix"
)

// procRunner is go-plugin's runner.Runner for one plugin process, in place
// of go-plugin's own: it starts the process through the reaper, executes
// the checked descriptor rather than a path, applies resource limits before
// the plugin gets going, and kills the whole tree (its cgroup, its process
// group and every process with the instance's mark) rather than the one
// pid.
type procRunner struct {
	cmd    *exec.Cmd
	name   string // the configured path, for messages
	plugin string // the configured name, for the cgroup's
	bin    *trustedBinary
	reaper *reaper
	mark   string
	limits Limits
	log    hclog.Logger
	stdout io.ReadCloser
	stderr io.ReadCloser

	mu  sync.Mutex
	pid int
	cg  *pluginCgroup // nil without cgroups
	// oom is set when the tree was ended for reaching its memory limit.
	oom      atomic.Bool
	stopOOM  chan struct{}
	stopOnce sync.Once
}

// oomPoll is how often a plugin's cgroup is checked for OOM kills.
const oomPoll = 100 * time.Millisecond

func newProcRunner(cmd *exec.Cmd, name, plugin string, bin *trustedBinary, rp *reaper, mark string, limits Limits, log hclog.Logger) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &procRunner{cmd: cmd, name: name, plugin: plugin, bin: bin, reaper: rp, mark: mark, limits: limits, log: log,
		stdout: stdout, stderr: stderr, stopOOM: make(chan struct{})}, nil
}

func (r *procRunner) Start(context.Context) error {
	// The descriptor is needed only until execve has happened.
	defer r.bin.Close()
	cg, err := r.reaper.cgroups.create(r.plugin, r.mark, r.limits)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", r.plugin, err)
	}
	fd, err := cg.dirFD(r.reaper.cgroups)
	if err != nil {
		_ = cg.remove(0)
		return err
	}
	if fd != nil {
		defer fd.Close()
		r.cmd.SysProcAttr.UseCgroupFD = true
		r.cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	}
	r.mu.Lock()
	r.cg = cg
	r.mu.Unlock()
	err = cg.startIn(func() error { return r.reaper.start(r.cmd) })
	if err != nil && fd != nil && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM)) {
		r.reaper.cgroups.noClone3.Store(true)
		r.log.Warn("cannot start plugins inside their cgroup (clone3 refused); moving them in right after start", "error", err)
		fd = nil
		if err = r.renew(); err == nil {
			err = r.reaper.start(r.cmd)
		}
	}
	if err == nil && cg != nil && cg.kind == cgroupV2 && fd == nil {
		// Not born inside: move it in at once (v2 moves all its
		// threads; it has forked nothing yet unless it did so within
		// these microseconds).
		if werr := writeCgroupFile(cg.dirs[0], "cgroup.procs", strconv.Itoa(r.cmd.Process.Pid)); werr != nil {
			_ = unix.Kill(-r.cmd.Process.Pid, unix.SIGKILL)
			go func() { _ = r.Wait(context.Background()) }()
			err = fmt.Errorf("move plugin into its cgroup: %w", werr)
		}
	}
	if err != nil {
		_ = cg.remove(time.Second)
		return err
	}
	pid := r.cmd.Process.Pid
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
	if err := r.limits.apply(pid); err != nil {
		_ = r.Kill(context.Background())
		go func() { _ = r.Wait(context.Background()) }()
		return err
	}
	if cg != nil && cg.mem != "" && r.limits.MemoryMax > 0 {
		go r.watchOOM(cg)
	}
	return nil
}

// renew replaces a command whose Start failed (which closed its pipes)
// by a fresh one, without CLONE_INTO_CGROUP. go-plugin asks for Stdout
// and Stderr only after Start.
func (r *procRunner) renew() error {
	old := r.cmd
	attr := *old.SysProcAttr
	attr.UseCgroupFD, attr.CgroupFD = false, 0
	cmd := &exec.Cmd{Path: old.Path, Args: old.Args, Env: old.Env, ExtraFiles: old.ExtraFiles, SysProcAttr: &attr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	r.cmd, r.stdout, r.stderr = cmd, stdout, stderr
	return nil
}

// watchOOM ends the whole tree once the kernel's OOM killer has killed any
// process of it: on cgroup v1 the killer takes one process (the largest,
// perhaps a child the plugin then waits for for ever), and the plugin is
// one unit that is restarted as a whole. (v2's memory.oom.group does this
// in the kernel; the watch then only records why the plugin went.)
func (r *procRunner) watchOOM(cg *pluginCgroup) {
	base := cg.oomKills()
	t := time.NewTicker(oomPoll)
	defer t.Stop()
	for {
		select {
		case <-r.stopOOM:
			return
		case <-t.C:
		}
		if n := cg.oomKills(); n > base {
			r.oom.Store(true)
			r.log.Warn("the plugin's processes reached its memory limit; ending all of them",
				"limit_mib", r.limits.MemoryMax>>20, "oom_kills", n-base)
			_ = r.Kill(context.Background())
			return
		}
	}
}

// exitReason says why the tree was ended, when the runner ended it by
// itself; "" otherwise.
func (r *procRunner) exitReason() string {
	if r != nil && r.oom.Load() {
		return fmt.Sprintf("the plugin's processes reached the memory limit of %d MiB", r.limits.MemoryMax>>20)
	}
	return ""
}

func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.reaper.waited(r.PID())
	return err
}

// Kill ends the plugin's cgroup, process group and every process of its
// tree, and removes the cgroup. It is safe to call more than once and
// from several goroutines.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	pid, cg := r.pid, r.cg
	r.mu.Unlock()
	if pid <= 0 {
		return nil
	}
	r.stopOnce.Do(func() { close(r.stopOOM) })
	// The cgroup first: nothing in it can escape, however it forks or
	// whatever it does to its environment.
	_, cgErr := cg.kill(2*time.Second, pid, func() { r.reaper.reapZombies() })
	_ = unix.Kill(-pid, unix.SIGKILL)
	_, err := r.reaper.killTree(r.mark, 2*time.Second)
	return errors.Join(cgErr, err, cg.remove(2*time.Second))
}

// PID is the plugin's process id, 0 before it started.
func (r *procRunner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

func (r *procRunner) Stdout() io.ReadCloser           { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser           { return r.stderr }
func (r *procRunner) Name() string                    { return r.name }
func (r *procRunner) Diagnose(context.Context) string { return "" }
func (r *procRunner) ID() string                      { return strconv.Itoa(r.PID()) }

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
