package detect

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// Search is Find on b, then on views of b that undo what the forms do not
// cover: a decoded view (percent escapes in either case and in any number,
// "+" for a space, JSON \uXXXX, \n, \/ and the other short escapes, HTML
// &#NN; and &#xHH;), decoded twice when it changed, and a flattened one
// (the same escapes and quoted-printable =XX undone, then soft line
// breaks and all whitespace removed, whitespace written as an escape too:
// base64 wrapped with "%0A", JSON "\n" or "&#10;" between its lines). A
// hit in a view is named "decoded <encoding>" or "flattened <encoding>",
// and its offset is in that view. GuardViews looks through the same views
// of a stream.
func (d *Detector) Search(b []byte) (Hit, bool) {
	if h, ok := d.Find(b); ok {
		return h, true
	}
	v1 := getScratch(len(b))
	defer putScratch(v1)
	v, changed := decode(*v1, b, d.space, false)
	*v1 = v
	if changed {
		if h, ok := d.Find(v); ok {
			h.Encoding = "decoded " + h.Encoding
			return h, true
		}
		v2 := getScratch(len(v))
		defer putScratch(v2)
		w, changed := decode(*v2, v, d.space, false)
		*v2 = w
		if changed {
			if h, ok := d.Find(w); ok {
				h.Encoding = "decoded " + h.Encoding
				return h, true
			}
		}
	}
	f, changed := decode((*v1)[:0], b, false, true)
	*v1 = f
	if changed {
		if h, ok := d.Find(f); ok {
			h.Encoding = "flattened " + h.Encoding
			return h, true
		}
	}
	return Hit{}, false
}

// Decoded returns the decoded view Search looks through ("+" read as a
// space when plus), and whether it differs from b; b itself when not.
func Decoded(b []byte, plus bool) ([]byte, bool) {
	v, changed := decode(nil, b, plus, false)
	if !changed {
		return b, false
	}
	return v, true
}

// Flattened returns the flattened view Search looks through, and whether
// it differs from b; b itself when not.
func Flattened(b []byte) ([]byte, bool) {
	v, changed := decode(nil, b, false, true)
	if !changed {
		return b, false
	}
	return v, true
}

// SearchString is Search on a string.
func (d *Detector) SearchString(s string) (Hit, bool) { return d.Search([]byte(s)) }

var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, '\v': true, '\f': true}

// maxFlatHold bounds what a views guard holds back: a secret in a stream
// split by more whitespace than this is not one the guard stops before
// any byte of it leaves (it still stops the rest).
const maxFlatHold = 64 << 10

var unhex = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range []byte("0123456789abcdef") {
		t[c] = int8(i)
	}
	for i, c := range []byte("ABCDEF") {
		t[c] = int8(10 + i)
	}
	return t
}()

func hex2(a, b byte) (byte, bool) {
	x, y := unhex[a], unhex[b]
	return byte(x)<<4 | byte(y), x >= 0 && y >= 0
}

// stops[flat][plus] mark the bytes where decode must look closer: those
// that may start an escape, and whitespace when it flattens.
var stops = func() (t [2][2][256]bool) {
	for f := range 2 {
		for p := range 2 {
			for _, c := range []byte("%\\&") {
				t[f][p][c] = true
			}
			t[f][p]['+'] = p == 1
			t[f][p]['='] = f == 1
			for c, sp := range isSpace {
				t[f][p][c] = t[f][p][c] || sp && f == 1
			}
		}
	}
	return t
}()

// indexStop returns the index of the first '%', '\\' or '&' in src at or
// after i, or len(src): three vectorised searches beat a loop over bytes.
func indexStop(src []byte, i int) int {
	end := len(src)
	for _, c := range [3]byte{'%', '\\', '&'} {
		if j := bytes.IndexByte(src[i:end], c); j >= 0 {
			end = i + j
		}
	}
	return end
}

