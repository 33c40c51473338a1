package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	goplugrunner "github.com/hashicorp/go-plugin/runner"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// errPermanent marks a launch failure that a restart cannot cure: the
// binary is missing, not executable, fails its checksum or speaks another
// API version. The plugin is disabled until a reload changes something.
var errPermanent = errors.New("permanent")

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() []error      { return []error{e.err, errPermanent} }
func permanent(format string, a ...any) error { return permanentError{fmt.Errorf(format, a...)} }

// instance is one running plugin process.
type instance struct {
	client   *plugin.Client
	runner   *procRunner
	rpc      *sdk.Client
	info     sdk.Info
	schema   sdk.Schema
	pid      int
	lifeline *os.File // the agent's end; closing it tells the plugin to exit
	// socketDir is the directory go-plugin made for the plugin's socket;
	// kill removes it even when go-plugin's Kill does not get to.
	socketDir string
	started   time.Time
	timeout   time.Duration // bounds the Shutdown call even when ctx does not
}

// wireVersionRE finds the plugin's protocol version in go-plugin's
// negotiation error.
var wireVersionRE = regexp.MustCompile(`(?i)incompatible API version with plugin\. Plugin version: (\d+)`)

// wireMismatch says which side to upgrade when the go-plugin protocol
// versions differ.
func wireMismatch(path, pluginVersion string) string {
	v, _ := strconv.Atoi(pluginVersion)
	side := "upgrade the plugin (rebuild it against a current sdk)"
	if v > sdk.ProtocolVersion {
		side = "upgrade the agent"
	}
	return fmt.Sprintf("plugin %s speaks another wire protocol (version %d) than this agent (version %d): %s", path, v, sdk.ProtocolVersion, side)
}

// killWait bounds how long go-plugin's own Kill (which makes a Shutdown
// call of its own, without a deadline) may take before the agent kills the
// process tree itself; it is also what a stop waits for the tree to go.
const killWait = 2 * time.Second

// launch starts the plugin process once and asks it who it is. It does not
// configure it. The binary is opened and checked once (see openBinary) and
// that descriptor is executed; the process is started in its own process
// group, with the read end of a lifeline pipe as fd 3 and a TreeEnv mark
// that every descendant inherits. Every step is bounded by ctx: a plugin
// that does not finish its handshake in time is killed, tree and all.
func launch(ctx context.Context, spec Spec, opts *Options, log hclog.Logger, lim *logLimiter, rp *reaper) (*instance, error) {
	bin, err := openBinary(spec.Path, spec.Checksum, opts.testHookOpened)
	if err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		bin.Close()
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	defer lifeR.Close() // the child has its own copy once started
	defer bin.Close()   // likewise; os.File makes a second Close harmless

	// go-plugin calls RunnerFunc from Client(), which may still run when
	// the abort below needs the runner.
	var runnerMu sync.Mutex
	var runner *procRunner
	var socketDir string
	getRunner := func() *procRunner {
		runnerMu.Lock()
		defer runnerMu.Unlock()
		return runner
	}
	getSocketDir := func() string {
		runnerMu.Lock()
		defer runnerMu.Unlock()
		return socketDir
	}
	var sockets *plugin.UnixSocketConfig
	if opts.socketDir != "" {
		sockets = &plugin.UnixSocketConfig{TempDir: opts.socketDir}
	}
	mark := rp.mark()
	plog := limitedLogger{Logger: log, lim: lim}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(nil, nil),
		UnixSocketConfig: sockets,
		RunnerFunc: func(_ hclog.Logger, spec0 *exec.Cmd, dir string) (goplugrunner.Runner, error) {
			runnerMu.Lock()
			socketDir = dir
			runnerMu.Unlock()
			cmd := &exec.Cmd{
				// The checked descriptor, not the path: what runs is what
				// was checked, whatever happens to the path meanwhile.
				Path: bin.execPath(execChildFD),
				Args: spec.args(),
				Env: append(append(spec0.Env,
					fmt.Sprintf("%s=3", sdk.LifelineEnv),
					fmt.Sprintf("%s=%s", sdk.LogLevelEnv, opts.Agent.LogLevel),
					fmt.Sprintf("%s=%s", TreeEnv, mark),
				), opts.Limits.env()...),
				// fd 3: the lifeline; fd 4 (execChildFD): the binary.
				ExtraFiles:  []*os.File{lifeR, bin.file},
				SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
			}
			r, err := newProcRunner(cmd, spec.Path, spec.Name, bin, rp, mark, opts.Limits, log)
			if err != nil {
				return nil, err
			}
			runnerMu.Lock()
			runner = r
			runnerMu.Unlock()
			return r, nil
		},
		AllowedProtocols:    []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:            true,
		StartTimeout:        opts.StartTimeout,
		Logger:              plog,
		SyncStdout:          stdoutWarner{plog},
		SyncStderr:          io.Discard,
		PluginLogBufferSize: maxLogLine,
	})
	inst := &instance{client: client, lifeline: lifeW, started: time.Now(), timeout: spec.Timeout}
	fail := func(err error) (*instance, error) {
		inst.runner, inst.socketDir = getRunner(), getSocketDir()
		inst.kill(context.Background(), log)
		return nil, err
	}
	var rpcClient plugin.ClientProtocol
	err = bounded(ctx, func() error {
		var err error
		rpcClient, err = client.Client()
		return err
	}, func() {
		if r := getRunner(); r != nil {
			_ = r.Kill(context.Background())
		}
	})
	inst.runner, inst.socketDir = getRunner(), getSocketDir()
	if err != nil {
		if m := wireVersionRE.FindStringSubmatch(err.Error()); m != nil {
			return fail(permanent("%s", wireMismatch(spec.Path, m[1])))
		}
		return fail(fmt.Errorf("start %s: %w", spec.Path, err))
	}
	if inst.runner != nil {
		inst.pid = inst.runner.PID()
	}
	raw, err := rpcClient.Dispense(sdk.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense %s: %w", spec.Path, err))
	}
	rpc, ok := raw.(*sdk.Client)
	if !ok {
		return fail(fmt.Errorf("dispense %s: unexpected client type %T", spec.Path, raw))
	}
	inst.rpc = rpc

	callCtx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	inst.info, err = rpc.Info(callCtx)
	if err != nil {
		return fail(fmt.Errorf("GetInfo: %w", err))
	}
	if err := sdk.CheckAPIVersion(sdk.APIVersion, inst.info.APIVersion); err != nil {
		return fail(permanent("plugin %s: %w", spec.Path, err))
	}
	for _, w := range nameWarnings(spec, inst.info) {
		// Not fatal: a renamed copy of a plugin is a legitimate setup.
		log.Warn(w)
	}
	inst.schema, err = rpc.ConfigSchema(callCtx)
	if err != nil {
		return fail(fmt.Errorf("GetConfigSchema: %w", err))
	}
	return inst, nil
}

