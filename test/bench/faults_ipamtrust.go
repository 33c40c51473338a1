package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/ipamtrust"
)

// faultIPAMTrust runs every attack on IPAM's one promise (one holder per
// address) against the agent of -bin, each a scenario of test/ipamtrust
// that the package's Go tests run too, and prints them as one table: a
// row per attack, what was tried, what the agent did, the numbers, held.
// The Faults table gets one summary row.
func faultIPAMTrust(s *scope, b *bins, out io.Writer) []faultRow {
	cniDir := filepath.Join(b.dir, "cni-trust")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		s.Fatal(err)
	}
	copyExe(s, filepath.Join(*binDir, "cni", "spiderpool"), filepath.Join(cniDir, "spiderpool"))
	env := ipamtrust.Env{Bins: agenttest.Binaries{Dir: b.dir, Agent: b.agent, PluginDir: b.pluginDir}, CNIDir: cniDir}

	type attack struct {
		name string
		run  func(s *scope) []ipamtrust.Result
	}
	one := func(f func(*scope) ipamtrust.Result) func(*scope) []ipamtrust.Result {
		return func(s *scope) []ipamtrust.Result { return []ipamtrust.Result{f(s)} }
	}
	attacks := []attack{
		{"overlap at start", one(func(s *scope) ipamtrust.Result { return ipamtrust.OverlapAtStart(s, env) })},
		{"overlap by reload", one(func(s *scope) ipamtrust.Result { return ipamtrust.ReloadAddsOverlap(s, env) })},
		{"overlap through an old store", one(func(s *scope) ipamtrust.Result { return ipamtrust.OldStoreOverlap(s, env) })},
		{"CNI GC", func(s *scope) []ipamtrust.Result { return ipamtrust.GC(s, env) }},
		{"FIFO netns", one(func(s *scope) ipamtrust.Result { return ipamtrust.FIFONetns(s, env, ipamtrust.FIFOAllocations) })},
		{"idle connections", one(func(s *scope) ipamtrust.Result { return ipamtrust.IdleConnections(s, env, ipamtrust.IdleConns) })},
		{"truncated store", one(func(s *scope) ipamtrust.Result { return ipamtrust.TruncatedStore(s, env) })},
		{"corrupted page", one(func(s *scope) ipamtrust.Result { return ipamtrust.CorruptPage(s, env) })},
		{"backup and restore", one(func(s *scope) ipamtrust.Result { return ipamtrust.BackupUnderAllocations(s, env) })},
		{"churn", one(func(s *scope) ipamtrust.Result { return ipamtrust.Churn(s, env, ipamtrust.ChurnContainers) })},
		{"history cap", one(func(s *scope) ipamtrust.Result { return ipamtrust.HistoryCapRefused(s, env) })},
		{"strict JSON", one(func(s *scope) ipamtrust.Result { return ipamtrust.StrictJSON(s, env) })},
		{"long values", one(func(s *scope) ipamtrust.Result { return ipamtrust.LongValuesCut(s, env) })},
		{"shared interface and quarantine", func(s *scope) []ipamtrust.Result {
			return ipamtrust.SharedInterfaceAndQuarantine(s, env, ipamtrust.SharedAllocations)
		}},
		{"socket dirs", one(func(s *scope) ipamtrust.Result { return ipamtrust.SocketDirsSwept(s, env) })},
	}
	t := newTable("IPAM trust: every attack on one holder per address, against the real agent",
		"#", "attack", "tried", "what the agent did", "numbers", "held")
	n, held := 0, 0
	var failed []string
	for _, at := range attacks {
		progress("faults: ipam-trust: %s", at.name)
		var rs []ipamtrust.Result
		if err := run("ipam-trust "+at.name, func(s *scope) { rs = at.run(s) }); err != nil {
			rs = append(rs, ipamtrust.Result{Attack: at.name, Tried: "(the harness failed)", Did: err.Error(), Problems: []string{err.Error()}})
		}
		for _, r := range rs {
			n++
			numbers := r.Numbers
			if !r.Held() {
				numbers += "; **not held**: " + strings.Join(r.Problems, " / ")
				failed = append(failed, r.Attack)
			} else {
				held++
			}
			t.add(n, r.Attack, r.Tried, r.Did, numbers, map[bool]string{true: "yes", false: "**no**"}[r.Held()])
		}
	}
	t.note("%d of %d attacks held. Each row is a scenario of test/ipamtrust, which `make test` runs too (its Go tests), against the agent of -bin in network namespaces of its own; \"held\" means one holder per address stayed true and the agent answered as documented (a refusal naming what and where, bounds kept).", held, n)
	t.write(out)
	row := faultRow{fault: "IPAM trust (table above)",
		done:    fmt.Sprintf("%d attacks on one holder per address: overlapping pools, CNI GC, FIFO netns, idle connections, damaged stores, churn, ambiguous input, shared interfaces, quarantine, socket directories", n),
		did:     fmt.Sprintf("%d of %d held", held, n),
		numbers: "see the table above",
		held:    held == n,
	}
	if len(failed) > 0 {
		row.numbers += "; not held: " + strings.Join(failed, "; ")
	}
	return []faultRow{row}
}
