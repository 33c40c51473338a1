package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/spiderpool-agent/spiderpool-agent/sdk/proto/spiderpool/plugin/v1"
	"github.com/spiderpool-agent/spiderpool-agent/sdk/reclaim"
)

// GRPCPlugin is the go-plugin glue: on the plugin side it serves Impl, on the
// agent side it hands out a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
	// Logger, when set, takes the agent's log level from every Configure, so
	// that a reload that changes log_level reaches plugins at once.
	Logger hclog.Logger
	// work, when set, sees every Check, so that a plugin process returns a
	// burst's memory once the burst is over (Serve sets it).
	work *reclaim.Reclaimer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the services Impl implements.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	srv := &server{impl: p.Impl, logger: p.Logger}
	pb.RegisterPluginServer(s, srv)
	if d, ok := p.Impl.(Detector); ok {
		pb.RegisterDetectorServer(s, &detectorServer{impl: d, work: p.work})
	}
	if t, ok := p.Impl.(Tuner); ok {
		pb.RegisterTunerServer(s, &tunerServer{impl: t})
	}
	return nil
}

// GRPCClient returns a *Client on conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return &Client{
		plugin:   pb.NewPluginClient(conn),
		detector: pb.NewDetectorClient(conn),
		tuner:    pb.NewTunerClient(conn),
	}, nil
}

// VersionedPlugins is what both sides give go-plugin so that it negotiates
// the wire protocol. The agent passes nil for impl and logger.
func VersionedPlugins(impl Plugin, logger hclog.Logger) map[int]plugin.PluginSet {
	return versionedPlugins(&GRPCPlugin{Impl: impl, Logger: logger})
}

func versionedPlugins(p *GRPCPlugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: p}}
}

type server struct {
	pb.UnimplementedPluginServer
	impl   Plugin
	logger hclog.Logger
}

func (s *server) GetInfo(context.Context, *pb.GetInfoRequest) (*pb.PluginInfo, error) {
	return infoToProto(s.impl.Info()), nil
}

func (s *server) GetConfigSchema(context.Context, *pb.GetConfigSchemaRequest) (*pb.ConfigSchema, error) {
	return schemaToProto(s.impl.ConfigSchema()), nil
}

func configureRequestFromProto(req *pb.ConfigureRequest) ConfigureRequest {
	start := req.GetStart()
	return ConfigureRequest{
		Config: RawConfig{Filename: start.GetFilename(), Body: req.GetBody(), Start: posFromProto(start)},
		Agent: AgentSettings{
			EnableIPv4: req.GetAgent().GetEnableIpv4(),
			EnableIPv6: req.GetAgent().GetEnableIpv6(),
			LogLevel:   req.GetAgent().GetLogLevel(),
		},
	}
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	cr := configureRequestFromProto(req)
	if lvl := hclog.LevelFromString(cr.Agent.LogLevel); s.logger != nil && lvl != hclog.NoLevel {
		s.logger.SetLevel(lvl)
	}
	err := s.impl.Configure(ctx, cr)
	var ce *ConfigError
	if errors.As(err, &ce) {
		return &pb.ConfigureResponse{Diagnostics: diagsToProto(ce.Diagnostics)}, nil
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *server) ValidateConfig(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	cr := configureRequestFromProto(req)
	err := ValidateWith(ctx, s.impl, cr)
	if err == nil {
		return &pb.ConfigureResponse{}, nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		// A refusal is about the block even when the plugin did not say
		// where: point at the block rather than lose the position.
		ce = cr.Config.AttrError("", err.Error())
		ce.Diagnostics[0].Summary = "Invalid configuration"
	}
	return &pb.ConfigureResponse{Diagnostics: diagsToProto(ce.Diagnostics)}, nil
}

// ValidateWith runs p's dry run on req: p's ValidateConfig when p is a
// Validator, else a check of the block against p's schema.
func ValidateWith(ctx context.Context, p Plugin, req ConfigureRequest) error {
	if v, ok := p.(Validator); ok {
		return v.ValidateConfig(ctx, req)
	}
	return req.Config.Validate(p.ConfigSchema())
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	h := s.impl.Health(ctx)
	detail, err := healthDetailJSON(h.Detail)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	st, ok := healthToProto[h.State]
	if !ok {
		return nil, status.Errorf(codes.Internal, "health state %q is none of ready, degraded, failed", h.State)
	}
	return &pb.HealthResponse{State: st, Message: h.Message, DetailJson: detail}, nil
}

func (s *server) CollectMetrics(ctx context.Context, _ *pb.CollectMetricsRequest) (*pb.CollectMetricsResponse, error) {
	samples, err := samplesToProto(s.impl.Metrics(ctx))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.CollectMetricsResponse{Samples: samples}, nil
}

func (s *server) Shutdown(ctx context.Context, _ *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	if err := s.impl.Shutdown(ctx); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.ShutdownResponse{}, nil
}

type detectorServer struct {
	pb.UnimplementedDetectorServer
	impl Detector
	work *reclaim.Reclaimer
}

func (s *detectorServer) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	defer s.work.Begin()()
	cr, err := checkRequestFromProto(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	start := time.Now()
	res, err := s.impl.Check(ctx, cr)
	if err != nil {
		// Documented on Detector.Check: an error is a VerdictError whose
		// reason is the error's text.
		res = CheckResult{Verdict: VerdictError, Reason: err.Error()}
	}
	if res.Duration == 0 {
		res.Duration = time.Since(start)
	}
	out, err := checkResultToProto(res)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}

type tunerServer struct {
	pb.UnimplementedTunerServer
	impl Tuner
}

func (s *tunerServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.TunerStatus, error) {
	return tunerStatusToProto(s.impl.Status(ctx)), nil
}

// Client is the agent's side of a plugin: the same methods as the Go
// interfaces, over gRPC. Every call is bounded by its context.
type Client struct {
	plugin   pb.PluginClient
	detector pb.DetectorClient
	tuner    pb.TunerClient
}

// Info asks the plugin who it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	p, err := c.plugin.GetInfo(ctx, &pb.GetInfoRequest{})
	return answer("GetInfo", p, err, infoFromProto)
}

