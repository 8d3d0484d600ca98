// Package inetsum computes the Internet checksum (RFC 1071) of IP headers
// and of TCP segments with their pseudo-header: for replay, which rebuilds
// segments, and for the test packet builder, which makes them.
package inetsum

import (
	"encoding/binary"
	"net/netip"
)

// Sum adds b up as big-endian 16-bit words, the last one zero-padded. Sums
// of several parts add up; Fold turns the total into 16 bits.
func Sum(b []byte) uint64 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	return sum
}

// Pseudo is the sum of the IPv4 or IPv6 pseudo-header of an upper-layer
// packet of length bytes.
func Pseudo(src, dst netip.Addr, proto uint8, length int) uint64 {
	return Sum(src.AsSlice()) + Sum(dst.AsSlice()) + uint64(proto) + uint64(length)
}

// Fold folds a sum into 16 bits with end-around carry; the checksum field
// holds its complement.
func Fold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
