// Command minicheck is the smallest client of the agent's check API: one
// request through api.Client, the verdict as its exit code (0 pass, 1
// block, 2 anything else). test/bench times it beside `spiderpool-agent
// check` to show what a process start costs without the daemon's packages.
//
//	minicheck SOCKET INTERFACE CIDR [GATEWAY]
package main

import (
	"context"
	"os"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

func main() {
	if len(os.Args) < 4 {
		os.Exit(2)
	}
	a := api.AddressRequest{Address: os.Args[3]}
	if len(os.Args) > 4 {
		a.Gateway = os.Args[4]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, _, err := (&api.Client{SocketPath: os.Args[1]}).Check(ctx, api.CheckRequest{Interface: os.Args[2], Addresses: []api.AddressRequest{a}})
	switch {
	case err != nil:
		os.Exit(2)
	case resp.Verdict == api.VerdictPass:
		os.Exit(0)
	case len(resp.Addresses) == 1 && resp.Addresses[0].Verdict == "block":
		os.Exit(1)
	}
	os.Exit(2)
}
