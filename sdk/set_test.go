package sdk

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
)

// namedPlugin is a component that reports the name it was built with, so a
// test can tell which component of a set answered.
type namedPlugin struct {
	Base
	name string
}

func (p namedPlugin) Info() Info {
	return Info{Name: p.name, Kind: KindDetector, Version: "1", APIVersion: APIVersion}
}
func (p namedPlugin) Configure(context.Context, ConfigureRequest) error { return nil }
func (p namedPlugin) Check(context.Context, CheckRequest) (CheckResult, error) {
	return CheckResult{Verdict: VerdictPass}, nil
}

func testSet() Set {
	return Set{
		"beta":  func(Logger) Plugin { return namedPlugin{name: "beta"} },
		"alpha": func(Logger) Plugin { return namedPlugin{name: "alpha"} },
	}
}

// setChildEnv makes the test binary act as the plugin set (see TestMain).
const setChildEnv = "SDK_TEST_SET_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(setChildEnv) == "1" {
		// Drop the test flags: the set sees what the agent passes.
		args := os.Args[1:]
		for len(args) > 0 && strings.HasPrefix(args[0], "-test.") {
			args = args[1:]
		}
		os.Exit(runSet(testSet(), args, os.Stdout, os.Stderr, Serve))
	}
	os.Exit(m.Run())
}

func TestSetListsComponents(t *testing.T) {
	for _, args := range [][]string{nil, {"list"}} {
		var out, errb bytes.Buffer
		code := runSet(testSet(), args, &out, &errb, func(func(Logger) Plugin) { t.Fatal("served on list") })
		if code != 0 || out.String() != "alpha\nbeta\n" || errb.Len() != 0 {
			t.Errorf("args %q: code %d, stdout %q, stderr %q; want 0, \"alpha\\nbeta\\n\", nothing", args, code, out.String(), errb.String())
		}
	}
}

func TestSetRefusesUnknownComponentAndBadArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "gamma"}, `unknown component "gamma"`},
		{[]string{"serve"}, "exactly one component name, got 0"},
		{[]string{"serve", "alpha", "beta"}, "exactly one component name, got 2"},
		{[]string{"start", "alpha"}, `unknown command "start alpha"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		served := false
		code := runSet(testSet(), tt.args, &out, &errb, func(func(Logger) Plugin) { served = true })
		if code == 0 || served || !strings.Contains(errb.String(), tt.want) || !strings.Contains(errb.String(), "components: alpha, beta") {
			t.Errorf("args %q: code %d, served %v, stderr %q; want non-zero, no serve, %q and the component list", tt.args, code, served, errb.String(), tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("args %q: wrote %q to stdout, which belongs to go-plugin's handshake", tt.args, out.String())
		}
	}
}

func TestSetRefusesBadDefinitions(t *testing.T) {
	for name, set := range map[string]Set{
		"empty":       {},
		"bad name":    {"Ip_Conflict": func(Logger) Plugin { return namedPlugin{} }},
		"nil builder": {"a": nil},
	} {
		var errb bytes.Buffer
		if code := runSet(set, []string{"list"}, &bytes.Buffer{}, &errb, nil); code == 0 || errb.Len() == 0 {
			t.Errorf("%s: code %d, stderr %q; want an error", name, code, errb.String())
		}
	}
}

// TestSetServesEachComponentAsItsOwnProcess runs the set as the agent does,
// a real go-plugin process per component, and checks that each process is
// the component asked for.
func TestSetServesEachComponentAsItsOwnProcess(t *testing.T) {
	pids := map[int]bool{}
	for _, name := range []string{"alpha", "beta"} {
		cmd := exec.Command(os.Args[0], SetServeCommand, name)
		cmd.Env = append(os.Environ(), setChildEnv+"=1")
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  Handshake,
			VersionedPlugins: VersionedPlugins(nil, nil),
			Cmd:              cmd,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			AutoMTLS:         true,
			StartTimeout:     time.Minute, // a loaded 2-core machine
		})
		t.Cleanup(client.Kill)
		rpc, err := client.Client()
		if err != nil {
			t.Fatalf("start component %s: %v", name, err)
		}
		raw, err := rpc.Dispense(PluginName)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		info, err := raw.(*Client).Info(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: GetInfo: %v", name, err)
		}
		if info.Name != name {
			t.Errorf("serve %s answered as %q", name, info.Name)
		}
		pids[client.ReattachConfig().Pid] = true
	}
	if len(pids) != 2 {
		t.Errorf("two components ran as %d processes, want 2", len(pids))
	}
}
