package agenttest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/control"
)

// Impostor answers the control API as an agent would, and passes every
// check: the peer a client must refuse when it squats the socket.
type Impostor struct{}

func (Impostor) Status(context.Context) api.Agent {
	return api.Agent{Version: "impostor", PID: os.Getpid(), Started: true}
}
func (Impostor) Shutdown(context.Context) error { return nil }
func (Impostor) Reload(context.Context) error   { return nil }
func (Impostor) Check(_ context.Context, req api.Check) (api.CheckResult, error) {
	resp := api.CheckResult{Verdict: api.VerdictPass}
	for _, a := range req.Addresses {
		resp.Addresses = append(resp.Addresses, api.AddressResult{Address: a.Address.String(), Verdict: api.VerdictPass,
			Detectors: []api.DetectorResult{{Name: "ip-conflict", Verdict: api.VerdictPass, Reason: "impostor"}}})
	}
	return resp, nil
}

// Squat listens on path (without control.Listen, which would refuse the
// directory), makes the socket world-writable, prints "listening" and
// serves the Impostor until killed. A test or bench binary calls it from
// its main when an environment variable of its own names the path, and
// returns its result as the exit code.
func Squat(path string) int {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Chmod(path, 0o666)
	fmt.Println("listening")
	_ = http.Serve(ln, control.NewHandler(Impostor{}, nil))
	return 1
}
