// Package storefault damages IPAM store files the way disks and operators
// do, for tests and the fault table: a file emptied or truncated, and a
// page of a bucket overwritten with random bytes.
package storefault

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket is the boltstore bucket that holds IPAM's records.
const Bucket = "kv"

// CorruptBucketPage overwrites the root page of bucket in the bbolt file at
// path (which no process may hold open) with random bytes from seed, and
// returns the page's id.
func CorruptBucketPage(path, bucket string, seed uint64) (uint64, error) {
	pgid, pageSize, err := BucketPage(path, bucket)
	if err != nil {
		return 0, err
	}
	return pgid, Overwrite(path, int64(pgid)*int64(pageSize), pageSize, seed)
}

// BucketPage finds the root page of bucket through bbolt itself: its page
// id, and the file's page size (the page is at pgid * pageSize).
func BucketPage(path, bucket string) (pgid uint64, pageSize int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, 0, err
	}
	pageSize = db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no bucket %q", bucket)
		}
		pgid = uint64(b.Root())
		if pgid == 0 {
			return fmt.Errorf("bucket %q is inline (too small to have a page): put more in it", bucket)
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return pgid, pageSize, err
}

// TruncateInUse cuts the bbolt file at path (which no process may hold
// open) to half the pages its header counts as in use. Half the file's
// length would not do: bbolt grows a file ahead of its use, and how far
// depends on how commits were batched, so the second half can be unused
// space whose loss damages nothing.
func TruncateInUse(path string) (size int64, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	pageSize := int64(db.Info().PageSize)
	err = db.View(func(tx *bolt.Tx) error {
		size = tx.Size() / 2 / pageSize * pageSize
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if size < 4*pageSize {
		return 0, fmt.Errorf("%s uses too few pages to truncate inside them (%d bytes): put more in it", path, 2*size)
	}
	return size, os.Truncate(path, size)
}

// Overwrite writes n random bytes (from seed) at offset of the file.
func Overwrite(path string, offset int64, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = byte(r.UintN(256))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(junk, offset); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
