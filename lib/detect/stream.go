package detect

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxEscape is more than the longest escape decode reads ("&#x0000000A;",
// a JSON surrogate pair): a view decoded in pieces leaves the last
// maxEscape bytes of a piece for the next one, so it is the view of the
// whole, byte for byte.
const maxEscape = 16

// viewPiece is how much input a view decodes at a time. Each piece leaves
// a mark, and a guard holds raw bytes back from the mark before a view's
// open tail: smaller pieces hold back less, larger ones cost less.
const viewPiece = 4 << 10

// maxMarks bounds the marks a view keeps. Past it, the oldest go, and a
// guard that needs one holds back all it may (maxFlatHold).
const maxMarks = 256

// mark says that a view's bytes from offset out on come from its input's
// bytes from offset in on: decoding only shrinks, never reorders.
type mark struct{ out, in int64 }

// viewStream is one of Search's views of a stream, decoded as the stream
// arrives and scanned.
type viewStream struct {
	plus, flat bool
	pend       []byte // input not yet decoded: an escape may go on past it
	pendAt     int64  // input offset of pend[0]
	outN       int64  // view bytes so far
	out        []byte // the view's bytes from the last write: buf, or the input
	buf        []byte
	marks      []mark
	sc         *Scanner
	// folded: the input is a folding detector's lower-cased text, so the
	// view is too (escapes read the same in either case).
	folded bool
}

func (d *Detector) newViewStream(plus, flat bool) *viewStream {
	return &viewStream{plus: plus, flat: flat, sc: d.NewScanner()}
}

func (v *viewStream) reset() {
	clear(v.pend[:cap(v.pend)]) // a pooled guard's next stream is none of the last one's business
	clear(v.buf[:cap(v.buf)])
	v.pend, v.pendAt, v.outN, v.out, v.buf, v.marks = v.pend[:0], 0, 0, nil, v.buf[:0], v.marks[:0]
	v.sc.Reset()
}

// write decodes p, the next bytes of the input, into v.out and scans them;
// final says the input ends with p, so nothing is left pending.
func (v *viewStream) write(p []byte, final bool) {
	if len(v.pend) == 0 && !v.flat && !hasStops(p, v.plus) {
		// Nothing to undo, nor to leave for the next write: the view of
		// p is p (most text, and all of most binary data).
		for i := 0; i < len(p); i += viewPiece {
			v.addMark(mark{v.outN + int64(i), v.pendAt + int64(i)})
		}
		v.out = p
		v.pendAt += int64(len(p))
		v.outN += int64(len(p))
		v.scanSame()
		return
	}
	v.out = v.buf[:0]
	v.pend = append(v.pend, p...)
	i, changed := 0, false
	for {
		end := min(len(v.pend), i+viewPiece)
		last := end == len(v.pend)
		if last && !final && end-i <= maxEscape {
			break
		}
		v.addMark(mark{v.outN + int64(len(v.out)), v.pendAt + int64(i)})
		var k int
		var ch bool
		v.out, k, ch = decodeStream(v.out, v.pend[i:end], v.plus, v.flat, v.folded, final && last)
		changed = changed || ch
		i += k
		if last {
			break
		}
	}
	v.buf = v.out
	v.pend = v.pend[:copy(v.pend, v.pend[i:])]
	v.pendAt += int64(i)
	v.outN += int64(len(v.out))
	if changed {
		v.scan(v.out)
		return
	}
	v.scanSame()
}

// scan scans b, the next bytes of the view.
func (v *viewStream) scan(b []byte) {
	if v.folded {
		v.sc.write(b, b)
		return
	}
	v.sc.Write(b) //nolint:errcheck // never fails
}

// hasStops reports whether p holds a byte that may start an escape.
func hasStops(p []byte, plus bool) bool {
	return bytes.IndexByte(p, '%') >= 0 || bytes.IndexByte(p, '\\') >= 0 || bytes.IndexByte(p, '&') >= 0 ||
		plus && bytes.IndexByte(p, '+') >= 0
}

// scanSame scans v.out, the same bytes as the input it came from.
func (v *viewStream) scanSame() {
	// The view of these bytes is the bytes, which the input's own scanner
	// has scanned: only a match that begins before them is new, and it
	// ends within their first MaxLen-1.
	keep := cap(v.sc.tail)
	if len(v.out) <= 2*keep {
		v.scan(v.out)
		return
	}
	v.scan(v.out[:keep])
	v.sc.skip(v.out[keep : len(v.out)-keep]) // nothing new in there
	v.scan(v.out[len(v.out)-keep:])
}

func (v *viewStream) addMark(m mark) {
	if n := len(v.marks); n > 0 && v.marks[n-1].out == m.out {
		return // the earlier mark says as much, and holds back more
	}
	if len(v.marks) == maxMarks {
		v.marks = v.marks[:copy(v.marks, v.marks[1:])]
	}
	v.marks = append(v.marks, m)
}

// inputOf returns the input offset from which the view's bytes from out on
// come, at most; -1 when the mark that would say was dropped.
func (v *viewStream) inputOf(out int64) int64 {
	if out >= v.outN {
		return v.pendAt
	}
	i, found := slices.BinarySearchFunc(v.marks, out, func(m mark, o int64) int {
		switch {
		case m.out < o:
			return -1
		case m.out > o:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 {
		return -1
	}
	return min(v.marks[i].in, v.pendAt)
}

// forget drops the marks before the one inputOf(out) needs: no guard asks
// for an earlier offset again.
func (v *viewStream) forget(out int64) {
	i := 0
	for i+1 < len(v.marks) && v.marks[i+1].out <= out {
		i++
	}
	v.marks = v.marks[:copy(v.marks, v.marks[i:])]
}

// decodeStream appends to dst what decode makes of src (whether or not
// that changes anything), up to the first escape that may go on past the
// end of src (none when final), and returns how many bytes of src it
// used, and whether what it appended differs from what it used.
//
// With fold, src is lower-cased text and so is what it appends: an escape
// may stand for an upper-case letter.
func decodeStream(dst, src []byte, plus, flat, fold, final bool) (_ []byte, used int, changed bool) {
	class := &classes[b2i(flat)][b2i(plus)]
	lim := len(src)
	if !final {
		// Only an escape can go on past src: leave from the first byte in
		// the last maxEscape that may start one.
		lim = max(0, len(src)-maxEscape)
		for lim < len(src) && class[src[lim]] != stop {
			lim++
		}
	}
	keep := &keeps[b2i(flat)]
	n := len(dst)
	// An escape that starts before lim ends within maxEscape bytes, and
	// what it stands for is never longer than it.
	dst = slices.Grow(dst, lim+maxEscape)[:n+lim+maxEscape]
	n0 := n
	i := 0
	for i < lim {
		// Eight bytes at a time, up to the first that may start an escape
		// or be dropped: most bytes of text are neither.
		if !flat && i+8 <= lim {
			m := special(binary.LittleEndian.Uint64(src[i:]), plus, flat)
			j := 8
			if m != 0 {
				j = bits.TrailingZeros64(m) >> 3
			}
			copy(dst[n:n+8], src[i:i+8])
			n += j
			i += j
			if j == 8 {
				continue
			}
		}
		if flat {
			// Whitespace is every few bytes of text: a tight loop keeps or
			// drops each byte without a branch, up to the next escape.
			e := i
			for e+8 <= lim {
				m := special(binary.LittleEndian.Uint64(src[e:]), plus, false) |
					zeroBytes(binary.LittleEndian.Uint64(src[e:])^'='*0x0101010101010101)
				if m != 0 {
					e += bits.TrailingZeros64(m) >> 3
					break
				}
				e += 8
			}
			for e < lim && class[src[e]] != stop {
				e++
			}
			d := dst[n : n+e-i]
			k := 0
			for _, c := range src[i:e] {
				d[k] = c
				k += int(keep[c])
			}
			i, n = e, n+k
			if i == lim {
				break
			}
		}
		c := src[i]
		if cl := class[c]; cl != stop {
			dst[n] = c
			n += int(cl)
			i++
			continue
		}
		r, k, isByte := unescape(src[i:], plus, flat)
		changed = changed || k > 0
		switch {
		case k == 0:
			dst[n] = c
			n++
			k = 1
		case isByte || 0 <= r && r < 0x80:
			b := byte(r)
			if fold {
				b = lowerByte(b)
			}
			dst[n] = b
			n += int(keep[b])
		case r >= 0:
			n += utf8.EncodeRune(dst[n:], r)
		}
		i += k
	}
	return dst[:n], i, changed || n-n0 != i
}

// classes[flat][plus] say what decodeStream does with a byte: stop (it
// may start an escape), or keep it (1) or drop it (0, whitespace when
// flattening).
var classes = func() (t [2][2][256]uint8) {
	for f := range 2 {
		for p := range 2 {
			for c := range 256 {
				t[f][p][c] = keeps[f][c]
				if stops[0][p][c] || c == '=' && f == 1 {
					t[f][p][c] = stop
				}
			}
		}
	}
	return t
}()

const stop = 2

// zeroBytes marks (with its high bit) the zero bytes of x; marks above
// the lowest may be false.
func zeroBytes(x uint64) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	return (x - ones) &^ x & high
}

// special marks (with its high bit) each of the eight bytes in x that may
// start an escape ("%", "\\", "&", and "+" when it stands for a space)
// or, when flattening, be "=" or whitespace (any byte up to a space is
// marked). Marks above the lowest may be false; the lowest is exact.
func special(x uint64, plus, flat bool) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	m := (x ^ '%'*ones - ones) &^ (x ^ '%'*ones)
	m |= (x ^ '\\'*ones - ones) &^ (x ^ '\\'*ones)
	m |= (x ^ '&'*ones - ones) &^ (x ^ '&'*ones)
	if plus {
		m |= (x ^ '+'*ones - ones) &^ (x ^ '+'*ones)
	}
	if flat {
		m |= (x ^ '='*ones - ones) &^ (x ^ '='*ones)
		m |= (x - 0x21*ones) &^ x // bytes below 0x21
	}
	return m & high
}

// viewSet is the views of a stream that Search looks through: decoded,
// decoded twice (from the decoded one) and flattened.
type viewSet struct {
	dec, dec2, flat *viewStream
}

func (d *Detector) newViewSet() *viewSet {
	s := &viewSet{dec: d.newViewStream(d.space, false), dec2: d.newViewStream(d.space, false), flat: d.newViewStream(false, true)}
	// The flattened view is scanned folded: decoding the folded text
	// saves folding it again (a hit in it cannot tell a change of case).
	s.flat.folded = d.fold
	return s
}

func (s *viewSet) reset() {
	s.dec.reset()
	s.dec2.reset()
	s.flat.reset()
}

// write decodes and scans the fresh bytes of the stream in every view.
// low is fresh lower-cased for a folding detector, else fresh itself.
func (s *viewSet) write(fresh, low []byte, final bool) (Hit, bool) {
	s.dec.write(fresh, final)
	s.dec2.write(s.dec.out, final)
	s.flat.write(low, final)
	for _, v := range []struct {
		sc   *Scanner
		name string
	}{{s.dec.sc, "decoded "}, {s.dec2.sc, "decoded "}, {s.flat.sc, "flattened "}} {
		if v.sc.Found() {
			h := v.sc.Hits()[0]
			h.Encoding = v.name + strings.TrimPrefix(h.Encoding, "case-folded ")
			return h, true
		}
	}
	return Hit{}, false
}

// ready returns how many bytes at the start of a guard's buffer (n bytes
// from stream offset base) no view can still find part of a secret in:
// the raw stream's last hold bytes, and every byte that a view's last
// hold bytes (or its pending input) come from, are held, up to
// maxFlatHold.
func (s *viewSet) ready(base int64, n, hold int) int {
	h := int64(hold)
	from := base + int64(n) - h // the raw stream's own tail
	v1 := s.dec.outN - h
	u := s.dec2.inputOf(s.dec2.outN - h) // an offset in the decoded view
	x2 := int64(-1)
	if u >= 0 {
		x2 = s.dec.inputOf(u)
	}
	for _, x := range []int64{s.dec.inputOf(v1), s.flat.inputOf(s.flat.outN - h), x2} {
		if x < 0 {
			x = 0 // a mark was dropped: hold all there is
		}
		from = min(from, x)
	}
	s.dec.forget(min(v1, u))
	s.dec2.forget(s.dec2.outN - h)
	s.flat.forget(s.flat.outN - h)
	r := int(max(0, from-base))
	return max(r, n-max(hold, maxFlatHold))
}
