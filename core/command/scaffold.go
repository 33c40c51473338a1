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
	"github.com/spiderpool-agent/spiderpool-agent/sdk/examples"
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
		s.Package + "_test.go": tmplTest,
		s.Package + ".go":      tmplSkeleton,
	}
	rendered := map[string][]byte{}
	for name, text := range files {
		var b bytes.Buffer
		if err := template.Must(template.New(name).Parse(text)).Execute(&b, s); err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		out := b.Bytes()
		var err error
		switch {
		case name == s.Package+".go":
			out, err = overlayDecls(examples.MTUGuard, string(out), skeletonDrops(s.Kind))
		case strings.HasSuffix(name, ".go"):
			out, err = format.Source(out)
		}
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
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

// tmplSkeleton is what plugin new writes where sdk/examples/mtuguard has
// its author's work: the declarations that replace the example's of the
// same name (overlayDecls), the rest of the plugin's file being the
// example's. A tuner also replaces the detector's Plugin and its interface
// assertions, adds Configure, apply and Status, and drops what
// skeletonDrops names.
const tmplSkeleton = `// Package {{.Package}} is the {{.Name}} {{.Kind}} plugin of spiderpool-agent.
package {{.Package}}
{{if eq .Kind "tuner"}}
import (
	"sync"
	"time"
)
{{end}}
type Config struct{}

func defaults() Config { return Config{} }

func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "{{.Name}}", Kind: sdk.Kind{{if eq .Kind "tuner"}}Tuner{{else}}Detector{{end}}, Version: Version, APIVersion: sdk.APIVersion,
		Description: "{{.Name}} {{.Kind}}"}
}
{{if eq .Kind "tuner"}}
// Plugin is the tuner. sdk.Configured decodes, checks and keeps its config
// block (ConfigSchema, ValidateConfig, Configure and Config).
type Plugin struct {
	sdk.Configured[Config]
	log    sdk.Logger
	mu     sync.Mutex
	status sdk.TunerStatus
}

var (
	_ sdk.Tuner     = (*Plugin)(nil)
	_ sdk.Validator = (*Plugin)(nil)
)

// Configure implements sdk.Plugin: keep the block, then apply it now.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	if err := p.Configured.Configure(ctx, req); err != nil {
		return err
	}
	_, err := p.apply(ctx)
	return err
}

// apply brings the settings (p.Config()) to the desired state; call it
// from Configure and from a reconcile loop of your own.
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
{{else}}
func verdict(ctx context.Context, cfg Config, req sdk.CheckRequest) (sdk.CheckResult, error) {
	return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: req.Address.String() + " is fine"}, ctx.Err()
}
{{end}}`

// skeletonDrops names the example's declarations a kind of plugin has not.
func skeletonDrops(k sdk.Kind) []string {
	if k == sdk.KindTuner {
		return []string{"func Plugin.Check", "func verdict"}
	}
	return nil
}

const tmplTest = `package {{.Package}}

import (
	"testing"
{{if eq .Kind "detector"}}
	"github.com/spiderpool-agent/spiderpool-agent/sdk"{{end}}
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
{{if eq .Kind "detector"}}
func TestVerdicts(t *testing.T) {
	sdktest.Verdicts(t, New(sdktest.Logger(t)), sdktest.VerdictTable{
		Config: ` + "``" + `, // checks run on "lo"; sdktest/lan builds a LAN when they need one
		Want: map[string]sdk.Verdict{
			"192.0.2.1/24": sdk.VerdictPass,
		},
	})
}
{{end}}`

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
	"`check` (values that parse but are wrong: `raw.AttrError`){{if eq .Kind \"detector\"}} and `verdict`,\n" +
	"which runs in the request's namespace and returns by the context's\n" +
	"deadline; then the tables of bad configs and of verdicts in the test{{end}}.\n\n" +
	"## Install\n\n" +
	"Copy the binary to the agent's `plugin_dir` as `spiderpool-plugin-{{.Name}}`\n" +
	"(owned by root, not writable by others) and enable it:\n\n" +
	"```hcl\nplugin \"{{.Name}}\" {\n  config {\n  }\n}\n```\n\n" +
	"Then `spiderpool-agent config validate` and `spiderpool-agent reload`.\n"