// ConfigSchema asks the plugin for its config schema.
func (c *Client) ConfigSchema(ctx context.Context) (Schema, error) {
	p, err := c.plugin.GetConfigSchema(ctx, &pb.GetConfigSchemaRequest{})
	if err != nil {
		return Schema{}, rpcError("GetConfigSchema", err)
	}
	return schemaFromProto(p), nil
}

// Configure sends a config block. A block the plugin rejects comes back as
// a *ConfigError with the positions of the agent's config file.
func (c *Client) Configure(ctx context.Context, req ConfigureRequest) error {
	resp, err := c.plugin.Configure(ctx, configureRequestToProto(req))
	return configAnswer("Configure", resp.GetDiagnostics(), err)
}

// ValidateConfig asks the plugin whether it would accept a config block,
// without applying it. A refusal is a *ConfigError with positions; a plugin
// built before the call existed answers ErrUnimplemented.
func (c *Client) ValidateConfig(ctx context.Context, req ConfigureRequest) error {
	resp, err := c.plugin.ValidateConfig(ctx, configureRequestToProto(req))
	return configAnswer("ValidateConfig", resp.GetDiagnostics(), err)
}

// configAnswer is what a call to method that sent a config block returns:
// its error as rpcError words it, or the plugin's refusal (diags, read
// from a nil answer as none) as a *ConfigError.
func configAnswer(method string, diags []*pb.Diagnostic, err error) error {
	if err != nil {
		return rpcError(method, err)
	}
	if len(diags) > 0 {
		return &ConfigError{Diagnostics: diagsFromProto(diags)}
	}
	return nil
}

// Health asks the plugin about itself. Detail is a json.RawMessage.
func (c *Client) Health(ctx context.Context) (Health, error) {
	p, err := c.plugin.Health(ctx, &pb.HealthRequest{})
	return answer("Health", p, err, func(p *pb.HealthResponse) (Health, error) {
		st, err := healthStateFromProto(p.GetState())
		if err != nil {
			return Health{}, err
		}
		h := Health{State: st, Message: p.GetMessage()}
		if len(p.GetDetailJson()) > 0 {
			h.Detail = rawDetail(p.GetDetailJson())
		}
		return h, nil
	})
}

// Metrics collects the plugin's samples.
func (c *Client) Metrics(ctx context.Context) ([]Sample, error) {
	p, err := c.plugin.CollectMetrics(ctx, &pb.CollectMetricsRequest{})
	return answer("CollectMetrics", p, err, func(p *pb.CollectMetricsResponse) ([]Sample, error) {
		return samplesFromProto(p.GetSamples())
	})
}

// Shutdown asks the plugin to release its resources before ctx's deadline.
func (c *Client) Shutdown(ctx context.Context) error {
	if _, err := c.plugin.Shutdown(ctx, &pb.ShutdownRequest{}); err != nil {
		return rpcError("Shutdown", err)
	}
	return nil
}

// Check runs a detector's check.
func (c *Client) Check(ctx context.Context, req CheckRequest) (CheckResult, error) {
	p, err := c.detector.Check(ctx, checkRequestToProto(req))
	return answer("Check", p, err, checkResultFromProto)
}

// answer is what a call to method returns: its error as rpcError words
// it, or the plugin's answer p converted by conv, an answer conv refuses
// naming method.
func answer[P, T any](method string, p P, err error, conv func(P) (T, error)) (T, error) {
	var zero T
	if err != nil {
		return zero, rpcError(method, err)
	}
	v, err := conv(p)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", method, err)
	}
	return v, nil
}

// Status asks a tuner for its last known state.
func (c *Client) Status(ctx context.Context) (TunerStatus, error) {
	p, err := c.tuner.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return TunerStatus{}, rpcError("Status", err)
	}
	return tunerStatusFromProto(p), nil
}

// ErrDeadline is wrapped by a call that ran out of time.
var ErrDeadline = errors.New("deadline exceeded")

// ErrUnimplemented is wrapped by a call the plugin does not serve (one built
// against an older SDK).
var ErrUnimplemented = errors.New("not implemented by the plugin")

// ErrUnavailable is wrapped by a call whose plugin is gone or not answering.
var ErrUnavailable = errors.New("plugin unavailable")

func rpcError(method string, err error) error {
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", method, ErrDeadline)
	case codes.Unavailable, codes.Canceled:
		return fmt.Errorf("%s: %w: %s", method, ErrUnavailable, status.Convert(err).Message())
	case codes.Unimplemented:
		return fmt.Errorf("%s: %w", method, ErrUnimplemented)
	}
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", method, st.Message())
	}
	return fmt.Errorf("%s: %w", method, err)
}
