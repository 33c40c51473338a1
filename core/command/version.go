package command

import (
	"fmt"

	"github.com/spiderpool-agent/spiderpool-agent/core/version"
)

type versionCommand struct{ env Env }

func (c *versionCommand) Synopsis() string { return "Print the version" }

func (c *versionCommand) Help() string {
	return helpText("version", "Prints the version, commit, Go version and plugin API version.", nil)
}

func (c *versionCommand) Run(args []string) int {
	fs := newFlags("version")
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	fmt.Fprintln(c.env.Stdout, version.String())
	return ExitOK
}
