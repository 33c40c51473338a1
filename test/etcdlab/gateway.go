package etcdlab

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

// Gateway makes the members reachable from a network namespace's LAN: for
// each member it listens on ip (an address of the namespace at nsPath) and
// forwards every connection to the member on loopback. Only the listening
// socket lives in the namespace; the forwarding runs in the test process.
// It returns the client URLs to give agents on that LAN, in member order.
// Listeners close with t.Cleanup.
func (c *Cluster) Gateway(t testing.TB, nsPath, ip string) []string {
	t.Helper()
	var urls []string
	for _, m := range c.Members {
		var ln net.Listener
		if err := netns.Do(nsPath, func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
			return err
		}); err != nil {
			t.Fatalf("etcdlab: gateway in %s: %v", nsPath, err)
		}
		var wg sync.WaitGroup
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		wg.Add(1)
		go func() { defer wg.Done(); forward(ln, strings.TrimPrefix(m.ClientURL, "http://")) }()
		urls = append(urls, "http://"+ln.Addr().String())
	}
	return urls
}

// forward copies each connection accepted on ln to target until ln closes.
func forward(ln net.Listener, target string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			c.Close() // the member is down: the client sees a reset
			continue
		}
		mu.Lock()
		open[c], open[u] = true, true
		mu.Unlock()
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			mu.Lock()
			delete(open, dst)
			delete(open, src)
			mu.Unlock()
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}
