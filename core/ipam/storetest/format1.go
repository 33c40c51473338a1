package storetest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// PerPoolHolder is what an agent of the per-pool layout (store format 1)
// committed for container cid's eth0 holding addr of pool on node: the
// address record under pools/POOL/addrs/ADDR and the attachment. The
// tests of the move to per-domain keys (bbolt, etcd, the agent) start
// from it.
func PerPoolHolder(pool string, addr netip.Addr, cid, node string) []ipam.Op {
	owner := ipam.AttachmentKey{ContainerID: cid, Interface: "eth0"}
	rec, _ := json.Marshal(ipam.AddressRecord{Pool: pool, Address: addr, State: ipam.StateAllocated, Owner: owner, Node: node})
	att, _ := json.Marshal(ipam.Attachment{AttachmentKey: owner, Node: node, State: ipam.StateAllocated, Workload: cid,
		Addresses: []ipam.AllocatedIP{{Pool: pool, Address: netip.PrefixFrom(addr, 24)}}})
	return []ipam.Op{
		{Key: "pools/" + pool + "/addrs/" + addr.String(), Value: rec},
		{Key: "attachments/" + cid + "/eth0", Value: att},
	}
}

// WriteFormat1 writes, with bbolt itself, a new store file at path as an
// agent of the per-pool layout (format 1) left it: commit i's values at
// revision i+1 (a value is the big-endian revision, then the record), the
// store's revision the last one. A format 1 file keeps no lease: an
// op's TTL is not written.
func WriteFormat1(path string, commits ...[]ipam.Op) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("format 1 file %s: %w", path, err)
	}
	defer db.Close()
	u64 := func(v uint64) []byte { b := make([]byte, 8); binary.BigEndian.PutUint64(b, v); return b }
	err = db.Update(func(tx *bolt.Tx) error {
		kv, err := tx.CreateBucket([]byte("kv"))
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		rev := uint64(0)
		for _, ops := range commits {
			rev++
			for _, op := range ops {
				if err := kv.Put([]byte(op.Key), append(u64(rev), op.Value...)); err != nil {
					return err
				}
			}
		}
		if err := meta.Put([]byte("revision"), u64(rev)); err != nil {
			return err
		}
		return meta.Put([]byte("format"), u64(1))
	})
	if err != nil {
		return fmt.Errorf("format 1 file %s: %w", path, err)
	}
	return nil
}
