// Package state holds the agent's view of itself and its plugins as plain
// values: what the health endpoints, the control API, `status` and metrics
// all render. It has no behaviour, so every surface can depend on it.
package state

import (
	"encoding/json"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// PluginState is where a plugin is in its life.
type PluginState string

const (
	Starting   PluginState = "starting"
	Ready      PluginState = "ready"
	Degraded   PluginState = "degraded"
	Failed     PluginState = "failed"
	Restarting PluginState = "restarting"
	Disabled   PluginState = "disabled"
)

// AllPluginStates lists every state, for metrics that emit one series each.
var AllPluginStates = []PluginState{Starting, Ready, Degraded, Failed, Restarting, Disabled}

// Plugin is one plugin as the supervisor sees it.
type Plugin struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Version   string          `json:"version,omitempty"`
	Path      string          `json:"path,omitempty"`
	State     PluginState     `json:"state"`
	PID       int             `json:"pid,omitempty"`
	Restarts  int             `json:"restarts"`
	LastError string          `json:"last_error,omitempty"`
	Since     time.Time       `json:"since"`
	Message   string          `json:"message,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	// Policy is the failure_policy of a detector plugin.
	Policy string `json:"failure_policy,omitempty"`
	// Limits says which resource and output limits the plugin runs under.
	Limits string `json:"limits,omitempty"`
}

// Agent is the whole agent at one moment.
type Agent struct {
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	// Started is true once initialisation has finished.
	Started bool     `json:"started"`
	Plugins []Plugin `json:"plugins"`
	// IPAM is the IPAM service's state; nil from a backend without one.
	IPAM *ipamapi.Status `json:"ipam,omitempty"`
}

// Ready reports whether the agent can serve, and the names of the plugins
// that hold readiness back. A degraded plugin answers calls and a disabled
// one was turned off on purpose (or by a failed checksum), so neither holds
// the node back: one plugin never bricks the node.
func (a Agent) Ready() (bool, []string) {
	var waiting []string
	for _, p := range a.Plugins {
		switch p.State {
		case Ready, Degraded, Disabled:
		default:
			waiting = append(waiting, p.Name)
		}
	}
	if a.IPAM != nil && a.IPAM.Store != nil && !a.IPAM.Store.Up {
		// A shared IPAM store that is down holds readiness back: a
		// scheduler should not place workloads whose addresses it cannot
		// allocate. The detectors and the tuner keep working.
		waiting = append(waiting, IPAMStoreComponent)
	}
	return a.Started && len(waiting) == 0, waiting
}

// IPAMStoreComponent names the shared IPAM store in readiness.
const IPAMStoreComponent = "ipam-store"
