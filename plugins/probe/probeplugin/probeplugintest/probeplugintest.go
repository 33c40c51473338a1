//go:build linux

// Package probeplugintest holds the assertions every detector built on
// probeplugin makes of itself in its tests: they share the Kit, so they share
// what it promises (the schema, the capabilities, how a Judge's verdict
// becomes a block kind), and a second detector tests it by calling these
// rather than by copying the first one's tests.
package probeplugintest

import (
	"context"
	"slices"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe/probeplugin"
	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// InfoAndSchema checks that p calls itself name, is a detector of this API
// version asking for raw sockets and entry into workload namespaces, and
// offers the Kit's shared attributes with their documented defaults.
func InfoAndSchema(t *testing.T, p sdk.Plugin, name string) {
	t.Helper()
	i := p.Info()
	if i.Name != name || i.Kind != sdk.KindDetector || i.APIVersion != sdk.APIVersion ||
		!slices.Equal(i.Capabilities, []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"}) {
		t.Errorf("info %+v", i)
	}
	var names []string
	for _, a := range p.ConfigSchema().Attributes {
		names = append(names, a.Name+"="+a.Default)
	}
	if want := []string{`window="100ms"`, "retries=3", "probes=3", `idle_timeout="30s"`, "probe_rate=4000"}; !slices.Equal(names, want) {
		t.Errorf("schema %v, want %v", names, want)
	}
}

// JudgeCase is one probe result and the verdict and reason a detector's
// Judge must make of it under DefaultOptions changed by Opts (nil: none).
type JudgeCase struct {
	Res     probe.Result
	Opts    func(*probeplugin.Options)
	Verdict sdk.Verdict
	Reason  string
}

// Judge runs judge on every case and checks its verdict and reason, and that
// a block carries blockKind (what IPAM does with it) and nothing else any
// kind.
func Judge(t *testing.T, judge func(probe.Result, probeplugin.Options) sdk.CheckResult, blockKind sdk.BlockKind, cases []JudgeCase) {
	t.Helper()
	for _, tt := range cases {
		o := probeplugin.DefaultOptions()
		if tt.Opts != nil {
			tt.Opts(&o)
		}
		got := judge(tt.Res, o)
		if got.Verdict != tt.Verdict || got.Reason != tt.Reason {
			t.Errorf("Judge(%+v) = %s %q, want %s %q", tt.Res, got.Verdict, got.Reason, tt.Verdict, tt.Reason)
		}
		wantKind := sdk.BlockUnspecified
		if got.Verdict == sdk.VerdictBlock {
			wantKind = blockKind
		}
		if got.BlockKind != wantKind {
			t.Errorf("Judge(%+v) kind = %q, want %q", tt.Res, got.BlockKind, wantKind)
		}
	}
}

// Configured configures p for a node with agent's settings and no config
// block, and shuts it down when the test ends.
func Configured(t *testing.T, p sdk.Plugin, agent sdk.AgentSettings) {
	t.Helper()
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{Agent: agent}); err != nil {
		t.Fatal(err)
	}
}
