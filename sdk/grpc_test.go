package sdk

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"
	"google.golang.org/grpc"

	pb "github.com/spiderpool-agent/spiderpool-agent/sdk/proto/spiderpool/plugin/v1"
)

// shimPlugin is a detector and tuner whose answers the test sets.
type shimPlugin struct {
	Base
	verdict   Verdict
	checkErr  error
	health    HealthState
	samples   []Sample
	validated []ConfigureRequest
	validate  func(ConfigureRequest) error
}

type shimConfig struct {
	MinMTU int `hcl:"min_mtu,optional"`
}

func (p *shimPlugin) Info() Info {
	return Info{Name: "shim", Kind: KindDetector, Version: "1", APIVersion: APIVersion, Description: "d", Capabilities: []string{"CAP_NET_RAW"}}
}
func (p *shimPlugin) ConfigSchema() Schema { return MustSchemaOf(&shimConfig{}) }
func (p *shimPlugin) Configure(context.Context, ConfigureRequest) error {
	return nil
}
func (p *shimPlugin) Health(context.Context) Health      { return Health{State: p.health, Message: "m"} }
func (p *shimPlugin) Metrics(context.Context) []Sample   { return p.samples }
func (p *shimPlugin) Status(context.Context) TunerStatus { return TunerStatus{} }
func (p *shimPlugin) Check(_ context.Context, req CheckRequest) (CheckResult, error) {
	return CheckResult{Verdict: p.verdict, Reason: req.Address.String()}, p.checkErr
}

type shimValidator struct{ *shimPlugin }

func (p shimValidator) ValidateConfig(_ context.Context, req ConfigureRequest) error {
	p.validated = append(p.validated, req)
	return p.validate(req)
}

// connect serves impl over go-plugin's in-memory gRPC test connection (as
// Nomad tests its shims) and returns the agent's side.
func connect(t *testing.T, impl Plugin) *Client {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: impl}})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client)
}

