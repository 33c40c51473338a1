//go:build linux

package probeplugin

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Info is the sdk.Info of a detector built on the Kit: a detector of this
// API version that needs what the probe engine needs, raw packet sockets and
// entry into workload network namespaces (setns).
func Info(name, version, description string) sdk.Info {
	return sdk.Info{
		Name: name, Kind: sdk.KindDetector, Version: version, APIVersion: sdk.APIVersion,
		Description:  description,
		Capabilities: []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"},
	}
}

// Detector is a Kit with the config methods of a detector that has no
// attributes of its own beside the shared ones: ConfigSchema, Configure and
// ValidateConfig. Embed *Detector and write Info and Check.
type Detector struct {
	*Kit
}

// Every detector built on Detector is a Validator: the agent's dry run
// checks its block before a reload applies it.
var _ sdk.Validator = (*Detector)(nil)

// NewDetector is a Detector on a new Kit (see NewKit).
func NewDetector(log hclog.Logger, names Names) *Detector {
	return &Detector{Kit: NewKit(log, names)}
}

// ConfigSchema implements sdk.Plugin: the shared attributes.
func (d *Detector) ConfigSchema() sdk.Schema { return Schema(nil) }

// Configure implements sdk.Plugin (see Kit.Configure).
func (d *Detector) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	return d.Kit.Configure(req, nil)
}

// ValidateConfig implements sdk.Validator: the block decoded and checked as
// Configure would, nothing applied.
func (d *Detector) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	return d.Kit.Validate(req, nil)
}
