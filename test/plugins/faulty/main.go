// Command faulty is a detector plugin that misbehaves on purpose, for the
// supervisor's and the agent's tests. Its behaviour is fixed at build time
// with -ldflags "-X main.mode=MODE":
//
//	ok        a well-behaved detector; Check passes after the configured delay
//	hang      Check never returns and ignores its context
//	crash     exits with status 1 before serving
//	apiv2     reports plugin API version 2.0
//	proto2    speaks go-plugin wire protocol version 2
//	stdout    writes to stdout, which plugins must not do
//	mute      stops answering Health after it is configured (a wedged plugin)
//	orphan    once configured, starts a setsid child that sleeps for ever
//	          (holding the plugin's stderr) and exits 300ms later
//	logflood  once configured, logs and writes to stdout without pause
//	memhog    from 500ms after Configure, allocates and touches 16 MiB every 10ms
//	          and never frees it, up to 768 MiB (a bound for the tests'
//	          sake, should no limit stop it)
//	metricflood  returns 1000 samples with new names from every
//	          CollectMetrics: 500 valid, 500 invalid
//	forkbomb  once configured, starts `sleep 600` children as fast as it
//	          can, 2000 attempts at most (a bound for the tests' sake,
//	          should no limit stop it), and logs how many were refused
//	escape    once configured, double-forks a grandchild that leaves the
//	          plugin's environment (an empty one), session and process
//	          group and sleeps for ever; it carries FAULTY_TEST_TOKEN's
//	          value in its argv for the tests to find it
//	childhog  once configured, starts 4 children that each allocate and
//	          touch 120 MiB (under any per-process limit of 128 MiB or
//	          more) in 8 MiB steps and hold it
//
// Its config block takes `delay` (a duration before Check answers),
// `verdict` ("pass", "block", "skip" or "error"; anything else is refused at
// its position by ValidateConfig and Configure) and `health` ("ready",
// "degraded", "failed").
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

var mode = "ok"

type config struct {
	Delay   time.Duration `hcl:"delay,optional"`
	Verdict string        `hcl:"verdict,optional"`
	Health  string        `hcl:"health,optional"`
}

type faulty struct {
	sdk.Configured[config]
	log      hclog.Logger
	stopOnce sync.Once
	stop     chan struct{} // closed by Shutdown, which aborts running checks as real plugins do
}

func newFaulty(log hclog.Logger) *faulty {
	return &faulty{
		Configured: sdk.Configured[config]{Defaults: config{Verdict: "pass", Health: "ready"}, Check: check},
		log:        log, stop: make(chan struct{}),
	}
}

func (f *faulty) Shutdown(context.Context) error {
	f.stopOnce.Do(func() { close(f.stop) })
	return nil
}

func (f *faulty) Info() sdk.Info {
	v := sdk.APIVersion
	if mode == "apiv2" {
		v = "2.0"
	}
	return sdk.Info{Name: "faulty", Kind: sdk.KindDetector, Version: "0.0.1-" + mode, APIVersion: v}
}

// check refuses a verdict the protocol does not have, at its position.
func check(raw sdk.RawConfig, cfg *config) error {
	switch sdk.Verdict(cfg.Verdict) {
	case sdk.VerdictPass, sdk.VerdictBlock, sdk.VerdictSkip, sdk.VerdictError:
		return nil
	}
	return raw.AttrError("verdict", fmt.Sprintf("%q is none of pass, block, skip, error", cfg.Verdict))
}

func (f *faulty) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	if err := f.Configured.Configure(ctx, req); err != nil {
		return err
	}
	f.log.Info("configured", "mode", mode, "delay", f.Config().Delay)
	if mode == "stdout" {
		fmt.Println("hello from a plugin that should not print")
	}
	f.misbehave()
	return nil
}

// orphanEnv makes the binary the orphan child of mode orphan.
const orphanEnv = "FAULTY_ORPHAN_CHILD"

