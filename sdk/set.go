package sdk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Set is several plugins in one executable, HashiCorp Packer's plugin.Set
// model: each component is still its own process with its own handshake,
// health, restarts and checksum (the agent runs the executable once per
// component, as "BINARY serve NAME"); only the file on disk is shared, so a
// vendor ships one Go runtime and one copy of the shared libraries instead
// of one per plugin. The key is the component's name, which should equal
// the Name its Info reports; the value builds the plugin, as for Serve.
type Set map[string]func(log Logger) Plugin

// SetServeCommand is the argument that makes a set serve one component.
const SetServeCommand = "serve"

// componentNameRE is the plugin-name rule of the agent's plugin blocks.
var componentNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Names lists the components in lexical order.
func (s Set) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// validate refuses a set the agent could not address: no components, or a
// name that no plugin block could carry.
func (s Set) validate() error {
	if len(s) == 0 {
		return errors.New("plugin set has no components")
	}
	for _, n := range s.Names() {
		if !componentNameRE.MatchString(n) {
			return fmt.Errorf("plugin set component %q: a name must match %s", n, componentNameRE)
		}
		if s[n] == nil {
			return fmt.Errorf("plugin set component %q has no constructor", n)
		}
	}
	return nil
}

// ServeSet runs a plugin set from main: "BINARY serve NAME" serves the
// component NAME (and never returns while it serves); "BINARY" or
// "BINARY list" prints the components, one a line, to stdout; anything else
// is an error on stderr and exit status 2.
func ServeSet(set Set) {
	os.Exit(runSet(set, os.Args[1:], os.Stdout, os.Stderr, Serve))
}

// runSet is ServeSet with its surroundings passed in, for tests. serve is
// called for "serve NAME" and returns only when the plugin stops serving.
func runSet(set Set, args []string, stdout, stderr io.Writer, serve func(func(Logger) Plugin)) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", a...)
		fmt.Fprintf(stderr, "usage: %s [list | %s COMPONENT]; components: %s\n", progName(), SetServeCommand, strings.Join(set.Names(), ", "))
		return 2
	}
	if err := set.validate(); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 2
	}
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "list":
		// Plain names: for people and for tools such as the agent's
		// "plugin docs" that enumerate a set.
		for _, n := range set.Names() {
			fmt.Fprintln(stdout, n)
		}
		return 0
	case args[0] == SetServeCommand && len(args) == 2:
		newPlugin, ok := set[args[1]]
		if !ok {
			return usage("unknown component %q", args[1])
		}
		serve(newPlugin)
		return 0
	case args[0] == SetServeCommand:
		return usage("%s takes exactly one component name, got %d arguments", SetServeCommand, len(args)-1)
	default:
		return usage("unknown command %q", strings.Join(args, " "))
	}
}

func progName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		return os.Args[0]
	}
	return "plugin-set"
}
