package etcdstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pool definitions stay in each node's HCL; the store keeps, per pool, the
// hash of the definition the first node brought and its canonical text:
//
//	pools/<pool>/hash   PoolHashRecord
//
// A node whose definition differs refuses the pool: two nodes handing out
// one pool with different ranges or gateways would give workloads
// addresses the others think are outside the pool, or the wrong gateway.

// ErrPoolDefinitionDiffers is wrapped by PoolHash when the store holds
// another definition of the pool.
var ErrPoolDefinitionDiffers = errors.New("pool definition differs from the one in the store")

// PoolHashRecord is the value of pools/<pool>/hash.
type PoolHashRecord struct {
	Hash       string    `json:"hash"` // sha256:<hex> of Definition
	Node       string    `json:"node"` // the node that wrote it
	Definition string    `json:"definition"`
	At         time.Time `json:"at"`
}

// PoolMismatchError says which node recorded the other definition and
// which lines differ.
type PoolMismatchError struct {
	Pool       string
	Node       string // the node that recorded the stored definition
	Stored     string // its hash
	Ours       string
	OnlyStored []string // lines of the stored definition that ours lacks
	OnlyOurs   []string // lines of ours that the stored one lacks
	RecordedAt time.Time
}

func (e *PoolMismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool %q: this node's definition (%s) differs from the one node %q recorded at %s (%s)",
		e.Pool, short(e.Ours), e.Node, e.RecordedAt.UTC().Format(time.RFC3339), short(e.Stored))
	if len(e.OnlyStored)+len(e.OnlyOurs) > 0 {
		b.WriteString(":")
		for _, l := range e.OnlyStored {
			fmt.Fprintf(&b, " node %q has %q;", e.Node, l)
		}
		for _, l := range e.OnlyOurs {
			fmt.Fprintf(&b, " this node has %q;", l)
		}
	}
	b.WriteString(" the pool is refused on this node until the definitions agree (after changing it on every node, record the new one with SetPoolHash)")
	return b.String()
}

func (e *PoolMismatchError) Unwrap() error { return ErrPoolDefinitionDiffers }

func short(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}

func poolHashKey(pool string) string { return "pools/" + url.PathEscape(pool) + "/hash" }

// HashDefinition is the hash PoolHash records for a canonical definition.
func HashDefinition(def string) string {
	sum := sha256.Sum256([]byte(def))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CanonicalDefinition renders fields (name -> value) as sorted
// "name = value" lines: the same definition gives the same text and hash
// on every node whatever the order of its HCL, and a difference shows as
// the lines that differ.
func CanonicalDefinition(fields map[string]string) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s = %s\n", n, fields[n])
	}
	return b.String()
}

// PoolHash checks node's canonical definition of pool against the store:
// the first node to bring the pool records it (in one transaction that
// cannot overwrite another node's record); a node bringing the same
// definition passes; a different one gets a *PoolMismatchError (wrapping
// ErrPoolDefinitionDiffers) naming the node that recorded the stored
// definition and the lines that differ.
func (s *Store) PoolHash(ctx context.Context, pool, node, def string) error {
	what := "pool " + pool + " definition"
	cctx, cancel, err := s.call(ctx, what)
	if err != nil {
		return err
	}
	defer cancel()
	key := s.key(poolHashKey(pool))
	hash := HashDefinition(def)
	rec, _ := json.Marshal(PoolHashRecord{Hash: hash, Node: node, Definition: def, At: time.Now().UTC()})
	resp, err := s.c().Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(rec))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return s.wrap(cctx, what, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("%s: %s: the record vanished while read; try again", s.desc, what)
	}
	var stored PoolHashRecord
	if err := json.Unmarshal(kvs[0].Value, &stored); err != nil {
		return fmt.Errorf("%s: %s: %s holds %q: %w", s.desc, what, key, kvs[0].Value, err)
	}
	if stored.Hash == hash {
		return nil
	}
	onlyStored, onlyOurs := lineDiff(stored.Definition, def)
	return &PoolMismatchError{Pool: pool, Node: stored.Node, Stored: stored.Hash, Ours: hash,
		OnlyStored: onlyStored, OnlyOurs: onlyOurs, RecordedAt: stored.At}
}

// SetPoolHash records node's definition of pool unconditionally: the
// operator's way to change a pool fleet-wide once every node has the new
// definition.
func (s *Store) SetPoolHash(ctx context.Context, pool, node, def string) error {
	what := "record pool " + pool + " definition"
	cctx, cancel, err := s.call(ctx, what)
	if err != nil {
		return err
	}
	defer cancel()
	rec, _ := json.Marshal(PoolHashRecord{Hash: HashDefinition(def), Node: node, Definition: def, At: time.Now().UTC()})
	if _, err := s.c().Put(cctx, s.key(poolHashKey(pool)), string(rec)); err != nil {
		return s.wrap(cctx, what, err)
	}
	return nil
}

// lineDiff returns the lines only in a and only in b (as multisets).
func lineDiff(a, b string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		if l != "" {
			count[l]++
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if l == "" {
			continue
		}
		if count[l] > 0 {
			count[l]--
		} else {
			onlyB = append(onlyB, l)
		}
	}
	for _, l := range strings.Split(a, "\n") {
		if l != "" && count[l] > 0 {
			count[l]--
			onlyA = append(onlyA, l)
		}
	}
	return onlyA, onlyB
}
