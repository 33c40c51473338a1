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

	"golang.org/x/mod/module"

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
	// SDKDir, when set, is the sdk checkout the module binds to, relative
	// to the module's directory ("../spiderpool-agent/sdk"): a replace
	// directive that a vendor's CI reproduces by checking the agent's
	// repository out beside the plugin's.
	SDKDir string
	// sdkSum is the checkout's go.sum, so that the module builds offline.
	sdkSum []byte
}

// checkModulePath refuses a module path Go's own tools would choke on
// later with a less helpful message.
func checkModulePath(path string) error {
	if err := module.CheckPath(path); err != nil {
		return err
	}
	for _, elem := range strings.Split(path, "/") {
		if elem == "vendor" {
			return fmt.Errorf("module path %q has an element \"vendor\": go build and go vet treat a vendor/ directory as vendored copies of other modules and refuse the plugin's own packages there; choose a path without it", path)
		}
	}
	return nil
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
	if s.sdkSum != nil {
		// The checkout's go.sum covers the sdk's dependencies, so that the
		// new module builds without a download.
		rendered["go.sum"] = s.sdkSum
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
{{if .SDKDir}}
// The plugin SDK comes from the checkout at {{.SDKDir}} (a path relative
// to this directory: keep the agent's repository there, in CI too). To use
// a released SDK instead, delete the replace line and run
//   go get github.com/spiderpool-agent/spiderpool-agent/sdk@vX.Y.Z
// (releases are the tags sdk/vX.Y.Z; sdk/README.md lists which agents run them).
require github.com/spiderpool-agent/spiderpool-agent/sdk {{.SDK}}

replace github.com/spiderpool-agent/spiderpool-agent/sdk => {{.SDKDir}}
{{else}}
// The plugin SDK, release {{.SDK}} (the tag sdk/{{.SDK}} of the agent's
// repository; sdk/README.md lists which agents run it). To build against a
// checkout instead: go work init . ../spiderpool-agent/sdk
require github.com/spiderpool-agent/spiderpool-agent/sdk {{.SDK}}
{{end}}`

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

// Version is the plugin's own version, stamped at build: make build
// VERSION=1.2.0 (the Makefile passes -X; its default is git describe).
var Version = "0.0.0-dev"

// Config is the plugin's config { } block: one tagged field per attribute,
// e.g. Limit int ` + "`" + `hcl:"limit,optional" min:"1" max:"64" help:"what it means"` + "`" + `.
// The tags min, max, min_items, max_items, enum and format (cidr, ip, mac,
// ifname) and the field types netip.Prefix, netip.Addr and net.HardwareAddr
// are checked by Decode and by the agent, at the value's file:line:col.
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

// Check implements sdk.Detector: it runs verdict inside the workload's
// network namespace.
func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (res sdk.CheckResult, err error) {
	cfg := p.config()
	err = netns.Do(req.Netns, func() error {
		res, err = verdict(ctx, cfg, req)
		return err
	})
	return res, err
}

// verdict is the detector's answer about req.Address on req.Interface. It
// runs inside req.Netns (net.InterfaceByName, netlink and sockets see the
// workload's interfaces) and must return by ctx's deadline; an error is a
// VerdictError.
func verdict(ctx context.Context, cfg Config, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: req.Address.String() + " is fine"}, ctx.Err()
}
`

const tmplDetectorTest = `package {{.Package}}

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(sdktest.Logger(t)), sdktest.Options{
		GoodConfig: ` + "``" + `, // a body of the config { } block it must accept
		// Bodies it must refuse, each at the LINE:COL of the wrong value.
		BadConfigs: []sdktest.BadConfig{
			{Body: ` + "`no_such_attribute = 1`" + `, At: "1:1"},
		},
	})
}

func TestVerdicts(t *testing.T) {
	sdktest.Verdicts(t, New(sdktest.Logger(t)), sdktest.VerdictTable{
		Config: ` + "``" + `, // checks run on "lo"; sdktest/lan builds a LAN when they need one
		Want: map[string]sdk.Verdict{
			"192.0.2.1/24": sdk.VerdictPass,
		},
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

// Version is the plugin's own version, stamped at build: make build
// VERSION=1.2.0 (the Makefile passes -X; its default is git describe).
var Version = "0.0.0-dev"

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

const tmplTunerTest = `package {{.Package}}

import (
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(sdktest.Logger(t)), sdktest.Options{
		GoodConfig: ` + "``" + `, // a body of the config { } block it must accept
		// Bodies it must refuse, each at the LINE:COL of the wrong value.
		BadConfigs: []sdktest.BadConfig{
			{Body: ` + "`no_such_attribute = 1`" + `, At: "1:1"},
		},
	})
}
`

const tmplMakefile = `# {{.Name}}: a spiderpool-agent plugin.

BIN     := bin/spiderpool-plugin-{{.Name}}
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)

.PHONY: build test

## build: the plugin binary, stripped (-s -w) and stamped with VERSION;
## install it into the agent's plugin_dir
build:
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X {{.Module}}.Version=$(VERSION)' -o $(BIN) ./cmd/spiderpool-plugin-{{.Name}}

## test: the conformance kit and your own tests
test:
	go vet ./...
	go test -race -count=1 ./...
`

const tmplReadme = "# {{.Name}}\n\n" +
	"A {{.Kind}} plugin for spiderpool-agent, written against its SDK\n" +
	"(`" + SDKModule + "`, {{if .SDKDir}}the checkout at `{{.SDKDir}}`{{else}}release {{.SDK}}{{end}}: see go.mod).\n\n" +
	"## Develop\n\n" +
	"```sh\nmake test     # sdktest's conformance run and your tests\nmake build    # bin/spiderpool-plugin-{{.Name}}\n" +
	"spiderpool-agent plugin run bin/spiderpool-plugin-{{.Name}} check --interface lo --ip 10.0.0.7/24\n" +
	"spiderpool-agent plugin docs bin/spiderpool-plugin-{{.Name}}\n```\n\n" +
	"Fill in `Config` (one tagged field per attribute; constraints as tags),\n" +
	"`parse` (values that parse but are wrong: `raw.AttrError`){{if eq .Kind \"detector\"}} and `verdict`,\n" +
	"which runs in the request's namespace and returns by the context's\n" +
	"deadline; then the tables of bad configs and of verdicts in the test{{end}}.\n\n" +
	"## Install\n\n" +
	"Copy the binary to the agent's `plugin_dir` as `spiderpool-plugin-{{.Name}}`\n" +
	"(owned by root, not writable by others) and enable it:\n\n" +
	"```hcl\nplugin \"{{.Name}}\" {\n  config {\n  }\n}\n```\n\n" +
	"Then `spiderpool-agent config validate` and `spiderpool-agent reload`.\n"
