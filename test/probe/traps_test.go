package probe_test

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/plugins/probe"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
	"github.com/vishvananda/netns"
)

// An unusable interface is an error, never "free" or "unreachable".
func TestInterfaceUnusable(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})
	ctx := t.Context()
	both := func(t *testing.T, tg probe.Target, fragments ...string) {
		t.Helper()
		for _, a := range []string{netlab.Busy4, netlab.Free6} {
			tg.Addr = netlab.Addr(a)
			_, err := e.CheckConflict(ctx, tg, probe.Params{})
			expectErr(t, err, probe.ErrInterface, append([]string{"cannot probe " + tg.Interface}, fragments...)...)
			_, err = e.CheckGateway(ctx, tg, probe.Params{})
			expectErr(t, err, probe.ErrInterface, fragments...)
		}
	}
	t.Run("missing", func(t *testing.T) {
		both(t, probe.Target{Netns: l.Node.Path, Interface: "eth9"}, "no such interface")
	})
	t.Run("no MAC (loopback)", func(t *testing.T) {
		both(t, probe.Target{Netns: l.Node.Path, Interface: "lo"}, "no Ethernet MAC")
	})
	t.Run("down", func(t *testing.T) {
		// Open the socket first: the state must be checked per check.
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
		netlab.IP(t, l.Node.NS, "link", "set", "eth0", "down")
		both(t, on(l.Node, ""), "interface is down")
		netlab.IP(t, l.Node.NS, "link", "set", "eth0", "up")
		l.WaitReady(l.Node)
		// The same socket works again.
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	})
	t.Run("no carrier", func(t *testing.T) {
		netlab.IP(t, l.Bridge, "link", "set", l.Node.Port, "down")
		both(t, on(l.Node, ""), "no carrier")
		netlab.IP(t, l.Bridge, "link", "set", l.Node.Port, "up")
		l.WaitReady(l.Node)
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	})
	t.Run("NOARP", func(t *testing.T) {
		netlab.IP(t, l.Node.NS, "link", "set", "eth0", "arp", "off")
		both(t, on(l.Node, ""), "NOARP")
		netlab.IP(t, l.Node.NS, "link", "set", "eth0", "arp", "on")
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	})
	t.Run("replaced", func(t *testing.T) {
		opened := e.Stats().SocketsOpened
		l.Unplug(l.Node)
		both(t, on(l.Node, ""))
		l.Plug(l.Node)
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
		expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "")
		if got := e.Stats().SocketsOpened; got <= opened {
			t.Fatalf("no new socket for the new interface (opened %d, before %d)", got, opened)
		}
	})
	t.Run("replaced between checks", func(t *testing.T) {
		// CNI DEL then ADD in one namespace: the interface is deleted and
		// created again under the same name with no check in between. The
		// first check after must use the new interface, not fail on the
		// old socket.
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
		l.Unplug(l.Node)
		l.Plug(l.Node)
		expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
		expect(t, mustGateway(t, e, on(l.Node, netlab.GW6), probe.Params{}), probe.Reachable, netlab.GwMAC)
	})
}

// Our own probes come back to us through a hairpinned bridge port. They must
// be recognised (MAC, and the DAD nonce) and never count as a conflict.
func TestHairpinOwnFrames(t *testing.T) {
	t.Parallel()
	l := netlab.NewStdLAN(t)
	netlab.Run(t, "bridge", "-n", l.Bridge, "link", "set", "dev", l.Node.Port, "hairpin", "on")
	e := newEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "")
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free6), probe.Params{}), probe.Free, "")
	expect(t, mustGateway(t, e, on(l.Node, "10.0.0.99"), probe.Params{}), probe.Unreachable, "")
	// The loop really happened: 3 ARP probes, 3 DAD NS, 3 ARP requests.
	if own := e.Stats().FramesOwn; own < 9 {
		t.Fatalf("only %d own frames came back: hairpin not effective", own)
	}
	// And real owners are still seen.
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Conflict, netlab.BusyMAC)
}

