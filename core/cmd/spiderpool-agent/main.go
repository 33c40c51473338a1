// Command spiderpool-agent is the node agent; see `spiderpool-agent -h`.
package main

import (
	"os"

	"github.com/spiderpool-agent/spiderpool-agent/core/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:], command.OSEnv()))
}
