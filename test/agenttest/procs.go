package agenttest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PIDs lists the processes /proc shows now (zombies included).
func PIDs() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Stat is /proc/PID/stat split into fields after the command name, which
// may hold spaces and parentheses: Stat(pid)[0] is the state, [1] the
// parent's pid, [11] utime. Nil when the process is gone.
func Stat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil
	}
	return strings.Fields(string(b[i+2:]))
}

// Exe is the executable of pid ("" when it is gone), without the
// " (deleted)" the kernel adds once the file was removed.
func Exe(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

// HasEntry reports whether the NUL-separated list /proc/PID/file (environ
// or cmdline) holds entry whole, as one of its members or a run of them.
func HasEntry(pid int, file, entry string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	return err == nil && bytes.Contains(append([]byte{0}, b...), []byte("\x00"+entry+"\x00"))
}

// Children returns the pids of processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	for _, child := range PIDs() {
		if f := Stat(child); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Marked returns the live processes of the binary exe whose environment
// holds entry (one whole NAME=value): a test puts a token in its agent's
// environment, which every plugin and its children inherit, and finds them
// again by it, orphans included.
func Marked(exe, entry string) []int {
	var out []int
	for _, pid := range PIDs() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.HasPrefix(cmdline, []byte(exe+"\x00")) && HasEntry(pid, "environ", entry) && Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	f := Stat(pid)
	return len(f) > 0 && f[0] != "Z"
}

// PluginSocketDirs returns the socket directory go-plugin gave each live
// plugin of the agent with pid agent (PLUGIN_UNIX_SOCKET_DIR in its
// environment), and those plugins' pids.
func PluginSocketDirs(agent int) (pids []int, dirs []string) {
	for _, pid := range Children(agent) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if dir, ok := strings.CutPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR="); ok {
				pids, dirs = append(pids, pid), append(dirs, dir)
			}
		}
	}
	return pids, dirs
}
