package supervisor

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// ValidateConfigs starts each enabled plugin just long enough to read the
// schema of its config block, checks the block against it and stops the
// plugin. Nothing is configured, so nothing on the node changes. The result
// maps each plugin that failed to its error.
func ValidateConfigs(ctx context.Context, specs []Spec, opts Options) map[string]error {
	opts.setDefaults()
	rp := newReaper()
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, sp := range specs {
		if !sp.Enabled {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := opts.Logger.Named(sp.Name)
			err := validateOne(ctx, sp, &opts, log, rp)
			if err != nil {
				mu.Lock()
				errs[sp.Name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

func validateOne(ctx context.Context, sp Spec, opts *Options, log hclog.Logger, rp *reaper) error {
	startCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout+sp.Timeout)
	defer cancel()
	inst, err := launch(startCtx, sp, opts, log, newLogLimiter(opts.Limits, nil), rp)
	if err != nil {
		return err
	}
	defer inst.stop(startCtx, log, true)
	return sp.Config.Validate(inst.schema)
}