// A host with arp_ignore=8 never answers ARP: the probe cannot see it. This
// documents the limit (it is "free"), after proving the host was visible.
func TestARPIgnore8Silent(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	netlab.Sysctl(t, l.Busy.NS, "net.ipv4.conf.all.arp_ignore", "8", "net.ipv4.conf.eth0.arp_ignore", "8")
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Free, "")
	if arpingAnswered(t, l.Node, netlab.Busy4) {
		t.Error("arping: a host with arp_ignore=8 answered")
	}
	// IPv6 is unaffected.
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Conflict, netlab.BusyMAC)
}

// A conflicting host that answers late but inside the window is a conflict;
// one that answers after the window is not. The delays come from a
// user-space responder (the test kernel has no sch_netem).
func TestLateResponder(t *testing.T) {
	l := netlab.NewStdLAN(t)
	late := l.AddHost("late", "02:00:00:00:00:61")
	later := l.AddHost("later", "02:00:00:00:00:62")
	lateResponder(t, late, 60*time.Millisecond, netlab.Addr("10.0.0.61"), netlab.Addr("fd00::61"))
	lateResponder(t, later, 200*time.Millisecond, netlab.Addr("10.0.0.62"), netlab.Addr("fd00::62"))
	e := newEngine(t, probe.Options{})
	for _, a := range []string{"10.0.0.61", "fd00::61"} {
		res := mustConflict(t, e, on(l.Node, a), probe.Params{})
		expect(t, res, probe.Conflict, "02:00:00:00:00:61")
		if res.RTT < 55*time.Millisecond || res.RTT > 100*time.Millisecond {
			t.Fatalf("%s: RTT %v, want ~60ms", a, res.RTT)
		}
	}
	for _, a := range []string{"10.0.0.62", "fd00::62"} {
		expect(t, mustConflict(t, e, on(l.Node, a), probe.Params{}), probe.Free, "")
		// The slow host does answer: a wider window sees it.
		res := mustConflict(t, e, on(l.Node, a), probe.Params{Window: 400 * time.Millisecond})
		expect(t, res, probe.Conflict, "02:00:00:00:00:62")
	}
}

