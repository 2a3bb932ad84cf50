package detect

import (
	"math/rand/v2"
	"testing"
)

// TestLowerASCII checks the eight-at-a-time folding against a byte at a
// time, for every byte value at every position of a word.
func TestLowerASCII(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 4096)
	for i := range src {
		src[i] = byte(i) // every value, at every offset mod 8
	}
	for i := 2048; i < len(src); i++ {
		src[i] = byte(r.Uint32())
	}
	for _, n := range []int{0, 1, 7, 8, 9, 100, len(src)} {
		got := lowerASCII(make([]byte, n), src[:n])
		for i, c := range src[:n] {
			if got[i] != lowerByte(c) {
				t.Fatalf("lowerASCII: byte %d is %#x, want %#x (from %#x)", i, got[i], lowerByte(c), c)
			}
		}
	}
}
