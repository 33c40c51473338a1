package ipam

import (
	"encoding/binary"
	"math/big"
	"net/netip"
)

// u128 is an address as a 128-bit number (IPv4 in the low 32 bits), for
// range arithmetic that netip does not offer.
type u128 struct{ hi, lo uint64 }

func fromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) less(v u128) bool { return u.hi < v.hi || (u.hi == v.hi && u.lo < v.lo) }

func (u u128) isMax() bool { return u.hi == ^uint64(0) && u.lo == ^uint64(0) }

func (u u128) add(n uint64) u128 {
	lo := u.lo + n
	hi := u.hi
	if lo < u.lo {
		hi++
	}
	return u128{hi: hi, lo: lo}
}

func (u u128) subOne() u128 {
	if u.lo == 0 {
		return u128{hi: u.hi - 1, lo: ^uint64(0)}
	}
	return u128{hi: u.hi, lo: u.lo - 1}
}

// sub128 is u - v for u >= v.
func (u u128) sub128(v u128) u128 {
	lo := u.lo - v.lo
	hi := u.hi - v.hi
	if u.lo < v.lo {
		hi--
	}
	return u128{hi: hi, lo: lo}
}

// sub is u - v as a uint64; callers know the difference fits.
func (u u128) sub(v u128) uint64 { return u.sub128(v).lo }

func (u u128) or(v u128) u128 { return u128{hi: u.hi | v.hi, lo: u.lo | v.lo} }

func onesLow(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{lo: 1<<uint(n) - 1}
	case n == 64:
		return u128{lo: ^uint64(0)}
	case n < 128:
		return u128{hi: 1<<uint(n-64) - 1, lo: ^uint64(0)}
	}
	return u128{hi: ^uint64(0), lo: ^uint64(0)}
}

func (u u128) big() *big.Int {
	b := new(big.Int).SetUint64(u.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(u.lo))
}
