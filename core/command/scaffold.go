package command

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// SDKModule is the module path a plugin requires.
const SDKModule = "github.com/spiderpool-agent/spiderpool-agent/sdk"

// scaffold is what `plugin new` needs to write a plugin module.
type scaffold struct {
	Name    string // mtu-guard
	Package string // mtuguard
	Module  string // example.com/mtu-guard
	Kind    sdk.Kind
	SDK     string // the sdk version required
	SDKDir  string // when set, a replace directive to a local sdk checkout
}

var pluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// writeScaffold writes the module into dir, which must not exist or be
// empty. It writes nothing when any file cannot be rendered.
func writeScaffold(dir string, s scaffold) ([]string, error) {
	files := map[string]string{
		"go.mod":    tmplGoMod,
		"README.md": tmplReadme,
		"Makefile":  tmplMakefile,
		filepath.Join("cmd", "spiderpool-plugin-"+s.Name, "main.go"): tmplMain,
	}
	if s.Kind == sdk.KindTuner {
		files[s.Package+".go"] = tmplTuner
		files[s.Package+"_test.go"] = tmplTunerTest
	} else {
		files[s.Package+".go"] = tmplDetector
		files[s.Package+"_test.go"] = tmplDetectorTest
	}
	rendered := map[string][]byte{}
	for name, text := range files {
		var b bytes.Buffer
		if err := template.Must(template.New(name).Parse(text)).Execute(&b, s); err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		out := b.Bytes()
		if strings.HasSuffix(name, ".go") {
			var err error
			if out, err = format.Source(out); err != nil {
				return nil, fmt.Errorf("render %s: %w", name, err)
			}
		}
		rendered[name] = out
	}
	if s.SDKDir != "" {
		// The local sdk's go.sum covers its dependencies, so that the new
		// module builds without a download.
		sum, err := os.ReadFile(filepath.Join(s.SDKDir, "go.sum"))
		if err != nil {
			return nil, fmt.Errorf("--sdk-dir: %w", err)
		}
		rendered["go.sum"] = sum
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var written []string
	for _, name := range sortedNames(rendered) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(path, rendered[name], 0o644); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

const tmplGoMod = `module {{.Module}}

go 1.26.0

require {{"github.com/spiderpool-agent/spiderpool-agent/sdk"}} {{.SDK}}
{{- if .SDKDir}}

replace github.com/spiderpool-agent/spiderpool-agent/sdk => {{.SDKDir}}
{{- end}}
`

const tmplMain = `// Command spiderpool-plugin-{{.Name}} is the {{.Name}} plugin of
// spiderpool-agent. Install it as PLUGIN_DIR/spiderpool-plugin-{{.Name}} and
// enable it with plugin "{{.Name}}" { } in the agent's config.
package main

import (
	"github.com/spiderpool-agent/spiderpool-agent/sdk"

	{{.Package}} "{{.Module}}"
)

func main() {
	sdk.Serve(func(log sdk.Logger) sdk.Plugin { return {{.Package}}.New(log) })
}
`

const tmplDetector = `// Package {{.Package}} is the {{.Name}} detector plugin of spiderpool-agent.
package {{.Package}}

import (
	"context"
	"sync"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// Version is the plugin's own version.
const Version = "0.1.0"

// Config is the plugin's config { } block: one tagged field per attribute,
// e.g. Limit int ` + "`" + `hcl:"limit,optional" help:"what it means"` + "`" + `.
type Config struct{}

// defaults are the values of attributes the block does not set.
func defaults() Config { return Config{} }

// parse decodes a block and checks what the types cannot; ValidateConfig
// (the agent's dry run) and Configure share it.
func parse(raw sdk.RawConfig) (Config, error) {
	cfg := defaults()
	if err := raw.Decode(&cfg); err != nil {
		return Config{}, err
	}
	// A value that parses but is wrong is reported at its position:
	//	return Config{}, raw.AttrError("limit", "must be positive")
	return cfg, nil
}

// Plugin is the detector.
type Plugin struct {
	sdk.Base
	log sdk.Logger
	mu  sync.RWMutex
	cfg Config
}

var (
	_ sdk.Detector  = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns the plugin with the default config.
func New(log sdk.Logger) *Plugin { return &Plugin{log: log, cfg: defaults()} }

// Info implements sdk.Plugin. Name must be the block's name.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "{{.Name}}", Kind: sdk.KindDetector, Version: Version, APIVersion: sdk.APIVersion,
		Description: "{{.Name}} detector"}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema {
	d := defaults()
	return sdk.MustSchemaOf(&d)
}

// ValidateConfig implements sdk.Validator.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	_, err := parse(req.Config)
	return err
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parse(req.Config)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return nil
}

func (p *Plugin) config() Config {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// Check implements sdk.Detector. Look at req.Interface inside req.Netns
// (netns.Do) and return by ctx's deadline; an error is a VerdictError.
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	cfg := p.config()
	_ = cfg
	err := netns.Do(req.Netns, func() error {
		return ctx.Err()
	})
	if err != nil {
		return sdk.CheckResult{}, err
	}
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: req.Address.String() + " is fine"}, nil
}
`

const tmplDetectorTest = `package {{.Package}}

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(sdktest.Logger(t)), sdktest.Options{
		// GoodConfig: a block Configure must accept.
		// BadConfig: one it must refuse at its position (the default sets an unknown attribute).
	})
}
`

const tmplTuner = `// Package {{.Package}} is the {{.Name}} tuner plugin of spiderpool-agent.
package {{.Package}}

import (
	"context"
	"sync"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// Version is the plugin's own version.
const Version = "0.1.0"

// Config is the plugin's config { } block: one tagged field per attribute.
type Config struct{}

func defaults() Config { return Config{} }

// parse decodes a block and checks what the types cannot; ValidateConfig
// and Configure share it. Report wrong values with raw.AttrError.
func parse(raw sdk.RawConfig) (Config, error) {
	cfg := defaults()
	if err := raw.Decode(&cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Plugin is the tuner.
type Plugin struct {
	sdk.Base
	log    sdk.Logger
	mu     sync.Mutex
	cfg    Config
	status sdk.TunerStatus
}

var (
	_ sdk.Tuner     = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// New returns the plugin with the default config.
func New(log sdk.Logger) *Plugin { return &Plugin{log: log, cfg: defaults()} }

// Info implements sdk.Plugin. Name must be the block's name.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "{{.Name}}", Kind: sdk.KindTuner, Version: Version, APIVersion: sdk.APIVersion,
		Description: "{{.Name}} tuner"}
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema() sdk.Schema {
	d := defaults()
	return sdk.MustSchemaOf(&d)
}

// ValidateConfig implements sdk.Validator.
func (p *Plugin) ValidateConfig(_ context.Context, req sdk.ConfigureRequest) error {
	_, err := parse(req.Config)
	return err
}

// Configure implements sdk.Plugin: apply the settings now.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parse(req.Config)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	_, err = p.apply(ctx)
	return err
}

// apply brings the settings to the desired state; call it from Configure
// and from a reconcile loop of your own.
func (p *Plugin) apply(context.Context) (sdk.TunerStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.LastReconcile = time.Now()
	return p.status, nil
}

// Status implements sdk.Tuner.
func (p *Plugin) Status(context.Context) sdk.TunerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}
`

const tmplTunerTest = tmplDetectorTest

const tmplMakefile = `# {{.Name}}: a spiderpool-agent plugin.

BIN := bin/spiderpool-plugin-{{.Name}}

.PHONY: build test

## build: the plugin binary; install it into the agent's plugin_dir
build:
	CGO_ENABLED=0 go build -trimpath -o $(BIN) ./cmd/spiderpool-plugin-{{.Name}}

## test: the conformance kit and your own tests
test:
	go vet ./...
	go test -race -count=1 ./...
`

const tmplReadme = "# {{.Name}}\n\n" +
	"A {{.Kind}} plugin for spiderpool-agent, written against its SDK\n" +
	"(`" + SDKModule + "`).\n\n" +
	"## Develop\n\n" +
	"```sh\nmake test     # sdktest's conformance run and your tests\nmake build    # bin/spiderpool-plugin-{{.Name}}\n" +
	"spiderpool-agent plugin run bin/spiderpool-plugin-{{.Name}} check --interface eth0 --ip 10.0.0.7/24\n" +
	"spiderpool-agent plugin docs bin/spiderpool-plugin-{{.Name}}\n```\n\n" +
	"Fill in `Config` (one tagged field per attribute), `parse` (values that\n" +
	"parse but are wrong: `raw.AttrError`) and `Check`. Do the work in the\n" +
	"request's namespace with `netns.Do` and return by the context's deadline.\n\n" +
	"## Install\n\n" +
	"Copy the binary to the agent's `plugin_dir` as `spiderpool-plugin-{{.Name}}`\n" +
	"(owned by root, not writable by others) and enable it:\n\n" +
	"```hcl\nplugin \"{{.Name}}\" {\n  config {\n  }\n}\n```\n\n" +
	"Then `spiderpool-agent config validate` and `spiderpool-agent reload`.\n"
