package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Flag is one command-line flag the operator gave.
type Flag struct {
	// Key is the config key it sets: "log_level", "health_port",
	// "metrics.port", "plugin.NAME.enabled", ...
	Key string
	// Value is the flag's text, parsed like an environment variable.
	Value string
	// Name is how errors name the flag, e.g. "--health-port"; empty means
	// "--" followed by Key.
	Name string
}

// LoadOptions says where Load finds the configuration.
type LoadOptions struct {
	// ConfigDir is a directory whose *.hcl files (and conf.yml) are read,
	// or one HCL file. Empty reads no file. It must exist.
	ConfigDir string
	// IPAMConfigDir is the IPAM plugin's config directory; when not empty
	// it must be an existing directory.
	IPAMConfigDir string
	// Lookup reads an environment variable; pass os.LookupEnv. Nil means an
	// empty environment.
	Lookup func(string) (string, bool)
	// Flags are the command-line flags the operator gave, applied in order
	// above everything else.
	Flags []Flag
}

// Load builds the effective configuration from the defaults, conf.yml, the
// HCL files, the environment and the flags (in that order of precedence,
// lowest first) and validates it. A non-nil error is an *Error listing every
// problem found.
func Load(opts LoadOptions) (*Config, error) {
	l := &loader{c: Default(), opts: opts}
	l.c.ConfigDir = opts.ConfigDir
	l.c.IPAMConfigDir = opts.IPAMConfigDir

	l.checkIPAMConfigDir()
	hclFiles, confYML := l.discover()
	if confYML != "" {
		l.loadConfYML(confYML)
	}
	for _, f := range hclFiles {
		l.loadHCL(f)
	}
	l.loadEnv()
	l.loadFlags()
	l.crossCheck()

	if len(l.err.Problems) > 0 {
		return nil, &l.err
	}
	return l.c, nil
}

// loader carries one Load.
type loader struct {
	c    *Config
	opts LoadOptions
	err  Error
}

func (l *loader) problem(s Source, format string, args ...any) {
	l.err.Problems = append(l.err.Problems, Problem{Source: s, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) checkIPAMConfigDir() {
	dir := l.opts.IPAMConfigDir
	if dir == "" {
		return
	}
	src := Source{Kind: KindOption, Where: "--ipam-config-dir"}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.problem(src, "--ipam-config-dir %q: no such directory", dir)
	case err != nil:
		l.problem(src, "--ipam-config-dir %q: %v", dir, err)
	case !fi.IsDir():
		l.problem(src, "--ipam-config-dir %q: not a directory", dir)
	}
}

// discover finds the HCL files, in the order they apply, and conf.yml ("" if
// none) named by ConfigDir.
func (l *loader) discover() (hclFiles []string, confYML string) {
	dir := l.opts.ConfigDir
	if dir == "" {
		return nil, ""
	}
	src := Source{Kind: KindOption, Where: "--config-dir"}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		l.problem(src, "--config-dir %q: no such file or directory", dir)
		return nil, ""
	}
	if err != nil {
		l.problem(src, "--config-dir %q: %v", dir, err)
		return nil, ""
	}
	if !fi.IsDir() {
		// One file: read just it. A conf.yml beside it is not read.
		return []string{dir}, ""
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		l.problem(src, "--config-dir %q: %v", dir, err)
		return nil, ""
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		// Dot files are editor leftovers and Kubernetes' ..data links.
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".hcl") {
			continue
		}
		// Whatever else is named *.hcl (a directory, a FIFO, a device) is
		// refused by ReadFile with an error naming it: skipping it would
		// silently drop settings the operator meant to give.
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		hclFiles = append(hclFiles, filepath.Join(dir, n))
	}
	yml := filepath.Join(dir, ConfYMLName)
	switch _, err := os.Lstat(yml); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		l.problem(Source{Kind: KindConfYML, Where: yml}, "%s: %v", yml, err)
	default:
		confYML = yml // ReadFile refuses anything but a regular file
	}
	return hclFiles, confYML
}

// loadEnv applies the environment variables in EnvVars order.
func (l *loader) loadEnv() {
	lookup := l.opts.Lookup
	if lookup == nil {
		return
	}
	for _, k := range globalKeys {
		if k.env == "" {
			continue
		}
		s, ok := lookup(k.env)
		if !ok {
			continue
		}
		src := Source{Kind: KindEnv, Where: k.env}
		var v any
		if strings.TrimSpace(s) == "" {
			if k.emptyEnv == nil {
				continue // set but empty counts as unset
			}
			v = k.emptyEnv
		} else if v, ok = k.parseText(s); !ok {
			l.problem(src, "%s=%q: not %s", k.env, s, k.want)
			continue
		}
		set(k.ptr(l.c), v)
		l.c.setSource(k.name, src)
	}
}

// loadFlags applies the flags in order.
func (l *loader) loadFlags() {
	for _, f := range l.opts.Flags {
		name := f.Name
		if name == "" {
			name = "--" + f.Key
		}
		src := Source{Kind: KindFlag, Where: name}
		var (
			spec *keySpec
			dst  any
		)
		if k := globalKey(f.Key); k != nil {
			spec, dst = k, k.ptr(l.c)
		} else if rest, ok := strings.CutPrefix(f.Key, "plugin."); ok {
			i := strings.LastIndexByte(rest, '.')
			if i < 0 {
				l.problem(src, "%s: unknown configuration key %q", name, f.Key)
				continue
			}
			pname, attr := rest[:i], rest[i+1:]
			p := l.c.Plugin(pname)
			if p == nil {
				l.problem(src, "%s: unknown plugin %q in key %q (declare it with a plugin block)", name, pname, f.Key)
				continue
			}
			if spec = pluginKeySpec(attr); spec == nil {
				l.problem(src, "%s: key %q cannot be set by a flag", name, f.Key)
				continue
			}
			dst = spec.pptr(p)
		} else {
			l.problem(src, "%s: unknown configuration key %q", name, f.Key)
			continue
		}
		var v any
		if strings.TrimSpace(f.Value) == "" && spec.emptyEnv != nil {
			v = spec.emptyEnv
		} else {
			var ok bool
			if v, ok = spec.parseText(f.Value); !ok {
				l.problem(src, "%s=%q: not %s", name, f.Value, spec.want)
				continue
			}
		}
		set(dst, v)
		l.c.setSource(f.Key, src)
	}
}

// crossCheck validates settings against each other.
func (l *loader) crossCheck() {
	c := l.c
	conflict := Source{Kind: KindConflict}
	if !c.EnableIPv4 && !c.EnableIPv6 {
		l.problem(conflict, "enable_ipv4 (%s) and enable_ipv6 (%s) are both false: at least one IP family must be enabled",
			c.sourceOf("enable_ipv4"), c.sourceOf("enable_ipv6"))
	}
	type port struct {
		key string
		n   int
	}
	ports := []port{{"health_port", c.HealthPort}}
	if c.Metrics.Enabled {
		ports = append(ports, port{"metrics.port", c.Metrics.Port})
	}
	if c.GopsPort != 0 {
		ports = append(ports, port{"gops_port", c.GopsPort})
	}
	for i := range ports {
		for j := i + 1; j < len(ports); j++ {
			if ports[i].n == ports[j].n {
				l.problem(conflict, "%s (%s) and %s (%s) are both %s: each server needs its own port",
					ports[i].key, c.sourceOf(ports[i].key), ports[j].key, c.sourceOf(ports[j].key), strconv.Itoa(ports[i].n))
			}
		}
	}
}
