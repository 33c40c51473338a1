package ipamtrust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/storetest"
	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
	"github.com/spiderpool-agent/spiderpool-agent/test/cnilab"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/spiderpool-agent/spiderpool-agent/test/poll"
)

// post sends body to path on the agent's control socket and returns the
// status and at most 64 KiB of the answer.
func post(socket, path, body string) (int, []byte, error) {
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://agent"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}

// StrictJSON: allocation bodies a lenient decoder reads as something else
// - a key given twice (which value wins?), a key in the wrong case - must
// be refused with a 400, and allocate nothing.
func StrictJSON(t testing.TB, e Env) Result {
	t.Helper()
	bodies := []struct{ name, body string }{
		{"container_id twice", `{"container_id":"dup-1","container_id":"dup-2","interface":"eth0","pools":["bulk"]}`},
		{"pools twice", `{"container_id":"dup-3","interface":"eth0","pools":["bulk"],"pools":["other"]}`},
		{"Container_ID (wrong case)", `{"Container_ID":"case-1","interface":"eth0","pools":["bulk"]}`},
		{"POOLS (wrong case)", `{"container_id":"case-2","interface":"eth0","POOLS":["bulk"]}`},
	}
	r := Result{Attack: "ambiguous JSON keys in an allocation", Tried: fmt.Sprintf("%d POST /v1/ipam/allocate bodies: %s", len(bodies), func() string {
		var n []string
		for _, b := range bodies {
			n = append(n, b.name)
		}
		return strings.Join(n, ", ")
	}())}
	a := e.start(t, opts{pools: BulkPool})
	refused := 0
	var codes []string
	for _, b := range bodies {
		code, body, err := post(a.Socket, api.AllocatePath, b.body)
		codes = append(codes, fmt.Sprint(code))
		if err != nil || code != http.StatusBadRequest {
			r.Failf("%s: %d %v %.160s", b.name, code, err, body)
			continue
		}
		refused++
	}
	list, err := a.API.List(ctx(t, 30*time.Second), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		r.Failf("%d allocations made from ambiguous bodies", len(list))
	}
	r.Did = fmt.Sprintf("refused %d of %d with 400", refused, len(bodies))
	r.Numbers = fmt.Sprintf("statuses %s; allocations made: %d", strings.Join(codes, ", "), len(list))
	return r
}

// echoBound is the most an answer to one bad value may repeat of it.
const echoBound = 1 << 10

// LongValuesCut: 10 KiB values - a container id to the control API and
// through the CNI plugin, a netns path - must not come back whole in the
// answer, nor in one of the agent's log lines.
func LongValuesCut(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "10 KiB values echoed back",
		Tried: "a container_id of 10,240 bytes to POST /v1/ipam/allocate and /v1/ipam/release, a netns of 10,240 bytes to allocate, and CNI_CONTAINERID of 10,240 bytes to the `spiderpool` CNI plugin's ADD and DEL"}
	a := e.start(t, opts{pools: BulkPool})
	long := strings.Repeat("x", 10240)
	var sizes []string
	worst := 0
	judge := func(what string, answer []byte) {
		sizes = append(sizes, fmt.Sprintf("%s: %d bytes", what, len(answer)))
		worst = max(worst, len(answer))
		if len(answer) > echoBound || bytes.Contains(answer, []byte(long)) {
			r.Failf("%s answered with %d bytes (want at most %d, the value cut)", what, len(answer), echoBound)
		}
	}
	for _, q := range []struct{ what, path, body string }{
		{"allocate, long container_id", api.AllocatePath, fmt.Sprintf(`{"container_id":%q,"interface":"eth0","pools":["bulk"]}`, long)},
		{"release, long container_id", api.ReleasePath, fmt.Sprintf(`{"container_id":%q,"interface":"eth0"}`, long)},
		{"allocate, long netns", api.AllocatePath, fmt.Sprintf(`{"container_id":"long-netns","interface":"eth0","netns":"/%s","pools":["bulk"]}`, long)},
	} {
		code, body, err := post(a.Socket, q.path, q.body)
		if err != nil {
			r.Failf("%s: %v", q.what, err)
			continue
		}
		judge(fmt.Sprintf("%s (%d)", q.what, code), body)
	}
	rt := cnilab.NewRuntime(e.CNIDir, t.TempDir(), a.NetnsPath)
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "long", "plugins": [{"type": "macvlan", "master": "eth0",
		"ipam": {"type": "spiderpool", "pools": ["bulk"], "socket": %q}}]}`, a.Socket)))
	if err != nil {
		t.Fatal(err)
	}
	w := cnilab.Attachment{ContainerID: long, Netns: "/var/run/netns/" + netlab.NewNS(t, "w"), IfName: "net1"}
	c := ctx(t, time.Minute)
	for _, cmd := range []string{"ADD", "DEL"} {
		_, err := rt.IPAM(c, list, cmd, w)
		answer := ""
		if err != nil {
			answer = err.Error()
		}
		judge("CNI "+cmd+", long CNI_CONTAINERID", []byte(answer))
	}
	longest := 0
	for _, line := range strings.Split(a.Log(), "\n") {
		longest = max(longest, len(line))
	}
	if longest > 4*echoBound {
		r.Failf("the agent logged a line of %d bytes", longest)
	}
	r.Did = fmt.Sprintf("answered with at most %d bytes", worst)
	r.Numbers = fmt.Sprintf("%s; longest log line %d bytes", strings.Join(sizes, "; "), longest)
	return r
}

// lanPools are detection pools on netlab's StdLAN: "lan" for the shared
// interface, "q" ten addresses from the busy host's on: filled, it
// quarantines netlab.Busy4 (a pool of that address alone could not: the
// quarantine may take only a share of a pool).
var lanPools = fmt.Sprintf(`
pool "lan" {
  subnet             = "10.0.0.0/24"
  ranges             = ["10.0.0.100-10.0.0.199"]
  conflict_detection = true
}
pool "q" {
  subnet             = "10.0.0.0/24"
  ranges             = ["%s-10.0.0.19"]
  conflict_detection = true
}
`, netlab.Busy4)

// SharedInterfaceAndQuarantine runs two attacks on one LAN:
//
//   - n allocations at once for n containers that share one workload
//     interface, down (as the main plugin leaves it before IPAM): the
//     allocator raises it to probe; one allocation finishing may not put
//     it down under the others ("interface is down");
//   - an allocation that meets the busy host's address: the address is
//     quarantined, and `ipam show ADDRESS` must say so, with the MAC that
//     answered.
func SharedInterfaceAndQuarantine(t testing.TB, e Env, n int) []Result {
	t.Helper()
	lan := netlab.NewStdLAN(t)
	wl := lan.AddHost("wl", "02:00:00:00:22:01")
	netlab.IP(t, wl.NS, "link", "set", "eth0", "down")
	a := e.start(t, opts{pools: lanPools})
	c := ctx(t, 2*time.Minute)

	shared := Result{Attack: "concurrent allocations on one shared interface",
		Tried: fmt.Sprintf("%d allocations at once, %d containers sharing one workload's eth0 (down), detection on (ARP, 100 ms window)", n, n)}
	_, errs := storetest.AllocateAtOnce(n, func(i int) (api.Attachment, error) {
		return a.API.Allocate(c, api.AllocateRequest{ContainerID: fmt.Sprint("share-", i), Interface: "eth0", Netns: wl.Path, Pools: []string{"lan"}})
	})
	ok, down, other := 0, 0, 0
	firstOther := ""
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "is down"):
			down++
		default:
			other++
			if firstOther == "" {
				firstOther = err.Error()
			}
		}
	}
	shared.Did = fmt.Sprintf("granted %d, \"interface is down\" %d, other errors %d", ok, down, other)
	shared.Numbers = fmt.Sprintf("%d of %d granted", ok, n)
	if firstOther != "" {
		shared.Numbers += fmt.Sprintf("; first other error: %.160q", firstOther)
	}
	if down > 0 || other > 0 {
		shared.Failf("%d allocations saw the shared interface down, %d other errors", down, other)
	}

	quar := Result{Attack: "a quarantined address shown to the operator",
		Tried: fmt.Sprintf("a pool of 10 addresses from %s on, which the busy host (%s) owns, filled by a workload on the LAN; then `ipam show %s`", netlab.Busy4, netlab.BusyMAC, netlab.Busy4)}
	up := lan.AddHost("wlq", "02:00:00:00:22:02")
	granted := 0
	var qerr error
	for i := range 10 {
		att, err := a.API.Allocate(c, api.AllocateRequest{ContainerID: fmt.Sprint("q-", i), Interface: "eth0", Netns: up.Path, Pools: []string{"q"}})
		if err != nil {
			qerr = err
			break
		}
		granted++
		if att.Addresses[0].Address.Addr().String() == netlab.Busy4 {
			quar.Failf("the busy host's address was handed out")
		}
	}
	ps, err := a.API.Pools(c)
	if err != nil {
		t.Fatal(err)
	}
	quarantined := 0
	for _, p := range ps {
		quarantined += p.Quarantined
	}
	show, code := a.cli("show", netlab.Busy4)
	quar.Did = fmt.Sprintf("granted %d, then %.160q; quarantined %d address(es); `ipam show %s` exit %d: %.300q", granted, fmt.Sprint(qerr), quarantined, netlab.Busy4, code, strings.TrimSpace(show))
	quar.Numbers = fmt.Sprintf("quarantined in the pool: %d", quarantined)
	if quarantined == 0 {
		quar.Failf("no address quarantined: the busy address was never probed, the row proves nothing")
	}
	if code != 0 || !strings.Contains(show, "quarantined") || !strings.Contains(strings.ToLower(show), strings.ToLower(netlab.BusyMAC)) {
		quar.Failf("`ipam show %s` does not show the quarantine with the MAC %s that answered", netlab.Busy4, netlab.BusyMAC)
	}
	return []Result{shared, quar}
}

// SocketDirsSwept: an agent and its plugins killed with -9 leave the
// plugins' socket directories behind; the next agent must remove them.
func SocketDirsSwept(t testing.TB, e Env) Result {
	t.Helper()
	r := Result{Attack: "plugin socket directories of a killed agent",
		Tried: "an agent with the 3 built-ins and every plugin killed with -9 (TMPDIR a directory of the row's own); the next agent started with the same TMPDIR"}
	// A short path: a unix socket path has at most 107 bytes, and
	// go-plugin puts two levels below TMPDIR.
	tmp, err := os.MkdirTemp("/tmp", "ipt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	envs := []string{"TMPDIR=" + tmp}
	doomed := agenttest.Start(t, e.Bins, agenttest.Options{Env: envs})
	doomed.WaitReady(agenttest.ReadyTimeout)
	pids, dirs := agenttest.PluginSocketDirs(doomed.PID())
	if len(dirs) == 0 {
		t.Fatalf("no plugin of agent %d has a socket directory", doomed.PID())
	}
	for _, pid := range append(pids, doomed.PID()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-doomed.Done()
	for _, pid := range pids {
		poll.Until(t, 10*time.Second, "a killed plugin to be gone", poll.Bool(func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		}))
	}
	left := func() int {
		n := 0
		for _, d := range dirs {
			if _, err := os.Lstat(d); err == nil {
				n++
			}
		}
		return n
	}
	afterKill := left()
	next := agenttest.Start(t, e.Bins, agenttest.Options{Env: envs})
	next.WaitReady(agenttest.ReadyTimeout)
	afterStart := left()
	r.Did = fmt.Sprintf("%d of %d socket directories left after the next start", afterStart, len(dirs))
	r.Numbers = fmt.Sprintf("plugins killed %d; directories after the kill %d, after the next agent's start %d", len(pids), afterKill, afterStart)
	if afterKill == 0 {
		r.Failf("the killed plugins' directories were gone before any sweep: the row proves nothing")
	}
	if afterStart != 0 {
		r.Failf("%d killed plugins' socket directories left after the next agent started", afterStart)
	}
	return r
}
