package ipam_test

import (
	"context"
	"testing"
	"time"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// TestReleaseSpooled: a DEL spooled before the allocation was made (the
// runtime ADDed the same container and interface again meanwhile) leaves
// it alone; one spooled after releases it; an unknown key is reported as
// such.
func TestReleaseSpooled(t *testing.T) {
	f := newFixture(t, v4)
	ctx := context.Background()
	key := AttachmentKey{ContainerID: "c1", Interface: "eth0"}
	before := *f.now.Load()
	f.advance(time.Second)
	f.allocate(t, req("c1", "lan4"))
	if what, _, err := f.m.ReleaseSpooled(ctx, key, before); err != nil || what != SpooledNewer {
		t.Fatalf("a DEL spooled before the ADD: %q %v, want %q", what, err, SpooledNewer)
	}
	if _, ok, _ := f.m.Get(ctx, key); !ok {
		t.Fatal("the newer allocation was released")
	}
	f.advance(time.Second)
	what, att, err := f.m.ReleaseSpooled(ctx, key, *f.now.Load())
	if err != nil || what != SpooledReleased || len(att.Addresses) != 1 {
		t.Fatalf("a DEL spooled after the ADD: %q %+v %v", what, att, err)
	}
	if _, ok, _ := f.m.Get(ctx, key); ok {
		t.Fatal("still allocated")
	}
	if what, _, err := f.m.ReleaseSpooled(ctx, key, *f.now.Load()); err != nil || what != SpooledUnknown {
		t.Fatalf("again: %q %v, want %q", what, err, SpooledUnknown)
	}
	assertConsistent(t, f)
}
