package supervisor

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procRunner is go-plugin's runner.Runner for one plugin process, in place
// of go-plugin's own: it starts the process through the reaper, executes
// the checked descriptor rather than a path, applies resource limits before
// the plugin gets going, and kills the whole tree (process group and every
// process with the instance's mark) rather than the one pid.
type procRunner struct {
	cmd    *exec.Cmd
	name   string // the configured path, for messages
	bin    *trustedBinary
	reaper *reaper
	mark   string
	limits Limits
	stdout io.ReadCloser
	stderr io.ReadCloser

	mu  sync.Mutex
	pid int
}

func newProcRunner(cmd *exec.Cmd, name string, bin *trustedBinary, rp *reaper, mark string, limits Limits) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &procRunner{cmd: cmd, name: name, bin: bin, reaper: rp, mark: mark, limits: limits, stdout: stdout, stderr: stderr}, nil
}

func (r *procRunner) Start(context.Context) error {
	// The descriptor is needed only until execve has happened.
	defer r.bin.Close()
	if err := r.reaper.start(r.cmd); err != nil {
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
	return nil
}

func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.reaper.waited(r.PID())
	return err
}

// Kill ends the plugin's process group and every process of its tree.
// It is safe to call more than once and from several goroutines.
func (r *procRunner) Kill(context.Context) error {
	pid := r.PID()
	if pid <= 0 {
		return nil
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	_, err := r.reaper.killTree(r.mark, 2*time.Second)
	return err
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
