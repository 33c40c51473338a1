package main

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// Faults that plugin cgroups answer: a fork
// bomb, a grandchild that escapes the plugin's environment mark, session
// and process group, and children that together take more memory than
// the plugin may.
func faultCgroups(s *scope, b *bins) []faultRow {
	return []faultRow{faultForkBomb(s, b), faultEscapedChild(s, b), faultChildHog(s, b)}
}

// withEntry lists the live processes whose environment holds entry, or,
// when inArgv, whose argv does.
func withEntry(entry string, inArgv bool) []int {
	file := "environ"
	if inArgv {
		file = "cmdline"
	}
	var out []int
	for _, pid := range agenttest.PIDs() {
		if agenttest.HasEntry(pid, file, entry) && agenttest.Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func faultForkBomb(s *scope, b *bins) faultRow {
	l := newLab(s, b)
	token := "FAULTY_TEST_TOKEN=" + runToken()
	a := startAgent(s, b, agentOpts{name: "forkbomb", nsPath: l.node, env: []string{token}, config: oneFaulty("plugin_pids_max = 64", "bomb", b.faulty["forkbomb"])})
	// Live first (the health server starts a moment after the agent).
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if code, _, err := a.healthGet("/v1/runtime/liveness"); err == nil && code == http.StatusOK {
			break
		}
	}
	most, probes, live := 0, 0, 0
	var failed []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		most = max(most, len(withEntry(token, false)))
		probes++
		code, body, err := a.healthGet("/v1/runtime/liveness")
		if err == nil && code == http.StatusOK {
			live++
		} else if len(failed) < 3 {
			failed = append(failed, fmt.Sprintf("%d %q %v", code, body, err))
		}
	}
	if len(failed) > 0 {
		s.Logf("fork bomb: liveness failures: %q", failed)
	}
	p, _ := a.plugin("bomb")
	a.stop()
	left := len(withEntry(token, false))
	return faultRow{
		fault:   "fork bomb",
		done:    "a plugin starts `sleep` children as fast as it can (2000 attempts at most) for 10 s; plugin_pids_max = 64",
		did:     fmt.Sprintf("plugin %s after %d restarts; limits %q", p.State, p.Restarts, p.Limits),
		numbers: fmt.Sprintf("most processes of the plugin's tree alive at once: %d; liveness 200 in %d of %d probes; left after the agent stopped: %d", most, live, probes, left),
		held:    most <= 64 && most > 8 && live == probes && left == 0,
	}
}

func faultEscapedChild(s *scope, b *bins) faultRow {
	l := newLab(s, b)
	v := runToken()
	a := startAgent(s, b, agentOpts{name: "escape", nsPath: l.node, env: []string{"FAULTY_TEST_TOKEN=" + v}, config: oneFaulty("", "escape", b.faulty["escape"])})
	escaped := func() []int { return withEntry("escaped\x00"+v, true) }
	wait := func(what string, cond func() bool) bool {
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if cond() {
				return true
			}
		}
		s.Logf("escaped child: gave up waiting for %s", what)
		return false
	}
	var first int
	wait("the escaped grandchild", func() bool {
		if e := escaped(); len(e) == 1 {
			first = e[0]
		}
		return first != 0
	})
	p, _ := a.plugin("escape")
	if p.PID > 0 {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	firstGone := wait("the first grandchild to go", func() bool { return first != 0 && !agenttest.Alive(first) })
	var second int
	wait("the restarted plugin's grandchild", func() bool {
		for _, pid := range escaped() {
			if pid != first {
				second = pid
			}
		}
		return second != 0
	})
	p, _ = a.plugin("escape")
	a.stop()
	left := len(escaped())
	return faultRow{
		fault:   "escaped child",
		done:    "a plugin double-forks a grandchild with an empty environment in a new session, then the plugin is SIGKILLed; the agent stops",
		did:     fmt.Sprintf("plugin %s after %d restarts; limits %q", p.State, p.Restarts, p.Limits),
		numbers: fmt.Sprintf("first grandchild ended with its plugin: %v; second one started: %v; grandchildren left after the agent stopped: %d", firstGone, second != 0, left),
		held:    first != 0 && firstGone && second != 0 && left == 0,
	}
}

func faultChildHog(s *scope, b *bins) faultRow {
	l := newLab(s, b)
	token := "FAULTY_TEST_TOKEN=" + runToken()
	a := startAgent(s, b, agentOpts{name: "childhog", nsPath: l.node, env: []string{token}, config: oneFaulty("plugin_memory_max_mb = 256", "hog", b.faulty["childhog"])})
	peak := 0
	var p struct {
		state, lastError string
		restarts         int
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		sum := 0
		for _, pid := range withEntry(token, false) {
			sum += anonKiB(pid)
		}
		peak = max(peak, sum)
		if st, ok := a.plugin("hog"); ok {
			p.state, p.lastError, p.restarts = string(st.State), st.LastError, st.Restarts
			if strings.Contains(st.LastError, "memory limit") {
				break
			}
		}
	}
	a.stop()
	return faultRow{
		fault:   "children's memory",
		done:    "a plugin starts 4 children that each take 120 MiB (under RLIMIT_DATA); plugin_memory_max_mb = 256",
		did:     fmt.Sprintf("plugin %s after %d restarts, last error %q", p.state, p.restarts, p.lastError),
		numbers: fmt.Sprintf("peak anonymous memory of the plugin's tree %d MiB", peak>>10),
		held:    strings.Contains(p.lastError, "memory limit") && peak <= 272<<10,
	}
}
