package sdk

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"

	pb "github.com/spiderpool-agent/spiderpool-agent/sdk/proto/spiderpool/plugin/v1"
)

// This file maps the Go types of the SDK onto the protobuf messages and back.

var kindToProto = map[Kind]pb.Kind{KindDetector: pb.Kind_KIND_DETECTOR, KindTuner: pb.Kind_KIND_TUNER}

func infoToProto(i Info) *pb.PluginInfo {
	return &pb.PluginInfo{
		Name: i.Name, Kind: kindToProto[i.Kind], Version: i.Version, ApiVersion: i.APIVersion,
		Capabilities: i.Capabilities, Description: i.Description,
	}
}

// Enum values the other side sent that this side does not know are errors,
// never coerced into a known value: a newer plugin's new verdict must not
// read as something it did not say.

func infoFromProto(p *pb.PluginInfo) (Info, error) {
	kind, ok := fromProto(kindToProto, p.GetKind())
	if !ok {
		return Info{}, fmt.Errorf("the plugin reports kind %s, which is neither detector nor tuner", p.GetKind())
	}
	return Info{
		Name: p.GetName(), Kind: kind, Version: p.GetVersion(), APIVersion: p.GetApiVersion(),
		Capabilities: p.GetCapabilities(), Description: p.GetDescription(),
	}, nil
}

// fromProto finds the Go value of a protobuf enum value.
func fromProto[G comparable, P comparable](m map[G]P, v P) (G, bool) {
	for k, pv := range m {
		if pv == v {
			return k, true
		}
	}
	var zero G
	return zero, false
}

func schemaToProto(s Schema) *pb.ConfigSchema {
	out := &pb.ConfigSchema{}
	for _, a := range s.Attributes {
		out.Attributes = append(out.Attributes, &pb.Attribute{
			Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description, DefaultValue: a.Default,
		})
	}
	return out
}

func schemaFromProto(p *pb.ConfigSchema) Schema {
	var s Schema
	for _, a := range p.GetAttributes() {
		s.Attributes = append(s.Attributes, Attribute{
			Name: a.GetName(), Type: a.GetType(), Required: a.GetRequired(), Description: a.GetDescription(), Default: a.GetDefaultValue(),
		})
	}
	return s
}

func posToProto(filename string, p hcl.Pos) *pb.Position {
	return &pb.Position{Filename: filename, Line: int64(p.Line), Column: int64(p.Column), Byte: int64(p.Byte)}
}

func posFromProto(p *pb.Position) hcl.Pos {
	return hcl.Pos{Line: int(p.GetLine()), Column: int(p.GetColumn()), Byte: int(p.GetByte())}
}

func diagsToProto(diags hcl.Diagnostics) []*pb.Diagnostic {
	var out []*pb.Diagnostic
	for _, d := range diags {
		pd := &pb.Diagnostic{Summary: d.Summary, Detail: d.Detail}
		if d.Subject != nil {
			pd.Subject = posToProto(d.Subject.Filename, d.Subject.Start)
		}
		out = append(out, pd)
	}
	return out
}

func diagsFromProto(pds []*pb.Diagnostic) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, pd := range pds {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: pd.GetSummary(), Detail: pd.GetDetail()}
		if s := pd.GetSubject(); s != nil {
			pos := posFromProto(s)
			d.Subject = &hcl.Range{Filename: s.GetFilename(), Start: pos, End: pos}
		}
		out = append(out, d)
	}
	return out
}

var healthToProto = map[HealthState]pb.HealthState{
	HealthReady: pb.HealthState_HEALTH_STATE_READY, HealthDegraded: pb.HealthState_HEALTH_STATE_DEGRADED, HealthFailed: pb.HealthState_HEALTH_STATE_FAILED,
}

func healthStateFromProto(s pb.HealthState) (HealthState, error) {
	st, ok := fromProto(healthToProto, s)
	if !ok {
		return "", fmt.Errorf("the plugin reports health state %s, which is none of ready, degraded, failed", s)
	}
	return st, nil
}

var sampleTypeToProto = map[SampleType]pb.SampleType{
	Counter: pb.SampleType_SAMPLE_TYPE_COUNTER, Gauge: pb.SampleType_SAMPLE_TYPE_GAUGE, Summary: pb.SampleType_SAMPLE_TYPE_SUMMARY,
}

func samplesToProto(ss []Sample) ([]*pb.Sample, error) {
	out := make([]*pb.Sample, 0, len(ss))
	for _, s := range ss {
		t, ok := sampleTypeToProto[s.Type]
		if !ok {
			return nil, fmt.Errorf("sample %q has type %q, which is none of counter, gauge, summary", s.Name, s.Type)
		}
		out = append(out, &pb.Sample{
			Name: s.Name, Type: t, Labels: s.Labels, Value: s.Value,
			Observations: s.Observations, Help: s.Help,
		})
	}
	return out, nil
}

func samplesFromProto(ps []*pb.Sample) ([]Sample, error) {
	out := make([]Sample, 0, len(ps))
	for _, p := range ps {
		t, ok := fromProto(sampleTypeToProto, p.GetType())
		if !ok {
			return nil, fmt.Errorf("sample %q has type %s, which is none of counter, gauge, summary", p.GetName(), p.GetType())
		}
		out = append(out, Sample{
			Name: p.GetName(), Type: t, Labels: p.GetLabels(), Value: p.GetValue(),
			Observations: p.GetObservations(), Help: p.GetHelp(),
		})
	}
	return out, nil
}

