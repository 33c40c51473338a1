package supervisor

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Limits bound what one plugin process may take from the node.
type Limits struct {
	// MemoryMax caps the plugin's data segment (RLIMIT_DATA: its heap and
	// other private writable memory, not the address space it merely
	// reserves), in bytes; 0 leaves it unlimited. A Go plugin that reaches
	// it dies with "out of memory" and is restarted like any crash. The
	// plugin also gets GOMEMLIMIT at 90% of it, so that its garbage
	// collector works harder before the hard limit is hit.
	//
	// Where the agent may make cgroups (see cgroup.go), MemoryMax is also
	// the hard limit of the plugin's cgroup: the memory of all its
	// processes together, children included, without swap.
	MemoryMax uint64
	// PidsMax bounds the processes (and threads) of one plugin instance,
	// children included, through its cgroup's pids.max; 0 is no limit.
	// Without cgroups there is no such bound (RLIMIT_NPROC counts every
	// process of the user, root's included, and does not bind root).
	PidsMax int64
	// LogLinesPerSecond and LogBurst bound the log lines a plugin may write
	// (stderr through hclog, and stdout): a token bucket per plugin. Lines
	// past it are dropped and counted; a "suppressed N lines" warning says
	// so once lines flow again. 0 means the defaults (100 and 500).
	LogLinesPerSecond float64
	LogBurst          int

	// cgroup says which cgroup mechanism is in force, for String; set by
	// the supervisor once it has looked.
	cgroup *cgroupSetup
}

// Default log bounds.
const (
	DefaultLogLinesPerSecond = 100
	DefaultLogBurst          = 500
	// maxLogLine bounds one line the agent reads from a plugin's stderr;
	// go-plugin splits longer ones.
	maxLogLine = 8 << 10
	// maxStdoutLogged bounds what is quoted of one write to stdout.
	maxStdoutLogged = 256
)

func (l *Limits) setDefaults() {
	if l.LogLinesPerSecond <= 0 {
		l.LogLinesPerSecond = DefaultLogLinesPerSecond
	}
	if l.LogBurst <= 0 {
		l.LogBurst = DefaultLogBurst
	}
}

// env is what the plugin's environment gets for these limits.
func (l Limits) env() []string {
	if l.MemoryMax == 0 {
		return nil
	}
	return []string{fmt.Sprintf("GOMEMLIMIT=%d", l.goMemLimit())}
}

// goMemLimitShare is the part of MemoryMax a Go plugin's runtime is told
// it may use (GOMEMLIMIT), in tenths: at 90% its garbage collector works
// harder while the hard limit still leaves a tenth for what the collector
// cannot free at once (stacks, the runtime's own memory, a child process),
// so a plugin that merely runs warm is not killed.
const goMemLimitShare = 9

// goMemLimit is the GOMEMLIMIT for MemoryMax.
func (l Limits) goMemLimit() uint64 { return l.MemoryMax / 10 * goMemLimitShare }

// apply sets the hard limits on a process that has just been started. The
// plugin's runtime has done nothing yet of note: it runs from the moment
// execve returns, and this follows the fork within microseconds.
func (l Limits) apply(pid int) error {
	if l.MemoryMax == 0 {
		return nil
	}
	lim := unix.Rlimit{Cur: l.MemoryMax, Max: l.MemoryMax}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return fmt.Errorf("set RLIMIT_DATA of plugin pid %d: %w", pid, err)
	}
	return nil
}

// String says which limits are in force, for status and the log.
func (l Limits) String() string {
	cg := l.cgroup
	memCg := cg != nil && (cg.v2Memory || cg.kind == cgroupV1 && cg.memory != "")
	pidsCg := cg != nil && (cg.v2Pids || cg.kind == cgroupV1 && cg.pids != "")
	mem := "unlimited"
	if l.MemoryMax > 0 {
		how := "RLIMIT_DATA per process"
		if memCg {
			how = "cgroup, whole tree; " + how
		}
		mem = fmt.Sprintf("%d MiB (%s; GOMEMLIMIT %d MiB)", l.MemoryMax>>20, how, l.goMemLimit()>>20)
	}
	procs := "unlimited"
	switch {
	case l.PidsMax > 0 && pidsCg:
		procs = fmt.Sprintf("%d (cgroup pids.max)", l.PidsMax)
	case l.PidsMax > 0:
		procs = fmt.Sprintf("unlimited (%d wanted, no pids cgroup)", l.PidsMax)
	}
	kill := "process group and environment mark"
	if cg != nil && cg.kind != cgroupNone {
		kill = "cgroup"
	}
	return fmt.Sprintf("memory %s; processes %s; tree kill by %s [%s]; log %g lines/s, burst %d",
		mem, procs, kill, cg.describe(), l.LogLinesPerSecond, l.LogBurst)
}

// logLimiter is a token bucket over one plugin's log lines.
type logLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu          sync.Mutex
	tokens      float64
	last        time.Time
	suppressed  int // since the last summary
	lastSummary time.Time
	onDrop      func(n int)
}

// summaryEvery spaces the "suppressed" summaries: under a steady flood
// every line that passes would otherwise bring one along.
const summaryEvery = 5 * time.Second

func newLogLimiter(l Limits, onDrop func(int)) *logLimiter {
	return &logLimiter{rate: l.LogLinesPerSecond, burst: float64(l.LogBurst), now: time.Now, tokens: float64(l.LogBurst), onDrop: onDrop}
}

// allow takes a token for one line. When it does, lines were dropped
// before and the last summary is summaryEvery old, it also returns how
// many, for the caller to say so first.
func (b *logLimiter) allow() (ok bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		if b.onDrop != nil {
			b.onDrop(1)
		}
		return false, 0
	}
	b.tokens--
	if b.suppressed > 0 && now.Sub(b.lastSummary) >= summaryEvery {
		dropped, b.suppressed = b.suppressed, 0
		b.lastSummary = now
	}
	return true, dropped
}

// limitedLogger is the logger go-plugin writes a plugin's stderr lines to:
// it keeps the plugin's configured name (go-plugin would rename it after
// the binary) and drops lines past the plugin's log rate.
type limitedLogger struct {
	hclog.Logger
	lim *logLimiter
}

func (l limitedLogger) Named(string) hclog.Logger { return l }

func (l limitedLogger) admit(level hclog.Level) bool {
	if level < l.Logger.GetLevel() {
		return false // filtered anyway: costs no token
	}
	ok, dropped := l.lim.allow()
	if ok && dropped > 0 {
		l.Logger.Warn("plugin log lines suppressed: the plugin logs faster than its limit", "suppressed", dropped)
	}
	return ok
}

func (l limitedLogger) Log(level hclog.Level, msg string, args ...any) {
	if l.admit(level) {
		l.Logger.Log(level, msg, args...)
	}
}
func (l limitedLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l limitedLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l limitedLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l limitedLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l limitedLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// stdoutWarner reports writes to stdout, which plugins must not make:
// go-plugin owns stdout for its handshake. Each write is one log line
// against the plugin's log rate, up to maxStdoutLogged bytes, its newlines
// written as \n so that it stays one line.
type stdoutWarner struct{ log limitedLogger }

func (w stdoutWarner) Write(p []byte) (int, error) {
	out := strings.TrimSpace(string(p))
	more := ""
	if len(out) > maxStdoutLogged {
		out = out[:maxStdoutLogged]
		more = fmt.Sprintf("... (%d bytes)", len(p))
	}
	w.log.Warn("plugin wrote to stdout, which is reserved; use the logger", "output", strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(out)+more)
	return len(p), nil
}
