package etcdlab

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestMemberOutlivesTheThreadThatStartedIt: Start called from a goroutine
// that ends with its OS thread locked (the thread is then retired by the
// runtime, as netlab's namespace goroutines do). The member must live on:
// Pdeathsig follows the forking thread, so it has to be one the cluster
// owns.
func TestMemberOutlivesTheThreadThatStartedIt(t *testing.T) {
	got := make(chan *Cluster)
	var start func()
	start = func() {
		runtime.LockOSThread() // never unlocked: this thread exits with the goroutine
		if syscall.Gettid() == syscall.Getpid() {
			// The main thread is never retired: fork from another one
			// (this goroutine holds the main thread, so the next cannot
			// land on it).
			done := make(chan struct{})
			go func() { defer close(done); start() }()
			<-done
			return
		}
		got <- Start(t, 1)
	}
	go start()
	c := <-got
	m := c.Members[0]
	// Whether the member was killed shows within a moment of the thread's
	// exit; watch it for a bounded while, generous for a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if !m.Running() {
			t.Fatalf("the member died when the thread that forked it exited:\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.WaitHealthy(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderKill: the leader of three is found, killed, and another is
// elected.
func TestLeaderKill(t *testing.T) {
	c := Start(t, 3)
	old := c.KillLeader()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l == old || old.Running() {
		t.Fatalf("leader %s after killing %s (running %v)", l.Name, old.Name, old.Running())
	}
}
