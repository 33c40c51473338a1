package ipam

import "sync"

// walkHint remembers, per pool, the addresses this allocator's candidate
// walks read as taken (a record allocated, reserved or in quarantine), so
// that the next walk goes past them without reading the store again: from
// an allocation's hash, a walk in a pool 95% full read about 90 address
// records per allocate+release, 7 in an empty pool. An address a walk
// picks is not marked (its allocation may still fail); the next walk that
// reads it taken marks it. It is a hint and nothing more: every candidate
// a walk offers is still claimed, read and committed under compare as
// before; a release by this allocator clears its addresses; and a walk that
// finds nothing while skipping walks again reading every address before it
// calls the pool full, so an address freed behind this allocator's back
// (another node's release on a shared store, a quarantine that ended) is
// passed over until the pool is otherwise full, and costs at most that
// second walk.
type walkHint struct {
	mu    sync.Mutex
	pools map[string]*hintBits
}

type hintBits struct {
	size int
	bits []uint64
}

// bitsOf returns pool's bits for a pool of size addresses; a pool whose
// size changed (a reload) starts afresh. Call with mu held.
func (h *walkHint) bitsOf(pool string, size int) *hintBits {
	if h.pools == nil {
		h.pools = map[string]*hintBits{}
	}
	b := h.pools[pool]
	if b == nil || b.size != size {
		b = &hintBits{size: size, bits: make([]uint64, (size+63)/64)}
		h.pools[pool] = b
	}
	return b
}

// taken reports whether address i of pool (of size addresses) was last
// seen taken.
func (h *walkHint) taken(pool string, size, i int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.bitsOf(pool, size)
	return b.bits[i/64]&(1<<(i%64)) != 0
}

// mark records address i of pool as taken or not.
func (h *walkHint) mark(pool string, size, i int, taken bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.bitsOf(pool, size)
	if taken {
		b.bits[i/64] |= 1 << (i % 64)
	} else {
		b.bits[i/64] &^= 1 << (i % 64)
	}
}