func TestShimRoundTrip(t *testing.T) {
	p := &shimPlugin{verdict: VerdictSkip, health: HealthDegraded, samples: []Sample{{Name: "x_total", Type: Counter, Value: 2}}}
	c := connect(t, p)
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.Description != "d" || info.Capabilities[0] != "CAP_NET_RAW" || info.Kind != KindDetector {
		t.Errorf("Info = %+v, %v", info, err)
	}
	res, err := c.Check(ctx, CheckRequest{Interface: "eth0", Address: netip.MustParsePrefix("10.0.0.7/24")})
	if err != nil || res.Verdict != VerdictSkip || res.Reason != "10.0.0.7/24" {
		t.Errorf("Check = %+v, %v; want skip to stay skip", res, err)
	}
	p.checkErr = errors.New("link eth0 is down")
	res, err = c.Check(ctx, CheckRequest{})
	if err != nil || res.Verdict != VerdictError || res.Reason != "link eth0 is down" {
		t.Errorf("Check returning an error = %+v, %v; want a VerdictError with its text", res, err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.State != HealthDegraded {
		t.Errorf("Health = %+v, %v", h, err)
	}
	ss, err := c.Metrics(ctx)
	if err != nil || len(ss) != 1 || ss[0].Type != Counter {
		t.Errorf("Metrics = %+v, %v", ss, err)
	}
}

// A plugin that hands the shim a value outside the enums gets an error, not
// a coerced value: an unknown verdict must not read as anything it did not say.
func TestShimRejectsUnknownGoValues(t *testing.T) {
	p := &shimPlugin{verdict: "maybe", health: "sleepy", samples: []Sample{{Name: "x", Type: "histogram"}}}
	c := connect(t, p)
	ctx := context.Background()
	if _, err := c.Check(ctx, CheckRequest{}); err == nil || !strings.Contains(err.Error(), `verdict "maybe" is none of`) {
		t.Errorf("Check(unknown verdict) = %v", err)
	}
	if _, err := c.Health(ctx); err == nil || !strings.Contains(err.Error(), `health state "sleepy"`) {
		t.Errorf("Health(unknown state) = %v", err)
	}
	if _, err := c.Metrics(ctx); err == nil || !strings.Contains(err.Error(), `type "histogram"`) {
		t.Errorf("Metrics(unknown type) = %v", err)
	}
}

// liar serves the raw protocol with enum values no SDK defines, as a plugin
// built against a newer protocol might.
type liar struct {
	pb.UnimplementedPluginServer
	pb.UnimplementedDetectorServer
}

func (liar) GetInfo(context.Context, *pb.GetInfoRequest) (*pb.PluginInfo, error) {
	return &pb.PluginInfo{Name: "liar", Kind: pb.Kind(7)}, nil
}
func (liar) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	return &pb.HealthResponse{State: pb.HealthState(9)}, nil
}
func (liar) CollectMetrics(context.Context, *pb.CollectMetricsRequest) (*pb.CollectMetricsResponse, error) {
	return &pb.CollectMetricsResponse{Samples: []*pb.Sample{{Name: "x", Type: pb.SampleType(5)}}}, nil
}
func (liar) Check(context.Context, *pb.CheckRequest) (*pb.CheckResponse, error) {
	return &pb.CheckResponse{Verdict: pb.Verdict(8), Reason: "new"}, nil
}

func TestClientRejectsUnknownEnumValues(t *testing.T) {
	conn, _ := plugin.TestGRPCConn(t, func(s *grpc.Server) {
		pb.RegisterPluginServer(s, liar{})
		pb.RegisterDetectorServer(s, liar{})
	})
	t.Cleanup(func() { conn.Close() })
	raw, err := (&GRPCPlugin{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*Client)
	ctx := context.Background()
	if _, err := c.Info(ctx); err == nil || !strings.Contains(err.Error(), "kind 7") {
		t.Errorf("Info(kind 7) = %v", err)
	}
	if _, err := c.Health(ctx); err == nil || !strings.Contains(err.Error(), "health state 9") {
		t.Errorf("Health(state 9) = %v", err)
	}
	if _, err := c.Metrics(ctx); err == nil || !strings.Contains(err.Error(), "type 5") {
		t.Errorf("Metrics(type 5) = %v", err)
	}
	if res, err := c.Check(ctx, CheckRequest{}); err == nil || !strings.Contains(err.Error(), "verdict 8") {
		t.Errorf("Check(verdict 8) = %+v, %v", res, err)
	}
	// ValidateConfig is unimplemented by this server: an older plugin.
	if err := c.ValidateConfig(ctx, ConfigureRequest{}); !errors.Is(err, ErrUnimplemented) {
		t.Errorf("ValidateConfig on an old plugin = %v, want ErrUnimplemented", err)
	}
}

func TestShimValidateConfig(t *testing.T) {
	ctx := context.Background()
	bad := RawConfig{Filename: "agent.hcl", Start: pos(30), Body: []byte("min_mtu = 70000")}
	good := RawConfig{Filename: "agent.hcl", Start: pos(30), Body: []byte("min_mtu = 1500")}

	// Not a Validator: the schema decides, positions kept.
	c := connect(t, &shimPlugin{})
	if err := c.ValidateConfig(ctx, ConfigureRequest{Config: good}); err != nil {
		t.Errorf("ValidateConfig(good) = %v", err)
	}
	err := c.ValidateConfig(ctx, ConfigureRequest{Config: RawConfig{Filename: "agent.hcl", Start: pos(30), Body: []byte("min_mtu = 1.5")}})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "agent.hcl:30:11:") {
		t.Errorf("ValidateConfig(fraction) = %v", err)
	}

	// A Validator: its positioned refusal arrives as it was made.
	v := shimValidator{&shimPlugin{}}
	v.validate = func(req ConfigureRequest) error {
		var cfg shimConfig
		if err := req.Config.Decode(&cfg); err != nil {
			return err
		}
		if cfg.MinMTU > 65535 {
			return req.Config.AttrError("min_mtu", "above 65535")
		}
		return nil
	}
	c = connect(t, v)
	err = c.ValidateConfig(ctx, ConfigureRequest{Config: bad, Agent: AgentSettings{EnableIPv4: true}})
	if !errors.As(err, &ce) || err.Error() != `agent.hcl:30:11: Invalid value for "min_mtu": above 65535` {
		t.Errorf("ValidateConfig(70000) = %v", err)
	}
	if len(v.validated) != 1 || !v.validated[0].Agent.EnableIPv4 {
		t.Errorf("the agent settings did not reach ValidateConfig: %+v", v.validated)
	}

	// A plain error still names the block's position.
	v.validate = func(ConfigureRequest) error { return errors.New("no such interface eth9") }
	err = c.ValidateConfig(ctx, ConfigureRequest{Config: good})
	if !errors.As(err, &ce) || err.Error() != "agent.hcl:30:1: Invalid configuration: no such interface eth9" {
		t.Errorf("ValidateConfig(plain error) = %v", err)
	}
}

func pos(line int) hcl.Pos { return hcl.Pos{Line: line, Column: 1, Byte: 0} }
