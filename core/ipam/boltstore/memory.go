package boltstore

import (
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMap gives back the pages of the file's memory map that this
// process has touched. A walk of the whole file (Open's verify, Check)
// maps every page of it, and the process's PSS counts each mapped page of
// a file that only it maps in full: 80 MiB for a store of 100,000 history
// records, for as long as the agent runs. MADV_DONTNEED on a shared,
// read-only file mapping drops only this process's page table entries;
// the pages stay in the page cache and the next read maps the ones it
// needs again (a list of attachments maps those, not the history).
//
// It runs inside a read transaction: bbolt remaps the file (to grow it)
// only under its mmap lock, which a read transaction holds, so the range
// stays this file's map while the call runs. A failure is not an error of
// the store: the pages are then only kept.
func (s *Store) releaseMap() {
	_ = s.guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			s.releaseMapIn(tx)
			return nil
		})
	})
}

// releaseMapIn is releaseMap inside a transaction the caller holds.
func (s *Store) releaseMapIn(tx *bolt.Tx) {
	// tx.Size is the data's end, within the map (bbolt maps at least the
	// file's size).
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.db.Info().Data, uintptr(tx.Size()), unix.MADV_DONTNEED)
}

// releaseAfter is the size of a listing's values after which List
// releases the map: a listing of all attachments or of a domain's
// addresses (5,000 allocations: 1-2 MiB each, and about 10 MiB of the
// file's pages) copies what it read, so the pages it mapped are of no
// further use to it; the next read faults in the few it needs from the
// page cache. The allocation path reads single keys and keeps its pages.
const releaseAfter = 256 << 10
