package storetest

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// AllocateAtOnce runs alloc(0) ... alloc(n-1) at the same time, each on
// its own goroutine, and returns what each got: its attachment's first
// address, or an error. Allocations at once are what the store's compares
// must keep apart, in the IPAM's tests and through the agent alike.
func AllocateAtOnce(n int, alloc func(i int) (ipam.Attachment, error)) ([]netip.Addr, []error) {
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			att, err := alloc(i)
			switch {
			case err != nil:
				errs[i] = err
			case len(att.Addresses) == 0:
				errs[i] = fmt.Errorf("allocation %d: an attachment without addresses: %+v", i, att)
			default:
				got[i] = att.Addresses[0].Address.Addr()
			}
		})
	}
	wg.Wait()
	return got, errs
}

// NoneTwice fails t for each address of got that two allocations hold,
// naming both with name(i); a zero address (an allocation that failed) is
// skipped.
func NoneTwice(t testing.TB, got []netip.Addr, name func(i int) string) {
	t.Helper()
	seen := map[netip.Addr]int{}
	for i, a := range got {
		if !a.IsValid() {
			continue
		}
		if j, dup := seen[a]; dup {
			t.Errorf("%s given to %s and %s", a, name(j), name(i))
		}
		seen[a] = i
	}
}
