package ipamtrust

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
)

// env is the agent and the CNI plugin of this checkout, built once.
var env Env

func TestMain(m *testing.M) {
	os.Exit(agenttest.MainWith(m, &env.Bins, func(b agenttest.Binaries) (func(), error) {
		env.CNIDir = filepath.Join(b.Dir, "cni")
		return nil, cnilab.BuildSpiderpool(env.CNIDir, agenttest.Race())
	}))
}

// Every attack of `make faults`' ipam-trust section, at the section's
// sizes: each must hold.

func TestOverlapAtStart(t *testing.T)         { Check(t, OverlapAtStart(t, env)) }
func TestReloadAddsOverlap(t *testing.T)      { Check(t, ReloadAddsOverlap(t, env)) }
func TestOldStoreOverlap(t *testing.T)        { Check(t, OldStoreOverlap(t, env)) }
func TestFIFONetns(t *testing.T)              { Check(t, FIFONetns(t, env, FIFOAllocations)) }
func TestIdleConnections(t *testing.T)        { Check(t, IdleConnections(t, env, IdleConns)) }
func TestTruncatedStore(t *testing.T)         { Check(t, TruncatedStore(t, env)) }
func TestCorruptPage(t *testing.T)            { Check(t, CorruptPage(t, env)) }
func TestBackupUnderAllocations(t *testing.T) { Check(t, BackupUnderAllocations(t, env)) }
func TestChurn(t *testing.T)                  { Check(t, Churn(t, env, ChurnContainers)) }
func TestHistoryCapRefused(t *testing.T)      { Check(t, HistoryCapRefused(t, env)) }
func TestStrictJSON(t *testing.T)             { Check(t, StrictJSON(t, env)) }
func TestLongValuesCut(t *testing.T)          { Check(t, LongValuesCut(t, env)) }
func TestSocketDirsSwept(t *testing.T)        { Check(t, SocketDirsSwept(t, env)) }

func TestGC(t *testing.T) {
	for _, r := range GC(t, env) {
		Check(t, r)
	}
}

func TestSharedInterfaceAndQuarantine(t *testing.T) {
	for _, r := range SharedInterfaceAndQuarantine(t, env, SharedAllocations) {
		Check(t, r)
	}
}
