package sdk

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/reclaim"
)

// LifelineEnv names the environment variable through which the agent tells a
// plugin which inherited file descriptor is its lifeline: the read end of a
// pipe whose write end only the agent holds. When the agent dies, even by
// SIGKILL, the kernel closes the write end, the read returns EOF and the
// plugin exits. go-plugin itself does nothing of the kind, and Pdeathsig is
// tied to the thread that forked, which Go may retire at any time.
const LifelineEnv = "SPIDERPOOL_PLUGIN_LIFELINE_FD"

// LogLevelEnv carries the agent's log level to a plugin at start; later
// changes arrive with Configure.
const LogLevelEnv = "SPIDERPOOL_PLUGIN_LOG_LEVEL"

// Logger is the logger a plugin receives from Serve: hashicorp/go-hclog's,
// named here so that a plugin's own module needs no require line for it.
type Logger = hclog.Logger

// Serve runs a plugin process. It never returns while the plugin serves:
// call it from main. newPlugin receives the logger to use; the logger writes
// JSON to stderr, which the agent shows under the plugin's name.
func Serve(newPlugin func(log hclog.Logger) Plugin) {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	p := newPlugin(logger)
	watchLifeline(logger)
	// A burst of checks leaves garbage and free heap that an idle process
	// would keep for minutes; return it once the burst is over. The start
	// counts as a burst too: it leaves the init garbage of every package
	// the executable links (as shipped, the agent's too).
	work := reclaim.New(reclaim.DefaultQuiet)
	work.Begin()()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(&GRPCPlugin{Impl: p, Logger: logger, work: work}),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           logger,
	})
}

// watchLifeline exits the process when the agent's end of the lifeline
// closes. Without the variable (a plugin run by hand) it does nothing.
func watchLifeline(logger hclog.Logger) {
	v := os.Getenv(LifelineEnv)
	if v == "" {
		return
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		logger.Warn("ignoring bad lifeline descriptor", "env", LifelineEnv, "value", v)
		return
	}
	f := os.NewFile(uintptr(fd), "lifeline")
	go func() {
		_, _ = io.Copy(io.Discard, f)
		logger.Error("the agent went away; exiting")
		fmt.Fprintln(os.Stderr)
		os.Exit(3)
	}()
}
