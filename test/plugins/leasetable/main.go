// Command leasetable is a third-party detector built from the SDK alone,
// for the tests of what a block's kind makes IPAM do: it stands for a
// vendor's lease table or CMDB. At every Check it reads its table, a text
// file named by its config block (file = "PATH"), one entry a line:
//
//	ADDRESS KIND
//
// KIND is a block kind (in_use, unreachable, policy, fail) or "none": a
// block with no kind, as a plugin built before API 1.2 sends. An address
// in the table is blocked with that kind; any other passes. Blank lines
// and lines starting with # are ignored. The table is read afresh at each
// Check, so a test changes the answers by rewriting the file, without a
// reload; it is bounded to maxTable bytes.
package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// maxTable bounds the table read at each Check.
const maxTable = 1 << 20

type config struct {
	File string `hcl:"file" help:"the lease table: one \"ADDRESS KIND\" a line"`
}

// Detector blocks the addresses of its table with their kinds.
type Detector struct {
	sdk.Configured[config]
}

var (
	_ sdk.Detector  = (*Detector)(nil)
	_ sdk.Validator = (*Detector)(nil)
)

func newDetector() *Detector {
	return &Detector{Configured: sdk.Configured[config]{Check: checkConfig}}
}

// Info implements sdk.Plugin.
func (*Detector) Info() sdk.Info {
	return sdk.Info{Name: "lease-table", Kind: sdk.KindDetector, Version: "0.0.1", APIVersion: sdk.APIVersion,
		Description: "blocks the addresses of a table file, each with its block kind (a test plugin)"}
}

// checkConfig refuses a relative table path, at its position.
func checkConfig(raw sdk.RawConfig, c *config) error {
	if !strings.HasPrefix(c.File, "/") {
		return raw.AttrError("file", fmt.Sprintf("%q is not an absolute path", c.File))
	}
	return nil
}

// Check implements sdk.Detector.
func (d *Detector) Check(_ context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
	file := d.Config().File
	table, err := readTable(file)
	if err != nil {
		return sdk.CheckResult{}, err
	}
	addr := req.Address.Addr()
	kind, ok := table[addr]
	if !ok {
		return sdk.CheckResult{Verdict: sdk.VerdictPass, Reason: fmt.Sprintf("%s is not in %s", addr, file)}, nil
	}
	return sdk.CheckResult{Verdict: sdk.VerdictBlock, BlockKind: kind, Reason: fmt.Sprintf("%s is listed in %s", addr, file)}, nil
}

func readTable(file string) (map[netip.Addr]sdk.BlockKind, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("lease table: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTable+1))
	if err != nil {
		return nil, fmt.Errorf("lease table %s: %w", file, err)
	}
	if len(b) > maxTable {
		return nil, fmt.Errorf("lease table %s is larger than %d bytes", file, maxTable)
	}
	table := map[netip.Addr]sdk.BlockKind{}
	for i, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"ADDRESS KIND\"", file, i+1)
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, i+1, err)
		}
		kind := sdk.BlockKind(fields[1])
		switch {
		case kind == "none":
			kind = sdk.BlockUnspecified
		case !slices.Contains(sdk.BlockKinds, kind):
			return nil, fmt.Errorf("%s:%d: kind %q is none of in_use, unreachable, policy, fail, none", file, i+1, kind)
		}
		table[addr] = kind
	}
	return table, nil
}

func main() {
	sdk.Serve(func(hclog.Logger) sdk.Plugin { return newDetector() })
}