func checkRequestToProto(r CheckRequest) *pb.CheckRequest {
	out := &pb.CheckRequest{Interface: r.Interface, Netns: r.Netns}
	if r.Address.IsValid() {
		out.Address = r.Address.String()
	}
	if r.Gateway.IsValid() {
		out.Gateway = r.Gateway.String()
	}
	return out
}

func checkRequestFromProto(p *pb.CheckRequest) (CheckRequest, error) {
	r := CheckRequest{Interface: p.GetInterface(), Netns: p.GetNetns()}
	if a := p.GetAddress(); a != "" {
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			return r, fmt.Errorf("address: %w", err)
		}
		r.Address = pfx
	}
	if g := p.GetGateway(); g != "" {
		gw, err := netip.ParseAddr(g)
		if err != nil {
			return r, fmt.Errorf("gateway: %w", err)
		}
		r.Gateway = gw
	}
	return r, nil
}

var verdictToProto = map[Verdict]pb.Verdict{
	VerdictPass: pb.Verdict_VERDICT_PASS, VerdictBlock: pb.Verdict_VERDICT_BLOCK,
	VerdictSkip: pb.Verdict_VERDICT_SKIP, VerdictError: pb.Verdict_VERDICT_ERROR,
}

var blockKindToProto = map[BlockKind]pb.BlockKind{
	BlockUnspecified: pb.BlockKind_BLOCK_KIND_UNSPECIFIED,
	BlockInUse:       pb.BlockKind_BLOCK_KIND_IN_USE, BlockUnreachable: pb.BlockKind_BLOCK_KIND_UNREACHABLE,
	BlockPolicy: pb.BlockKind_BLOCK_KIND_POLICY, BlockFail: pb.BlockKind_BLOCK_KIND_FAIL,
}

func checkResultToProto(r CheckResult) (*pb.CheckResponse, error) {
	v, ok := verdictToProto[r.Verdict]
	if !ok {
		return nil, fmt.Errorf("verdict %q is none of pass, block, skip, error", r.Verdict)
	}
	k, ok := blockKindToProto[r.BlockKind]
	if !ok {
		return nil, fmt.Errorf("block kind %q is none of in_use, unreachable, policy, fail", r.BlockKind)
	}
	return &pb.CheckResponse{Verdict: v, BlockKind: k, Reason: r.Reason, Evidence: r.Evidence, DurationNanos: int64(r.Duration)}, nil
}

func checkResultFromProto(p *pb.CheckResponse) (CheckResult, error) {
	verdict, ok := fromProto(verdictToProto, p.GetVerdict())
	if !ok {
		return CheckResult{}, fmt.Errorf("the detector answered verdict %s, which is none of pass, block, skip, error", p.GetVerdict())
	}
	// A plugin older than API 1.2 leaves block_kind unset: BlockUnspecified.
	kind, ok := fromProto(blockKindToProto, p.GetBlockKind())
	if !ok {
		return CheckResult{}, fmt.Errorf("the detector answered block kind %s, which is none of in_use, unreachable, policy, fail", p.GetBlockKind())
	}
	return CheckResult{Verdict: verdict, BlockKind: kind, Reason: p.GetReason(), Evidence: p.GetEvidence(), Duration: time.Duration(p.GetDurationNanos())}, nil
}

func configureRequestToProto(req ConfigureRequest) *pb.ConfigureRequest {
	return &pb.ConfigureRequest{
		Body:  req.Config.Body,
		Start: posToProto(req.Config.Filename, req.Config.Start),
		Agent: &pb.AgentSettings{EnableIpv4: req.Agent.EnableIPv4, EnableIpv6: req.Agent.EnableIPv6, LogLevel: req.Agent.LogLevel},
	}
}

func tunerStatusToProto(s TunerStatus) *pb.TunerStatus {
	out := &pb.TunerStatus{}
	if !s.LastReconcile.IsZero() {
		out.LastReconcileUnixNanos = s.LastReconcile.UnixNano()
	}
	for _, k := range s.Keys {
		pk := &pb.TunedKey{Key: k.Key, Desired: k.Desired, Actual: k.Actual, State: k.State, Previous: k.Previous, Error: k.Error}
		if !k.LastDrift.IsZero() {
			pk.LastDriftUnixNanos = k.LastDrift.UnixNano()
		}
		out.Keys = append(out.Keys, pk)
	}
	return out
}

func unixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func tunerStatusFromProto(p *pb.TunerStatus) TunerStatus {
	out := TunerStatus{LastReconcile: unixNanos(p.GetLastReconcileUnixNanos())}
	for _, k := range p.GetKeys() {
		out.Keys = append(out.Keys, TunedKey{
			Key: k.GetKey(), Desired: k.GetDesired(), Actual: k.GetActual(), State: k.GetState(),
			Previous: k.GetPrevious(), Error: k.GetError(), LastDrift: unixNanos(k.GetLastDriftUnixNanos()),
		})
	}
	return out
}

func healthDetailJSON(detail any) ([]byte, error) {
	if detail == nil {
		return nil, nil
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return nil, fmt.Errorf("health detail: %w", err)
	}
	return b, nil
}
