package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// faultEtcd: the IPAM etcd store (core/ipam/etcdstore) against real etcd
// members (test/etcdlab) - the etcd leader killed in the middle of an
// allocation burst of three clients, and etcd stopped and started under a
// live store.
func faultEtcd(s *scope) []faultRow {
	return []faultRow{faultEtcdLeaderKill(s), faultEtcdStopStart(s)}
}

func etcdStore(s *scope, endpoints []string, prefix string) *etcdstore.Store {
	st, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: endpoints, Prefix: prefix, RequestTimeout: 3 * time.Second})
	if err != nil {
		s.Fatalf("etcd store: %v", err)
	}
	s.Cleanup(func() { st.Close() })
	return st
}

func faultEtcdLeaderKill(s *scope) faultRow {
	c := etcdlab.Start(s, 3)
	b := &etcdlab.Burst{Each: 200}
	for range 3 {
		b.Stores = append(b.Stores, etcdStore(s, c.Endpoints(), "/faults/"))
	}
	killed := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		// Not KillLeader: its Fatal must not run off the scope's goroutine.
		for b.Done() < 200 {
			select {
			case <-stop:
				killed <- "(never: the burst ended first)"
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m, err := c.Leader(ctx)
		if err != nil {
			killed <- "(none found: " + err.Error() + ")"
			return
		}
		m.Kill()
		killed <- m.Name
	}()
	start := time.Now()
	err := b.Run(90 * time.Second)
	close(stop)
	el := time.Since(start)
	bad := b.Verify(b.Stores[0])
	row := faultRow{
		fault: "kill -9 the etcd leader mid-burst (IPAM etcd store)",
		done:  "3 clients x 200 allocation commits (address + attachment, create-if-absent) on a 3-member etcd; the leader killed after 200",
	}
	name := <-killed
	var errs []string
	for k, v := range b.Errs {
		errs = append(errs, fmt.Sprintf("%d %s", v, k))
	}
	if len(errs) == 0 {
		errs = []string{"no commit failed"}
	}
	sort.Strings(errs)
	row.numbers = fmt.Sprintf("600 in %v; longest wait for a success %v; %s", el.Round(time.Millisecond), b.MaxGap.Round(time.Millisecond), strings.Join(errs, ", "))
	switch {
	case err != nil:
		row.did = "a writer failed: " + err.Error()
	case len(bad) > 0:
		row.did = fmt.Sprintf("%d inconsistencies, first: %s", len(bad), bad[0])
	case strings.HasPrefix(name, "("):
		row.did = "the leader was not killed " + name
	default:
		row.did = fmt.Sprintf("leader %s killed; commits resumed after the election; read back: none lost, no address twice, address and attachment keys agree", name)
		row.held = true
	}
	return row
}

func faultEtcdStopStart(s *scope) faultRow {
	c := etcdlab.Start(s, 1)
	st := etcdStore(s, c.Endpoints(), "/faults-stop/")
	ctx := context.Background()
	row := faultRow{fault: "etcd stopped and started (IPAM etcd store)", done: "SIGTERM the only member under a live store; 20 commits while down; start it again"}
	if _, err := st.Commit(ctx, nil, []ipam.Op{{Key: "before", Value: []byte("1")}}); err != nil {
		row.did = "no commit before the fault: " + err.Error()
		return row
	}
	c.Members[0].Stop()
	// The first calls may wait for the connection to notice; then every
	// call must fail at once.
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = st.Commit(ctx, nil, []ipam.Op{{Key: "during", Value: []byte("x")}}); errors.Is(err, etcdstore.ErrUnavailable) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lat sample
	var wrong int
	for range 20 {
		t0 := time.Now()
		_, err = st.Commit(ctx, nil, []ipam.Op{{Key: "during", Value: []byte("x")}})
		lat = append(lat, time.Since(t0))
		if !errors.Is(err, etcdstore.ErrUnavailable) {
			wrong++
		}
	}
	c.Members[0].Restart()
	t0 := time.Now()
	back := time.Duration(-1)
	for time.Since(t0) < 30*time.Second {
		if _, err := st.Commit(ctx, nil, []ipam.Op{{Key: "after", Value: []byte("2")}}); err == nil {
			back = time.Since(t0)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e, gerr := st.Get(ctx, "during")
	row.numbers = fmt.Sprintf("while down: p50 %s ms, max %s ms per failed commit; back %v after the start (member start included)", ms(lat.p50()), ms(lat.max()), back.Round(time.Millisecond))
	switch {
	case wrong > 0:
		row.did = fmt.Sprintf("%d of 20 commits while down did not fail as unavailable; last: %v", wrong, err)
	case back < 0:
		row.did = "the store did not work again within 30 s of the start"
	case gerr != nil || e.Revision != 0:
		row.did = fmt.Sprintf("a commit that failed as unavailable was applied (%v)", gerr)
	default:
		row.did = fmt.Sprintf("failed fast with %q; the same store worked again without a restart; nothing written while down", shortErr(err))
		row.held = true
	}
	return row
}

func shortErr(err error) string {
	if err == nil {
		return ""
	}
	m := err.Error()
	if i := strings.Index(m, "etcd unreachable"); i >= 0 {
		return m[i:]
	}
	return m
}
