package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TreeEnv marks every process of one plugin instance: the agent puts
// TreeEnv=<agent pid>-<n> in the plugin's environment and every descendant
// inherits it (a fork copies it; an exec keeps it unless the plugin scrubs
// its children's environment). Stopping an instance kills every process
// that carries its mark, wherever it has been reparented: a plugin that
// forked a setsid child and died leaves nothing behind.
const TreeEnv = "SPIDERPOOL_PLUGIN_TREE"

// reaper tracks the plugin processes this agent started and ends their
// descendants. The agent is a child subreaper (PR_SET_CHILD_SUBREAPER), so
// orphans of a plugin become the agent's children rather than init's; the
// reaper collects them, and it must be the only one that starts children
// in this process: it reaps any zombie child that is not a plugin it knows.
type reaper struct {
	self int
	// cgroups is where plugin cgroups are made; its kind is cgroupNone
	// when the node offers none to the agent.
	cgroups *cgroupSetup

	mu      sync.Mutex
	leaders map[int]bool // plugin processes os/exec will wait for
	seq     int
}

func newReaper() *reaper {
	// Best effort: without it orphans go to init, which reaps them; they
	// are still found and killed by their mark.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	return &reaper{self: os.Getpid(), cgroups: detectCgroups(), leaders: map[int]bool{}}
}

// mark returns a fresh TreeEnv value for a new instance.
func (r *reaper) mark() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return fmt.Sprintf("%d-%d", r.self, r.seq)
}

// start runs cmd.Start and records the process as a leader, under the lock
// so that a concurrent reap never mistakes the new child for an orphan.
func (r *reaper) start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.leaders[cmd.Process.Pid] = true
	return nil
}

// waited forgets a leader once os/exec has reaped it.
func (r *reaper) waited(pid int) {
	r.mu.Lock()
	delete(r.leaders, pid)
	r.mu.Unlock()
}

// killTree SIGKILLs every process that carries mark until none is left or
// the bound runs out, and reaps those that were reparented to the agent.
// It returns how many processes it killed, and an error naming survivors.
func (r *reaper) killTree(mark string, bound time.Duration) (int, error) {
	entry := TreeEnv + "=" + mark
	deadline := time.Now().Add(bound)
	killed := map[int]bool{}
	for {
		live := 0
		for _, pid := range procPIDs() {
			if pid == r.self || !carries(pid, entry) {
				continue
			}
			live++
			_ = unix.Kill(pid, unix.SIGKILL)
			killed[pid] = true
		}
		r.reapZombies()
		if live == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%d processes of plugin tree %s still alive after %v", live, mark, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reapZombies collects every exited child of the agent that is not a
// plugin os/exec waits for: orphans handed to the agent as subreaper.
func (r *reaper) reapZombies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, pid := range procPIDs() {
		if r.leaders[pid] {
			continue
		}
		ppid, st, ok := procStat(pid)
		if !ok || ppid != r.self || st != 'Z' {
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			n++
		}
	}
	return n
}

// carries reports whether process pid's environment holds entry
// ("NAME=value"), whole.
func carries(pid int, entry string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+entry+"\x00"))
}

// procPIDs lists the processes in /proc.
func procPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat reads a process's parent and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may hold anything: parse
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}
