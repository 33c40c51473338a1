package command

import (
	"regexp"

	"github.com/hashicorp/cli"
	"github.com/posener/complete"
)

// helpFlag finds the options a command's help lists ("  --interface",
// "  -o"; see flagName).
var helpFlag = regexp.MustCompile(`(?m)^\s+(--[a-z][a-z0-9-]*|-[a-z])\s*$`)

// completing wraps a command so that shell completion offers the options its
// help lists: the help is the one place every command already names them.
type completing struct{ cli.Command }

func (c completing) AutocompleteArgs() complete.Predictor { return complete.PredictNothing }

func (c completing) AutocompleteFlags() complete.Flags {
	flags := complete.Flags{}
	for _, m := range helpFlag.FindAllStringSubmatch(c.Help(), -1) {
		flags[m[1]] = complete.PredictAnything
	}
	return flags
}

// withCompletion gives every command of a CLI option completion.
func withCompletion(cmds map[string]cli.CommandFactory) {
	for name, f := range cmds {
		cmds[name] = func() (cli.Command, error) {
			c, err := f()
			if err != nil {
				return nil, err
			}
			if _, ok := c.(cli.CommandAutocomplete); ok {
				return c, nil
			}
			return completing{c}, nil
		}
	}
}
