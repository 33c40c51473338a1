package etcdlab

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a member. While
// partitioned it behaves like a cut cable, not like a refusing host: new
// connections are accepted and bytes of every connection are held, not
// delivered and not answered with a reset, so a client sees silence and
// only its own timeouts end its calls. Heal delivers what was held (TCP
// would have retransmitted it).
type Proxy struct {
	URL    string // http://127.0.0.1:port, the endpoint to give a client
	target string

	l    net.Listener
	mu   sync.Mutex
	cond *sync.Cond
	cut  bool
	done bool
	conn map[net.Conn]bool
	wg   sync.WaitGroup
}

// NewProxy starts a proxy to the member; it is closed by t.Cleanup.
func (m *Member) NewProxy(t testing.TB) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdlab: proxy: %v", err)
	}
	p := &Proxy{URL: "http://" + l.Addr().String(), target: m.ClientURL[len("http://"):], l: l, conn: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Proxies starts one proxy per member and returns them with their URLs.
func (c *Cluster) Proxies(t testing.TB) ([]*Proxy, []string) {
	var ps []*Proxy
	var urls []string
	for _, m := range c.Members {
		p := m.NewProxy(t)
		ps = append(ps, p)
		urls = append(urls, p.URL)
	}
	return ps, urls
}

// Partition cuts the proxy.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// Heal reconnects it.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	p.cond.Broadcast()
	for c := range p.conn {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		c.Close()
		return false
	}
	p.conn[c] = true
	return true
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// While cut, even the connection to the member waits: a client
			// connecting during a partition gets no byte back.
			if !p.wait() {
				in.Close()
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close() // the member is down: like the real thing, refuse
				return
			}
			if !p.track(out) {
				in.Close()
				return
			}
			var once sync.Once
			closeBoth := func() { once.Do(func() { in.Close(); out.Close() }) }
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(out, in); closeBoth() }()
			go func() { defer p.wg.Done(); p.pipe(in, out); closeBoth() }()
		}()
	}
}

// wait blocks while the proxy is cut; false when it was closed.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cut && !p.done {
		p.cond.Wait()
	}
	return !p.done
}

// pipe copies src to dst, holding every chunk while the proxy is cut.
func (p *Proxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) String() string { return fmt.Sprintf("proxy %s -> %s", p.URL, p.target) }