// misbehave starts what the modes that misbehave after Configure do.
func (f *faulty) misbehave() {
	switch mode {
	case "orphan":
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), orphanEnv+"=1")
		child.Stderr = os.Stderr // holds the pipe to the agent open
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			f.log.Error("start orphan", "error", err)
		} else {
			f.log.Info("started an orphan", "pid", child.Process.Pid)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			os.Exit(1)
		}()
	case "logflood":
		go func() {
			for i := 0; ; i++ {
				f.log.Info("flooding the log", "line", i)
				fmt.Println("flooding stdout", i)
			}
		}()
	case "forkbomb":
		go forkbomb(f.log)
	case "escape":
		child := exec.Command(os.Args[0], "escape-a", os.Getenv("FAULTY_TEST_TOKEN"))
		child.Env = []string{}
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Run(); err != nil {
			f.log.Error("escape", "error", err)
		} else {
			f.log.Info("a grandchild escaped")
		}
	case "childhog":
		for range 4 {
			child := exec.Command(os.Args[0], "hog", os.Getenv("FAULTY_TEST_TOKEN"))
			if err := child.Start(); err != nil {
				f.log.Error("start hog", "error", err)
				continue
			}
			go func() { _ = child.Wait() }()
		}
	case "memhog":
		go func() {
			time.Sleep(500 * time.Millisecond)
			var hoard [][]byte
			for len(hoard) < 48 {
				b := make([]byte, 16<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				hoard = append(hoard, b)
				time.Sleep(10 * time.Millisecond)
			}
			f.log.Info("hoarded", "bytes", len(hoard)<<24)
			for {
				time.Sleep(time.Hour)
				hoard[0][0]++
			}
		}()
	}
}

func (f *faulty) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	f.log.Info("check started", "address", req.Address.String())
	if mode == "hang" {
		select {} // ignores ctx on purpose
	}
	select {
	case <-time.After(f.Config().Delay):
	case <-ctx.Done():
		return sdk.CheckResult{}, ctx.Err()
	case <-f.stop:
		return sdk.CheckResult{}, fmt.Errorf("faulty: shut down during the check")
	}
	verdict := f.Config().Verdict
	return sdk.CheckResult{Verdict: sdk.Verdict(verdict), Reason: "faulty says " + verdict}, nil
}

func (f *faulty) Health(context.Context) sdk.Health {
	if mode == "mute" {
		select {} // ignores its context on purpose
	}
	st := sdk.HealthState(f.Config().Health)
	if st == "" {
		st = sdk.HealthReady
	}
	msg := ""
	if st != sdk.HealthReady {
		msg = "configured to be " + string(st)
	}
	return sdk.Health{State: st, Message: msg, Detail: map[string]string{"mode": mode}}
}

// flooded numbers the names of metricflood's samples.
var flooded atomic.Int64

func (f *faulty) Metrics(context.Context) []sdk.Sample {
	if mode == "metricflood" {
		var out []sdk.Sample
		for range 500 {
			n := flooded.Add(1)
			out = append(out,
				sdk.Sample{Name: fmt.Sprintf("faulty_flood_%d", n), Type: sdk.Gauge, Value: 1},
				sdk.Sample{Name: fmt.Sprintf("Faulty-Bad-Name-%d", n), Type: sdk.Gauge, Value: 1})
		}
		return out
	}
	return []sdk.Sample{{Name: "faulty_up", Type: sdk.Gauge, Value: 1, Help: "Always 1."}}
}

// forkbomb starts children until 2000 attempts were made.
func forkbomb(log hclog.Logger) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		log.Error("forkbomb", "error", err)
		return
	}
	started, refused := 0, 0
	for range 2000 {
		c := exec.Command(sleep, "600")
		if err := c.Start(); err != nil {
			refused++
			continue
		}
		started++
		go func() { _ = c.Wait() }()
	}
	log.Info("forkbomb done", "started", started, "refused", refused)
}

// hoard allocates and touches n MiB in 8 MiB steps and holds it.
func hoard(n int) {
	var h [][]byte
	for len(h)*8 < n {
		b := make([]byte, 8<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		h = append(h, b)
		time.Sleep(10 * time.Millisecond)
	}
	for {
		time.Sleep(time.Hour)
		h[0][0]++
	}
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "escape-a": // the middle of escape's double fork
			gc := exec.Command(os.Args[0], append([]string{"escaped"}, os.Args[2:]...)...)
			gc.Env = []string{}
			if err := gc.Start(); err != nil {
				os.Exit(1)
			}
			os.Exit(0)
		case "escaped":
			for {
				time.Sleep(time.Hour)
			}
		case "hog":
			hoard(120)
		}
	}
	if os.Getenv(orphanEnv) != "" {
		for { // an orphan that would live for ever
			time.Sleep(time.Hour)
		}
	}
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "faulty: crashing at start on purpose")
		os.Exit(1)
	case "proto2":
		hs := sdk.Handshake
		hs.ProtocolVersion = 2
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{2: sdk.VersionedPlugins(newFaulty(hclog.NewNullLogger()), nil)[sdk.ProtocolVersion]},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return
	}
	sdk.Serve(func(log hclog.Logger) sdk.Plugin { return newFaulty(log) })
}
