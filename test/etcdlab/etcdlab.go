// Package etcdlab runs real etcd servers for tests: Debian's `etcd` binary
// (package etcd-server), one member or a cluster, on loopback with free
// ports and data directories under the test's TempDir. It can kill -9 a
// member, find and kill the leader, stop and start a member, and put a TCP
// proxy between a client and the cluster that the test can partition.
//
// Everything is removed by t.Cleanup; a missing etcd binary fails the test
// (it never skips): install etcd-server.
package etcdlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/test/agenttest"
)

// Binary is the etcd server run by the tests.
var Binary = "etcd"

// StartTimeout bounds the wait for a cluster to be healthy; generous for a
// loaded 2-core machine.
const StartTimeout = 30 * time.Second

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string
	DataDir   string

	c   *Cluster
	mu  sync.Mutex
	cmd *exec.Cmd
	out *agenttest.SyncBuffer
	// exited is closed when the running process has been reaped.
	exited chan struct{}
}

// Cluster is a set of members started together.
type Cluster struct {
	t       testing.TB
	Members []*Member
	initial string // --initial-cluster
	token   string
	spawn   *spawner
	// stopAll runs twice when a start attempt fails after its cleanup was
	// registered; the spawner closes once.
	spawnOnce sync.Once
}

// spawner forks the members from one OS thread that it keeps locked for
// the cluster's life. Pdeathsig fires when the forking *thread* exits, not
// the process: a member forked from an ordinary goroutine's thread would be
// killed whenever the Go runtime retired that thread (it does, when a
// goroutine that locked it - netlab's namespace work - ends locked).
type spawner struct{ req chan func() }

func newSpawner() *spawner {
	sp := &spawner{req: make(chan func())}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		for f := range sp.req {
			f()
		}
	}()
	return sp
}

func (sp *spawner) do(f func()) {
	done := make(chan struct{})
	sp.req <- func() { f(); close(done) }
	<-done
}

// close ends the thread; members still running get SIGKILL from Pdeathsig.
func (sp *spawner) close() { close(sp.req) }

// Start starts an n-member cluster and waits until it has a leader.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		t.Fatalf("etcdlab: %s not found (apt-get install etcd-server): %v", Binary, err)
	}
	var lastErr error
	// Free ports are picked by binding :0 and closing, so another process
	// can take one before etcd binds it: try again with new ports.
	for attempt := 0; attempt < 3; attempt++ {
		c, err := tryStart(t, n)
		if err == nil {
			return c
		}
		lastErr = err
	}
	t.Fatalf("etcdlab: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, n int) (*Cluster, error) {
	dir := t.TempDir()
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{t: t, token: fmt.Sprintf("etcdlab-%d-%d", os.Getpid(), time.Now().UnixNano()), spawn: newSpawner()}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			DataDir:   filepath.Join(dir, fmt.Sprintf("m%d", i)),
			c:         c,
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			c.stopAll()
			return nil, err
		}
	}
	t.Cleanup(c.stopAll)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		logs := c.Logs()
		c.stopAll()
		return nil, fmt.Errorf("%w\n%s", err, logs)
	}
	return c, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("member %s is already running", m.Name)
	}
	args := []string{
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", m.c.initial,
		"--initial-cluster-token", m.c.token,
		"--initial-cluster-state", "new", // ignored once the data dir exists
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		// etcd's defaults (100 ms heartbeat, 1 s election): shorter ones
		// cause spurious elections on a loaded 2-core machine.
		"--heartbeat-interval", "100", "--election-timeout", "1000",
		"--quota-backend-bytes", fmt.Sprint(256 << 20),
	}
	cmd := exec.Command(Binary, args...)
	// Only our flags: an ETCD_* variable of the environment would change
	// the member behind the test's back.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if m.out == nil {
		m.out = &agenttest.SyncBuffer{Max: 1 << 20}
	}
	cmd.Stdout, cmd.Stderr = m.out, m.out
	// The member dies with the test binary even on kill -9 of the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	m.c.spawn.do(func() { err = cmd.Start() })
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	m.cmd = cmd
	exited := make(chan struct{})
	m.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	return nil
}

// Pid is the running process's pid, 0 when stopped.
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Running reports whether the member's process is running.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// signal sends sig and waits for the process to be gone.
func (m *Member) signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Kill kills the member with SIGKILL (no chance to flush or step down).
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Stop stops the member with SIGTERM (a leader transfers leadership first).
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

// Restart starts a stopped or killed member again on its data directory
// and ports.
func (m *Member) Restart() {
	m.c.t.Helper()
	if err := m.start(); err != nil {
		m.c.t.Fatalf("etcdlab: %v", err)
	}
}

// Logs is what the member printed.
func (m *Member) Logs() string {
	if m.out == nil {
		return ""
	}
	return m.out.String()
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members {
		m.Kill()
	}
	c.spawnOnce.Do(c.spawn.close)
}

// Logs of every member, for a failure message.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, m := range c.Members {
		fmt.Fprintf(&b, "--- etcd member %s ---\n%s", m.Name, tail(m.Logs(), 4000))
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Endpoints are the client URLs of all members.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// health asks a member's /health: true when it has a leader and can serve.
func health(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return json.Unmarshal(b, &h) == nil && h.Health == "true"
}

// WaitHealthy waits until every running member reports healthy.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for {
		ok := true
		for _, m := range c.Members {
			if m.Running() && !health(ctx, m.ClientURL) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		for _, m := range c.Members {
			if m.Pid() != 0 && !m.Running() {
				return fmt.Errorf("etcd member %s exited", m.Name)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster not healthy: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// memberStatus is the part of etcd's /v3/maintenance/status answer (the
// gRPC gateway, JSON) that names the leader.
type memberStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string `json:"leader"`
}

func status(ctx context.Context, url string) (memberStatus, error) {
	var st memberStatus
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v3/maintenance/status", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("status of %s: %w: %s", url, err, b)
	}
	return st, nil
}

// Leader returns the member that leads now, waiting for one (and for the
// members to agree) until ctx ends.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	for {
		ids := map[string]*Member{}
		leaders := map[string]bool{}
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			st, err := status(ctx, m.ClientURL)
			if err != nil || st.Leader == "" || st.Leader == "0" {
				continue
			}
			ids[st.Header.MemberID] = m
			leaders[st.Leader] = true
		}
		if len(leaders) == 1 {
			for l := range leaders {
				if m := ids[l]; m != nil {
					return m, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no agreed etcd leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KillLeader kills -9 the current leader and returns it.
func (c *Cluster) KillLeader() *Member {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	m, err := c.Leader(ctx)
	if err != nil {
		c.t.Fatalf("etcdlab: %v\n%s", err, c.Logs())
	}
	m.Kill()
	return m
}

// Version is the etcd server's version ("3.4.23"), or "?".
func Version() string {
	out, err := exec.Command(Binary, "--version").Output()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd Version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
