package config

import (
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"
)

// ConfYMLName is the Spiderpool config file read from the config directory.
const ConfYMLName = "conf.yml"

// confYMLPlugins maps conf.yml keys to the built-in plugin they enable.
var confYMLPlugins = map[string]string{
	"tuneSysctlConfig":          PluginSysctlTuner,
	"enableIPConflictDetection": PluginIPConflict,
	"enableGatewayDetection":    PluginGatewayDetector,
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)

// loadConfYML applies the keys of a Spiderpool conf.yml this agent honours
// and records the others in IgnoredConfYMLKeys.
func (l *loader) loadConfYML(path string) {
	fileSrc := Source{Kind: KindConfYML, Where: path}
	data, err := ReadFile(path)
	if err != nil {
		l.problem(fileSrc, "%s", fileErr(path, err))
		return
	}
	l.c.Files = append(l.c.Files, path)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			l.problem(Source{Kind: KindConfYML, Where: path + ":" + m[1]}, "%s:%s: %s", path, m[1], m[2])
		} else {
			l.problem(fileSrc, "%s: %v", path, err)
		}
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		l.problem(Source{Kind: KindConfYML, Where: fmt.Sprintf("%s:%d", path, root.Line)},
			"%s:%d: want a mapping of keys to values", path, root.Line)
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s:%d", path, k.Line)
		src := Source{Kind: KindConfYML, Where: where}
		if name, ok := confYMLPlugins[k.Value]; ok {
			b, ok := yamlBool(v)
			if !ok {
				l.problem(src, "%s: %s: want a boolean (true or false)", where, k.Value)
				continue
			}
			p := l.c.Plugin(name)
			p.Enabled = b
			l.c.setSource(pluginKey(name, "enabled"), src)
			continue
		}
		spec := confYMLKey(k.Value)
		if spec == nil {
			l.c.IgnoredConfYMLKeys = append(l.c.IgnoredConfYMLKeys, k.Value)
			continue
		}
		var val any
		switch spec.kind {
		case kindBool:
			b, ok := yamlBool(v)
			if !ok {
				l.problem(src, "%s: %s: want a boolean (true or false)", where, k.Value)
				continue
			}
			val = b
		default: // kindString
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				l.problem(src, "%s: %s: want a string", where, k.Value)
				continue
			}
			val = v.Value
		}
		val, ok := spec.check(val)
		if !ok {
			l.problem(src, "%s: %s: not %s", where, k.Value, spec.want)
			continue
		}
		set(spec.ptr(l.c), val)
		l.c.setSource(spec.name, src)
	}
}

func yamlBool(v *yaml.Node) (bool, bool) {
	if v.Kind != yaml.ScalarNode {
		return false, false
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		return false, false
	}
	return b, true
}

func confYMLKey(name string) *keySpec {
	for _, k := range globalKeys {
		if k.confYML != "" && k.confYML == name {
			return k
		}
	}
	return nil
}