// Busy ARP traffic (and a storm of signals interrupting syscalls) must not
// stretch the window: the deadline is absolute.
func TestBusyTrafficDeadline(t *testing.T) {
	l := netlab.NewStdLAN(t)
	e := newEngine(t, probe.Options{})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Free4), probe.Params{}), probe.Free, "") // socket open
	before := e.Stats().FramesReceived
	sent := flood(t, l.Busy)
	defer netlab.Meanwhile(func() {
		_ = syscall.Kill(syscall.Getpid(), syscall.SIGURG)
		time.Sleep(50 * time.Microsecond) // signal rate, not synchronisation
	})()
	netlab.WaitFor(t, "the flood to reach the engine", func() (bool, error) {
		return e.Stats().FramesReceived > before+1000, nil
	})
	for _, a := range []string{netlab.Free4, netlab.Free6} {
		res, err := e.CheckConflict(t.Context(), on(l.Node, a), probe.Params{})
		if errors.Is(err, probe.ErrUnproven) {
			// A reader that cannot keep up with the flood (a -race build on
			// a loaded machine) cannot prove silence: an error, which is
			// right; only a Free answer has a deadline to keep.
			t.Logf("%s under the flood: %v", a, err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		expect(t, res, probe.Free, "")
		// A deadline that each frame pushed back would never end under
		// the flood; the slack is for a loaded CI machine, not the engine.
		if res.Elapsed > 300*time.Millisecond {
			t.Fatalf("%s: a 100ms window took %v under load", a, res.Elapsed)
		}
	}
	res, err := e.CheckConflict(t.Context(), on(l.Node, netlab.Busy6), probe.Params{})
	if !errors.Is(err, probe.ErrUnproven) {
		if err != nil {
			t.Fatal(err)
		}
		expect(t, res, probe.Conflict, netlab.BusyMAC)
	}
	t.Logf("flood: %d frames sent, engine received %d", sent.Load(), e.Stats().FramesReceived-before)
}

func TestContextCancel(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var res probe.Result
	go func() {
		var err error
		res, err = e.CheckConflict(ctx, on(l.Node, netlab.Free4), probe.Params{Window: 10 * time.Second})
		done <- err
	}()
	netlab.WaitFor(t, "the first probe", func() (bool, error) { return e.Stats().ProbesSent > 0, nil })
	cancelled := time.Now()
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > 50*time.Millisecond {
		t.Fatalf("check ended %v after cancel", d)
	}
	if res.Verdict != 0 {
		t.Fatalf("cancelled check has verdict %s", res.Verdict)
	}
	// A deadline shorter than the window is an error too, not "free".
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	_, err = e.CheckGateway(ctx, on(l.Node, "10.0.0.99"), probe.Params{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
}

// Sockets are shared while used, and closed when idle.
func TestSocketSharingAndIdleClose(t *testing.T) {
	l, e := lanEngine(t, probe.Options{IdleTimeout: new(50 * time.Millisecond)})
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy6), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	expect(t, mustGateway(t, e, on(l.Node, netlab.GW4), probe.Params{}), probe.Reachable, netlab.GwMAC)
	if st := e.Stats(); st.SocketsOpened != 1 || st.SocketsOpen != 1 {
		t.Fatalf("after three checks on one interface: %+v", st)
	}
	netlab.WaitFor(t, "the idle socket to close", func() (bool, error) { return e.Stats().SocketsOpen == 0, nil })
	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	if st := e.Stats(); st.SocketsOpened != 2 {
		t.Fatalf("after reopening: %+v", st)
	}
	// IdleTimeout 0: closed as soon as unused.
	e2 := newEngine(t, probe.Options{IdleTimeout: new(time.Duration(0))})
	expect(t, mustConflict(t, e2, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)
	if st := e2.Stats(); st.SocketsOpen != 0 {
		t.Fatalf("socket kept open: %+v", st)
	}
}

// The workload namespace may be named by /var/run/netns/NAME, by
// /proc/PID/ns/net, or be the calling thread's own (Netns "").
func TestNamespacePaths(t *testing.T) {
	l, e := lanEngine(t, probe.Options{})

	expect(t, mustConflict(t, e, on(l.Node, netlab.Busy4), probe.Params{}), probe.Conflict, netlab.BusyMAC)

	// /proc/PID/ns/net of a process living in the node's namespace: the
	// same namespace, so the same socket.
	cmd := exec.Command("ip", "netns", "exec", l.Node.NS, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	procPath := "/proc/" + itoa(cmd.Process.Pid) + "/ns/net"
	netlab.WaitFor(t, "the sleeper to enter the namespace", func() (bool, error) {
		a, err := nsInode(procPath)
		if err != nil {
			return false, nil
		}
		b, err := nsInode(l.Node.Path)
		return a == b, err
	})
	tg := on(l.Node, netlab.Busy6)
	tg.Netns = procPath
	expect(t, mustConflict(t, e, tg, probe.Params{}), probe.Conflict, netlab.BusyMAC)
	if st := e.Stats(); st.SocketsOpened != 1 {
		t.Fatalf("two paths to one namespace opened %d sockets", st.SocketsOpened)
	}

	// Netns "": the calling thread's namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		target, err := netns.GetFromPath(l.Node.Path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		res, err := e.CheckConflict(context.Background(), probe.Target{Interface: "eth0", Addr: netlab.Addr(netlab.Busy4)}, probe.Params{})
		if err == nil && (res.Verdict != probe.Conflict || res.Responder.String() != netlab.BusyMAC) {
			err = errors.New("current namespace: " + res.Verdict.String() + " " + res.Responder.String())
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// From a thread inside the node's namespace, "" is that namespace:
	// same (namespace, interface), same socket.
	if st := e.Stats(); st.SocketsOpened != 1 {
		t.Fatalf("the current-namespace check opened a new socket (%d): it should share the node's", st.SocketsOpened)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
