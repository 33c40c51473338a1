package sdk

import (
	"context"
	"sync"
)

// Configured is Base for a plugin with a config { } block decoded into T, a
// struct of tagged fields (see SchemaOf). Embed it in place of Base: it
// implements ConfigSchema (T's schema, with Defaults as the defaults),
// ValidateConfig and Configure, and keeps the block in force for Config.
//
// ValidateConfig and Configure decode the same way (Parse), so a block the
// agent's dry run accepts is one Configure accepts, as Validator asks. A
// plugin that acts on a new block (a tuner applies it) overrides Configure
// and calls Configured.Configure first:
//
//	func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
//		if err := p.Configured.Configure(ctx, req); err != nil {
//			return err
//		}
//		return p.apply(ctx, p.Config())
//	}
//
// Set Defaults and Check in the plugin's constructor, and build the plugin
// only through it: the zero Configured has T's zero values as defaults and
// no Check, so a bare literal of the plugin type accepts what its Check
// would refuse. They must not change afterwards.
type Configured[T any] struct {
	Base
	// Defaults are the values of the attributes a block does not set, and
	// what Config returns until the first Configure. Decode replaces a set
	// attribute's value whole (a list is not appended to), so a default
	// list or map is never shared with a decoded block.
	Defaults T
	// Check, when set, refuses a block that decodes but is wrong in a way
	// no tag says; report the value with raw.AttrError (or raw.EntryError)
	// so that the operator gets its file:line:column. It may also fill in
	// what derives from the values. It must have no side effects: the dry
	// run calls it too.
	Check func(raw RawConfig, cfg *T) error

	mu         sync.RWMutex
	cfg        T
	configured bool
}

// Parse decodes raw over Defaults and runs Check: what ValidateConfig and
// Configure both do with a block.
func (c *Configured[T]) Parse(raw RawConfig) (T, error) {
	cfg := c.Defaults
	if err := raw.Decode(&cfg); err != nil {
		var zero T
		return zero, err
	}
	if c.Check != nil {
		if err := c.Check(raw, &cfg); err != nil {
			var zero T
			return zero, err
		}
	}
	return cfg, nil
}

// ConfigSchema implements Plugin: T's attributes, with Defaults' values.
func (c *Configured[T]) ConfigSchema() Schema {
	d := c.Defaults
	return MustSchemaOf(&d)
}

// ValidateConfig implements Validator: the block parsed, nothing kept.
func (c *Configured[T]) ValidateConfig(_ context.Context, req ConfigureRequest) error {
	_, err := c.Parse(req.Config)
	return err
}

// Configure implements Plugin: the block parsed and kept for Config. A
// block that fails leaves the one in force.
func (c *Configured[T]) Configure(_ context.Context, req ConfigureRequest) error {
	cfg, err := c.Parse(req.Config)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cfg, c.configured = cfg, true
	c.mu.Unlock()
	return nil
}

// Config is the block in force: the last one Configure accepted, or
// Defaults before any.
func (c *Configured[T]) Config() T {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.configured {
		return c.Defaults
	}
	return c.cfg
}