// keeps[flat] is 0 for the bytes decode drops: whitespace when flat.
var keeps = func() (t [2][256]uint8) {
	for c := range 256 {
		t[0][c] = 1
		if !isSpace[c] {
			t[1][c] = 1
		}
	}
	return t
}()

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decode appends src to dst with one level of escapes undone, left to
// right: %XX, "+" as a space when plus, JSON \uXXXX (surrogate pairs
// joined) and \/, HTML &#NN; and &#xHH; (the semicolon optional, as
// browsers take it); when flat, also quoted-printable =XX and soft line
// breaks, and whitespace is dropped. It reports whether the result differs
// from src; when it does not, it appends nothing.
func decode(dst, src []byte, plus, flat bool) ([]byte, bool) {
	stop := &stops[b2i(flat)][b2i(plus)]
	// Most text has nothing to undo: find the first change before copying.
	i := 0
	for {
		if flat || plus {
			for i < len(src) && !stop[src[i]] {
				i++
			}
		} else {
			i = indexStop(src, i)
		}
		if i == len(src) {
			return dst, false
		}
		if isSpace[src[i]] {
			break // flat
		}
		if _, k, _ := unescape(src[i:], plus, flat); k > 0 {
			break
		}
		i++
	}
	n := len(dst)
	dst = slices.Grow(dst, len(src))[:n+len(src)]
	n += copy(dst[n:], src[:i])
	out := dst[n:]
	n = 0
	esc := &stops[0][b2i(plus)]
	keep := &keeps[b2i(flat)]
	for i < len(src) {
		c := src[i]
		if !esc[c] && c != '=' {
			// Whitespace is everywhere in text: dropping it without a
			// branch saves a mispredicted one every few bytes.
			out[n] = c
			n += int(keep[c])
			i++
			continue
		}
		r, k, isByte := unescape(src[i:], plus, flat)
		switch {
		case k == 0:
			out[n] = c
			n++
			k = 1
		case isByte || 0 <= r && r < utf8.RuneSelf:
			// Whitespace written as an escape is whitespace: flattening
			// drops it too, so "%0A" or JSON "\n" between lines of
			// base64 is no way around the flattened view.
			out[n] = byte(r)
			n += int(keep[byte(r)])
		case r >= 0:
			n += utf8.EncodeRune(out[n:], r) // never longer than its escape
		}
		i += k
	}
	return dst[:len(dst)-len(out)+n], true
}

// unescape reads the escape at the start of b: what it stands for, a byte
// (isByte) or a rune (-1 for nothing: a soft line break), and its length,
// 0 when b starts none.
func unescape(b []byte, plus, qp bool) (r rune, n int, isByte bool) {
	switch b[0] {
	case '%':
		if len(b) >= 3 {
			if v, ok := hex2(b[1], b[2]); ok {
				return rune(v), 3, true
			}
		}
	case '+':
		if plus {
			return ' ', 1, false
		}
	case '\\':
		if len(b) >= 2 {
			if r := jsonEsc[b[1]]; r != 0 {
				return rune(r), 2, true
			}
		}
		if u, ok := jsonU(b); ok {
			if utf16High(u) {
				if lo, ok := jsonU(b[6:]); ok && utf16Low(lo) {
					return 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00), 12, false
				}
			}
			return u, 6, false
		}
	case '&':
		if r, n := charRef(b); n > 0 {
			return r, n, false
		}
		for _, e := range xmlEntities {
			if hasPrefixFold(b, e.name) { // &LT; too, as browsers read it
				return rune(e.c), len(e.name), true
			}
		}
	case '=':
		if !qp {
			break
		}
		switch {
		case len(b) >= 3 && b[1] == '\r' && b[2] == '\n':
			return -1, 3, false
		case len(b) >= 2 && b[1] == '\n':
			return -1, 2, false
		case len(b) >= 3:
			if v, ok := hex2(b[1], b[2]); ok {
				return rune(v), 3, true
			}
		}
	}
	return 0, 0, false
}

// jsonU reads \uXXXX at the start of b.
func jsonU(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	hi, ok1 := hex2(b[2], b[3])
	lo, ok2 := hex2(b[4], b[5])
	return rune(hi)<<8 | rune(lo), ok1 && ok2
}

// xmlEntities are the named references every HTML and XML encoder writes.
var xmlEntities = []struct {
	name string
	c    byte
}{{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}}

// hasPrefixFold reports whether b starts with s, a lower-case ASCII
// string, in any case.
func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := range len(s) {
		if lowerByte(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// jsonEsc maps the byte after a backslash in a JSON string to the byte
// the two stand for; 0 when they are no such escape (\u is read apart).
var jsonEsc = [256]byte{'/': '/', '\\': '\\', '"': '"', 'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'f': '\f'}

func utf16High(r rune) bool { return 0xD800 <= r && r < 0xDC00 }
func utf16Low(r rune) bool  { return 0xDC00 <= r && r < 0xE000 }

// charRef reads an HTML numeric character reference at the start of b
// ("&#" digits, or "&#x" hex digits, then an optional ";"); length 0 if
// none.
func charRef(b []byte) (rune, int) {
	if len(b) < 3 || b[1] != '#' {
		return 0, 0
	}
	i, base := 2, rune(10)
	if b[2] == 'x' || b[2] == 'X' {
		i, base = 3, 16
	}
	var r rune
	digits := 0
	for ; i < len(b) && digits < 8; i++ {
		v := rune(unhex[b[i]])
		if v < 0 || v >= base {
			break
		}
		r = r*base + v
		digits++
	}
	if digits == 0 || r > utf8.MaxRune {
		return 0, 0
	}
	if i < len(b) && b[i] == ';' {
		i++
	}
	return r, i
}
