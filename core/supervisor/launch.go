package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

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
	rpc      *sdk.Client
	info     sdk.Info
	schema   sdk.Schema
	pid      int
	lifeline *os.File // the agent's end; closing it tells the plugin to exit
	started  time.Time
	timeout  time.Duration // bounds the Shutdown call even when ctx does not
}

// checkBinary verifies that path is an executable regular file and, when
// want is set ("sha256:<hex>"), that its content has that digest.
func checkBinary(path, want string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return permanent("plugin binary %s does not exist", path)
	}
	if err != nil {
		return permanent("plugin binary %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return permanent("plugin binary %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return permanent("plugin binary %s is not executable (mode %v)", path, st.Mode().Perm())
	}
	if want == "" {
		return nil
	}
	got, err := fileSHA256(path)
	if err != nil {
		return permanent("plugin binary %s: %w", path, err)
	}
	if !strings.EqualFold(want, got) {
		return permanent("checksum mismatch for %s: expected %s, actual %s", path, want, got)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
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

// fixedName keeps go-plugin from renaming the logger after the binary, so
// that a plugin's lines appear under the plugin's configured name.
type fixedName struct{ hclog.Logger }

func (f fixedName) Named(string) hclog.Logger { return f }

// launch starts the plugin process once and asks it who it is. It does not
// configure it. The process is started in its own process group, with the
// read end of a lifeline pipe as fd 3.
func launch(ctx context.Context, spec Spec, opts *Options, log hclog.Logger) (*instance, error) {
	if err := checkBinary(spec.Path, spec.Checksum); err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	defer lifeR.Close() // the child has its own copy once started

	cmd := exec.Command(spec.Path)
	cmd.Env = append(cmd.Environ(),
		fmt.Sprintf("%s=3", sdk.LifelineEnv),
		fmt.Sprintf("%s=%s", sdk.LogLevelEnv, opts.Agent.LogLevel),
	)
	cmd.ExtraFiles = []*os.File{lifeR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(nil, nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     opts.StartTimeout,
		Logger:           fixedName{log},
		SyncStdout:       stdoutWarner{log},
		SyncStderr:       io.Discard,
	})
	fail := func(err error) (*instance, error) {
		client.Kill()
		lifeW.Close()
		return nil, err
	}
	rpcClient, err := client.Client()
	if err != nil {
		if m := wireVersionRE.FindStringSubmatch(err.Error()); m != nil {
			return fail(permanent("%s", wireMismatch(spec.Path, m[1])))
		}
		return fail(fmt.Errorf("start %s: %w", spec.Path, err))
	}
	raw, err := rpcClient.Dispense(sdk.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense %s: %w", spec.Path, err))
	}
	rpc, ok := raw.(*sdk.Client)
	if !ok {
		return fail(fmt.Errorf("dispense %s: unexpected client type %T", spec.Path, raw))
	}
	inst := &instance{client: client, rpc: rpc, lifeline: lifeW, started: time.Now(), timeout: spec.Timeout}
	if rc := client.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}

	callCtx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	inst.info, err = rpc.Info(callCtx)
	if err != nil {
		return fail(fmt.Errorf("GetInfo: %w", err))
	}
	if err := sdk.CheckAPIVersion(sdk.APIVersion, inst.info.APIVersion); err != nil {
		return fail(permanent("plugin %s: %w", spec.Path, err))
	}
	if inst.info.Name != spec.Name {
		// Not fatal: a renamed copy of a plugin is a legitimate setup.
		log.Debug("plugin reports another name than its block", "reported", inst.info.Name)
	}
	inst.schema, err = rpc.ConfigSchema(callCtx)
	if err != nil {
		return fail(fmt.Errorf("GetConfigSchema: %w", err))
	}
	return inst, nil
}

// stop asks the plugin to shut down before the deadline, then lets go-plugin
// end the process, and kills its process group in case it left children.
func (inst *instance) stop(ctx context.Context, log hclog.Logger) {
	if inst.timeout > 0 {
		// A wedged plugin must not hold a reload or a stop forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, inst.timeout)
		defer cancel()
	}
	if err := inst.rpc.Shutdown(ctx); err != nil {
		log.Debug("shutdown call failed; killing", "error", err)
	}
	inst.client.Kill()
	if inst.pid > 0 {
		_ = syscall.Kill(-inst.pid, syscall.SIGKILL)
	}
	inst.lifeline.Close()
}

// stdoutWarner reports writes to stdout, which plugins must not make:
// go-plugin owns stdout for its handshake.
type stdoutWarner struct{ log hclog.Logger }

func (w stdoutWarner) Write(p []byte) (int, error) {
	w.log.Warn("plugin wrote to stdout, which is reserved; use the logger", "output", strings.TrimSpace(string(p)))
	return len(p), nil
}
