package etcdlab

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
)

// Burst is a set of writers allocating "addresses" (keys addr/<n>) from a
// shared space the way IPAM does: one commit creates the address key and
// the writer's attachment key together, both create-if-absent. A writer
// retries an error that is not a lost race on the same address; a lost
// race after an error whose outcome was unknown is resolved by reading the
// address back. Acked is what every writer believes it holds; Verify reads
// the store back. It is shared by the fault tests and `make faults`.
type Burst struct {
	Stores []ipam.Store
	Each   int // allocations per writer

	mu     sync.Mutex
	Acked  map[string]string // attachment -> address
	Errs   map[string]int    // error class -> count
	MaxGap time.Duration     // longest a writer went without a success
	done   atomic.Int64
}

// Done is how many allocations have been acknowledged so far.
func (b *Burst) Done() int64 { return b.done.Load() }

// Run runs the writers until each has Each allocations or deadline passed;
// it returns the first error that is neither a lost race, nor etcd
// unreachable, nor an unknown outcome.
func (b *Burst) Run(deadline time.Duration) error {
	b.Acked, b.Errs = map[string]string{}, map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(b.Stores))
	for w, s := range b.Stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.writer(ctx, w, s); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func (b *Burst) writer(ctx context.Context, w int, s ipam.Store) error {
	next := w * 50 // overlapping walks: the writers race
	lastOK := time.Now()
	for seq := range b.Each {
		att := fmt.Sprintf("att/%d-%d", w, seq)
		for {
			if ctx.Err() != nil {
				return fmt.Errorf("writer %d: %d of %d allocations when the deadline passed", w, seq, b.Each)
			}
			addr := fmt.Sprintf("addr/%05d", next)
			_, err := s.Commit(ctx, []ipam.Cond{{Key: addr}, {Key: att}}, []ipam.Op{{Key: addr, Value: []byte(att)}, {Key: att, Value: []byte(addr)}})
			if err == nil {
				b.ack(att, addr, &lastOK)
				break
			}
			if errors.Is(err, ipam.ErrCompareFailed) {
				// Ours from an earlier attempt whose answer was lost?
				e, gerr := s.Get(ctx, addr)
				if gerr == nil && string(e.Value) == att {
					b.ack(att, addr, &lastOK)
					b.count("unknown outcome that had been applied")
					break
				}
				next++
				continue
			}
			switch {
			case errors.Is(err, etcdstore.ErrUnavailable):
				b.count("unavailable (not sent)")
			case errors.Is(err, etcdstore.ErrOutcomeUnknown):
				b.count("outcome unknown")
			default:
				return fmt.Errorf("writer %d: an error that is neither unavailable nor outcome-unknown: %w", w, err)
			}
			time.Sleep(20 * time.Millisecond) // pace retries while etcd recovers
		}
	}
	return nil
}

func (b *Burst) ack(att, addr string, lastOK *time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Acked[att] = addr
	if g := time.Since(*lastOK); g > b.MaxGap {
		b.MaxGap = g
	}
	*lastOK = time.Now()
	b.done.Add(1)
}

func (b *Burst) count(class string) {
	b.mu.Lock()
	b.Errs[class]++
	b.mu.Unlock()
}

// Verify reads the store back and returns every inconsistency: an
// acknowledged allocation missing (lost), an address with two holders
// (duplicate), address and attachment keys that disagree (half written).
func (b *Burst) Verify(s ipam.Store) []string {
	ctx := context.Background()
	var bad []string
	addrs, err := s.List(ctx, "addr/")
	if err != nil {
		return []string{err.Error()}
	}
	atts, err := s.List(ctx, "att/")
	if err != nil {
		return []string{err.Error()}
	}
	holder := map[string]string{}
	for _, e := range addrs {
		holder[e.Key] = string(e.Value)
	}
	seen := map[string]string{}
	for _, e := range atts {
		addr := string(e.Value)
		if holder[addr] != e.Key {
			bad = append(bad, fmt.Sprintf("%s says %s, but %s is held by %q", e.Key, addr, addr, holder[addr]))
		}
		if other, dup := seen[addr]; dup {
			bad = append(bad, fmt.Sprintf("duplicate: %s given to %s and %s", addr, other, e.Key))
		}
		seen[addr] = e.Key
	}
	if len(addrs) != len(atts) {
		bad = append(bad, fmt.Sprintf("%d address keys but %d attachments: a half-written allocation", len(addrs), len(atts)))
	}
	for att, addr := range b.Acked {
		if holder[addr] != att {
			bad = append(bad, fmt.Sprintf("lost: %s was acknowledged with %s, which now holds %q", att, addr, holder[addr]))
		}
	}
	if want := len(b.Stores) * b.Each; len(b.Acked) != want || len(atts) != want {
		bad = append(bad, fmt.Sprintf("%d acknowledged, %d attachments read back, want %d", len(b.Acked), len(atts), want))
	}
	return bad
}
