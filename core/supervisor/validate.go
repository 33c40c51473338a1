package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Validation is what a dry run found: the plugins that refused their
// config block (or could not be asked), and warnings that do not stop the
// config from being used.
type Validation struct {
	Errors   map[string]error
	Warnings map[string][]string
}

// OK reports whether no plugin refused its block.
func (v Validation) OK() bool { return len(v.Errors) == 0 }

// Err joins the refusals, sorted by plugin, or is nil.
func (v Validation) Err() error {
	if v.OK() {
		return nil
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(v.Errors)) {
		errs = append(errs, fmt.Errorf("plugin %q: %w", name, v.Errors[name]))
	}
	return errors.Join(errs...)
}

func (v *Validation) add(name string, err error, warnings []string) {
	if err != nil {
		v.Errors[name] = err
	}
	if len(warnings) > 0 {
		v.Warnings[name] = warnings
	}
}

// ValidateConfigs starts each enabled plugin just long enough to ask it
// about its config block - checked against the schema it reports, then its
// own dry run (ValidateConfig) - and stops it. Nothing is configured, so
// nothing on the node changes. It is `config validate`.
func ValidateConfigs(ctx context.Context, specs []Spec, opts Options) Validation {
	opts.setDefaults()
	rp := newReaper()
	return askEach(specs, func(sp Spec) ([]string, error) {
		return validateLaunched(ctx, sp, &opts, opts.Logger.Named(sp.Name), rp)
	})
}

// askEach asks about every enabled spec at once and collects the answers.
func askEach(specs []Spec, ask func(Spec) (warnings []string, err error)) Validation {
	v := Validation{Errors: map[string]error{}, Warnings: map[string][]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sp := range specs {
		if !sp.Enabled {
			continue
		}
		wg.Go(func() {
			warn, err := ask(sp)
			mu.Lock()
			v.add(sp.Name, err, warn)
			mu.Unlock()
		})
	}
	wg.Wait()
	return v
}

// validateLaunched runs the dry run on a process of its own.
func validateLaunched(ctx context.Context, sp Spec, opts *Options, log hclog.Logger, rp *reaper) ([]string, error) {
	startCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout+sp.Timeout)
	defer cancel()
	inst, err := launch(startCtx, sp, opts, log, newLogLimiter(opts.Limits, nil), rp)
	if err != nil {
		return nil, err
	}
	defer inst.stop(startCtx, log, true)
	warnings := nameWarnings(sp, inst.info)
	if inst.wouldRefuse != "" {
		warnings = append(warnings, "the daemon would refuse to run it: "+inst.wouldRefuse)
	}
	return warnings, dryRun(startCtx, inst, sp, opts.Agent)
}

// dryRun checks sp's block against the instance's schema, then asks the
// plugin. A plugin built before ValidateConfig existed gets the schema
// check only.
func dryRun(ctx context.Context, inst *instance, sp Spec, agent sdk.AgentSettings) error {
	if err := sp.Config.Validate(inst.schema); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, sp.Timeout)
	defer cancel()
	err := inst.rpc.ValidateConfig(cctx, sdk.ConfigureRequest{Config: sp.Config, Agent: agent})
	if errors.Is(err, sdk.ErrUnimplemented) {
		return nil
	}
	return err
}

// nameWarnings says when a plugin calls itself something else than its
// block: legitimate for a renamed copy, a mistake otherwise.
func nameWarnings(sp Spec, info sdk.Info) []string {
	if sp.Name == "" || info.Name == sp.Name {
		return nil
	}
	return []string{fmt.Sprintf("the plugin at %s calls itself %q, but its block is plugin %q: fine for a renamed copy, otherwise a wrong path", sp.Path, info.Name, sp.Name)}
}

// Validate is a reload's first step: every enabled plugin of specs is asked
// whether it accepts its new block, before any plugin is changed. A running
// plugin with the same binary is asked in its own process; any other is
// started just for the question. agent is the new agent settings.
func (s *Supervisor) Validate(ctx context.Context, specs []Spec, agent sdk.AgentSettings) Validation {
	opts := s.opts
	opts.Agent = agent
	return askEach(specs, func(sp Spec) ([]string, error) {
		if inst := s.runningAs(sp); inst != nil {
			err := dryRun(ctx, inst, sp, agent)
			var ce *sdk.ConfigError
			if err == nil || errors.As(err, &ce) {
				return nil, err
			}
		}
		// Not running, or gone while asked: ask a process of its own.
		return validateLaunched(ctx, sp, &opts, s.opts.Logger.Named(sp.Name), s.reaper)
	})
}

// runningAs is the running instance of sp's plugin when it runs sp's
// binary, else nil.
func (s *Supervisor) runningAs(sp Spec) *instance {
	m, err := s.get(sp.Name)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inst != nil && m.spec.sameProcess(sp) {
		return m.inst
	}
	return nil
}