// args is the plugin's argv: its path, and for a component of a plugin set
// the set's command to serve that component.
func (s Spec) args() []string {
	if s.Component == "" {
		return []string{s.Path}
	}
	return []string{s.Path, sdk.SetServeCommand, s.Component}
}

// bounded runs fn until it returns or ctx ends. When ctx ends first it
// calls abort (which must make fn return, e.g. by killing the process fn
// talks to) and waits for fn a further killWait at most.
func bounded(ctx context.Context, fn func() error, abort func()) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	abort()
	select {
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	case <-time.After(killWait):
		return fmt.Errorf("%w; the call did not return %v after the plugin was killed", ctx.Err(), killWait)
	}
}

// stop ends the instance in bounded time. When graceful, the plugin first
// gets a Shutdown call bounded by ctx and the plugin's timeout; then
// go-plugin's Kill, bounded by killWait; and in every case the process
// group and every process of the tree are SIGKILLed. A plugin that stopped
// answering (SIGSTOPped, wedged) is not asked: graceful is false.
func (inst *instance) stop(ctx context.Context, log hclog.Logger, graceful bool) {
	if graceful && inst.rpc != nil {
		if inst.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, inst.timeout)
			defer cancel()
		}
		if err := inst.rpc.Shutdown(ctx); err != nil {
			log.Debug("shutdown call failed; killing", "error", err)
		}
	}
	inst.kill(ctx, log)
}

// kill lets go-plugin close its side (bounded by killWait and ctx: its Kill
// makes an unbounded call into the plugin), then kills the whole tree.
func (inst *instance) kill(ctx context.Context, log hclog.Logger) {
	done := make(chan struct{})
	go func() {
		inst.client.Kill()
		close(done)
	}()
	wait := time.NewTimer(killWait)
	defer wait.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("no time left to let the plugin exit; killing its process tree", "pid", inst.pid)
	case <-wait.C:
		log.Warn("plugin did not exit when asked; killing its process tree", "pid", inst.pid)
	}
	if inst.runner != nil {
		if err := inst.runner.Kill(context.Background()); err != nil {
			log.Error("could not end the plugin's process tree", "error", err)
		}
	}
	select {
	case <-done:
	case <-time.After(killWait):
		log.Error("go-plugin's Kill did not return after the plugin's tree was killed", "pid", inst.pid)
	}
	inst.lifeline.Close()
	if inst.socketDir != "" {
		_ = os.RemoveAll(inst.socketDir)
	}
}
