package sdk

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/spiderpool-agent/spiderpool-agent/sdk/proto/spiderpool/plugin/v1"
)

// kindPlugin blocks with the kind the test sets.
type kindPlugin struct {
	shimPlugin
	kind BlockKind
}

func (p *kindPlugin) Check(context.Context, CheckRequest) (CheckResult, error) {
	return CheckResult{Verdict: VerdictBlock, BlockKind: p.kind, Reason: "r"}, nil
}

func TestBlockKindRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, kind := range append([]BlockKind{BlockUnspecified}, BlockKinds...) {
		c := connect(t, &kindPlugin{kind: kind})
		res, err := c.Check(ctx, CheckRequest{})
		if err != nil || res.Verdict != VerdictBlock || res.BlockKind != kind {
			t.Errorf("Check blocking with kind %q = %+v, %v", kind, res, err)
		}
	}
	// A kind the SDK does not define is the plugin's error, never sent as
	// something it did not say.
	c := connect(t, &kindPlugin{kind: "busy"})
	if _, err := c.Check(ctx, CheckRequest{}); err == nil || !strings.Contains(err.Error(), `block kind "busy" is none of`) {
		t.Errorf("Check(unknown block kind) = %v", err)
	}
}

// rawDetector answers Check with a fixed protobuf message, as a plugin
// built against another version of the protocol does.
type rawDetector struct {
	pb.UnimplementedDetectorServer
	resp *pb.CheckResponse
}

func (d rawDetector) Check(context.Context, *pb.CheckRequest) (*pb.CheckResponse, error) {
	return d.resp, nil
}

func rawCheck(t *testing.T, resp *pb.CheckResponse) (CheckResult, error) {
	t.Helper()
	conn, _ := plugin.TestGRPCConn(t, func(s *grpc.Server) {
		pb.RegisterPluginServer(s, liar{})
		pb.RegisterDetectorServer(s, rawDetector{resp: resp})
	})
	t.Cleanup(func() { conn.Close() })
	raw, err := (&GRPCPlugin{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client).Check(context.Background(), CheckRequest{})
}

// A plugin built before API 1.2 sends no block_kind: its block arrives as
// BlockUnspecified, which the agent takes as BlockFail.
func TestBlockKindOfAnOlderPlugin(t *testing.T) {
	res, err := rawCheck(t, &pb.CheckResponse{Verdict: pb.Verdict_VERDICT_BLOCK, Reason: "old"})
	if err != nil || res.Verdict != VerdictBlock || res.BlockKind != BlockUnspecified {
		t.Errorf("an API 1.1 block = %+v, %v; want a block with BlockUnspecified", res, err)
	}
	if _, err := rawCheck(t, &pb.CheckResponse{Verdict: pb.Verdict_VERDICT_BLOCK, BlockKind: pb.BlockKind(9)}); err == nil || !strings.Contains(err.Error(), "block kind 9") {
		t.Errorf("Check(block kind 9) = %v", err)
	}
}
