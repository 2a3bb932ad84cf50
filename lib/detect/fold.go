package detect

import (
	"encoding/binary"
	"sync"
)

// lowerASCII writes src to dst (len(dst) == len(src); they may be the same
// slice) with ASCII upper-case letters lower-cased and every other byte as
// it is, so offsets in dst are offsets in src. It does eight bytes at a
// time: folding must cost little next to the scan.
func lowerASCII(dst, src []byte) []byte {
	const (
		ones = 0x0101010101010101
		high = 0x80 * ones
	)
	dst = dst[:len(src)]
	i := 0
	for ; i+8 <= len(src); i += 8 {
		x := binary.LittleEndian.Uint64(src[i:])
		a := x &^ high                // each byte's low seven bits: no carry between bytes below
		ge := a + (0x80-'A')*ones     // high bit set where a >= 'A'
		gt := a + (0x80-'Z'-1)*ones   // high bit set where a > 'Z'
		upper := ge &^ gt &^ x & high // 'A'..'Z', and not a byte >= 0x80
		binary.LittleEndian.PutUint64(dst[i:], x|upper>>2)
	}
	for ; i < len(src); i++ {
		dst[i] = lowerByte(src[i])
	}
	return dst
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// scratch recycles the buffers of folded and decoded copies of text.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// maxPooled keeps an outsized buffer out of the pool.
const maxPooled = 4 << 20

func getScratch(n int) *[]byte {
	sp := scratch.Get().(*[]byte)
	if cap(*sp) < n {
		*sp = make([]byte, 0, n)
	}
	*sp = (*sp)[:0]
	return sp
}

func putScratch(sp *[]byte) {
	if sp != nil && cap(*sp) <= maxPooled {
		scratch.Put(sp)
	}
}
