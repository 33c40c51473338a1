package sdk

import (
	"context"
)

// Plugin is what every plugin implements. Embed Base for the optional parts,
// or Configured for those and a config block.
type Plugin interface {
	// Info names the plugin. It must not depend on configuration.
	Info() Info
	// ConfigSchema describes the config { } block; see SchemaOf.
	ConfigSchema() Schema
	// Configure applies a config block. It must be idempotent: a reload calls
	// it again with the new block, on the same process. Return the error of
	// RawConfig.Decode unchanged so that positions reach the operator.
	Configure(ctx context.Context, req ConfigureRequest) error
	// Health reports the plugin's own state.
	Health(ctx context.Context) Health
	// Metrics returns the plugin's samples; see Sample.
	Metrics(ctx context.Context) []Sample
	// Shutdown releases resources before ctx's deadline. The process exits
	// after it returns.
	Shutdown(ctx context.Context) error
}

// Validator is a plugin that can check a config block without applying it
// (Caddy's Provision/Validate split). The agent calls ValidateConfig on
// every plugin before a reload changes any of them, and for `config
// validate`: a block it accepts, Configure must accept too. Report a value
// that parses but is wrong with RawConfig.AttrError so that the operator
// gets file:line:column. Configured implements it, with Configure, over one
// function that decodes and checks.
//
// A plugin that is not a Validator gets its block checked against its
// schema only; whatever else its Configure refuses is found at apply time,
// when the reload can no longer be refused as a whole.
type Validator interface {
	ValidateConfig(ctx context.Context, req ConfigureRequest) error
}

// Detector is a plugin that answers checks about an address.
type Detector interface {
	Plugin
	// Check answers one request. It must return by ctx's deadline: the
	// agent stops waiting then, and a call that goes on leaks a goroutine
	// in the plugin (sdktest fails a Check that overruns). It runs in the
	// agent's network namespace; when req.Netns is set, do the work in
	// that namespace with sdk/netns. A returned error becomes a
	// VerdictError whose reason is the error's text: the address is not
	// given out, whatever the plugin's failure_policy.
	Check(ctx context.Context, req CheckRequest) (CheckResult, error)
}

// Tuner is a plugin that keeps node settings in a desired state: it applies
// them in Configure and keeps them there (a reconcile loop of its own).
type Tuner interface {
	Plugin
	// Status reports every setting the tuner manages; the agent asks with
	// every health poll and shows the keys in `status`.
	Status(ctx context.Context) TunerStatus
}

// Base gives a plugin the optional methods: no config, always ready, no
// metrics, nothing to release. Embed it and override what you need.
type Base struct{}

// ConfigSchema implements Plugin: no attributes.
func (Base) ConfigSchema() Schema { return Schema{} }

// Health implements Plugin: always ready.
func (Base) Health(context.Context) Health { return Health{State: HealthReady} }

// Metrics implements Plugin: none.
func (Base) Metrics(context.Context) []Sample { return nil }

// Shutdown implements Plugin: nothing to release.
func (Base) Shutdown(context.Context) error { return nil }
