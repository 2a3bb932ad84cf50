package detect

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// A tight views guard (GuardTight) releases a stream's bytes as soon as no
// view of it could still be beginning a secret with them. The views decode
// in pieces and leave the last bytes that may start an escape pending
// until more arrive; waiting for those would hold a server-sent event
// whose JSON ends in "\n" until the next event. So the tight guard decodes
// the pending bytes as if the stream ended there, up to the first escape
// that more bytes could still change, scans that, and holds back only:
// the raw stream's open tail, the bytes of an escape still open, and the
// raw bytes a view's open tail comes from.

// escapeEnds are completions that turn any proper prefix of an escape
// decode reads ("%4", "\uD83D\u", "&#x4", "&am", "=\r") into a longer one.
var escapeEnds = [][]byte{
	[]byte("1"), []byte("11"), []byte("1111"), []byte("0041"), []byte("41"), []byte("n"), []byte(";"),
	[]byte("\n"), []byte("\r\n"), []byte("\\uDC00"), []byte("uDC00"), []byte("DC00"), []byte("C00"),
	[]byte("00"), []byte("0"), []byte("#65;"), []byte("x41;"), []byte("\\u0041"),
	[]byte("amp;"), []byte("mp;"), []byte("p;"), []byte("lt;"), []byte("t;"), []byte("gt;"),
	[]byte("quot;"), []byte("uot;"), []byte("ot;"), []byte("apos;"), []byte("pos;"), []byte("os;"), []byte("s;"),
}

// openEscape returns the offset in p of the first escape that bytes after
// p could make longer (len(p) when none): only bytes in the last
// maxEscape can start one.
func openEscape(p []byte, plus, qp bool) int {
	var tmp [2 * maxEscape]byte
	for j := max(0, len(p)-maxEscape); j < len(p); j++ {
		b := p[j:]
		for _, e := range escapeEnds {
			w := append(append(tmp[:0], b...), e...)
			if _, n, _ := unescape(w, plus, qp); n > len(b) {
				return j
			}
		}
	}
	return len(p)
}

// tightView is what a tight guard knows of one view: the input offset to
// hold back from (noHold when none), or a secret its pending bytes finish.
const noHold = int64(1) << 62

// settle decodes v's pending input (and more, the bytes of the view it
// reads that are not decoded yet) up to its first open escape, scans it
// after the view's tail, and returns the offset in v's input to hold
// back from, or a hit.
func (v *viewStream) settle(d *Detector, more []byte, src func() ([]byte, int64), blankEnd bool, scratch *[]byte) (int64, []byte, Hit, bool) {
	in := append(append((*scratch)[:0], v.pend...), more...)
	open := openEscape(in, v.plus, v.flat)
	// decode keeps what it cannot yet decode; final, it decodes it all.
	out, _, _ := decodeStream(in[len(in):], in[:open], v.plus, v.flat, v.folded, true)
	*scratch = in
	win := append(slices.Clip(v.sc.tail), out...)
	low := win
	if d.fold && !v.folded {
		low = lowerASCII(make([]byte, len(win)), win)
	}
	for _, m := range d.scan(low, false, nil) {
		if m.start+len(d.pats[m.pat].b) > len(v.sc.tail) {
			return 0, out, d.hit(m, v.outN-int64(len(v.sc.tail)), win), true
		}
	}
	from := noHold
	if open < len(in) {
		from = v.pendAt + int64(min(open, len(v.pend)))
	}
	if l := d.openTail(low); l > 0 && !(v.flat && blankEnd) {
		from = min(from, v.walkBack(v.outN+int64(len(out)-l), src))
	}
	return from, out, Hit{}, false
}

// histMax is how much of a stream before what a tight guard holds it
// keeps, and of the decoded view: walkBack decodes again from a mark that
// may lie in bytes already released.
const histMax = viewPiece + 512

// tight is what a tight views guard keeps besides its views.
type tight struct {
	hist    []byte // the raw bytes just before the guard's buffer
	decHist []byte // the decoded view's last bytes
	scratch [2][]byte
	// join and low hold hist and the buffer as one text (low lower-cased),
	// made once per tightReady and only when a view walks back into them:
	// a fresh copy per view and read was most of what a guard allocated.
	join, low []byte
}

// wrote notes what a write to the views made.
func (t *tight) wrote(s *viewSet) {
	// The view's bytes from its end on come from its input's from the
	// first byte not decoded: a mark walkBack can start from.
	for _, v := range []*viewStream{s.dec, s.dec2, s.flat} {
		v.addMark(mark{v.outN, v.pendAt})
	}
	t.decHist = keep(t.decHist, s.dec.out)
}

// reset readies t for another stream. What it held of the last one is
// zeroed, not only forgotten: a pooled guard goes from one answer to the
// next, and the last one may have carried the token it was stopping.
func (t *tight) reset() {
	for _, b := range [][]byte{t.hist, t.decHist, t.join, t.low, t.scratch[0], t.scratch[1]} {
		clear(b[:cap(b)])
	}
	t.hist, t.decHist, t.join, t.low = t.hist[:0], t.decHist[:0], t.join[:0], t.low[:0]
}

// keep appends b to h and trims it to its last histMax bytes.
func keep(h, b []byte) []byte {
	if len(b) >= histMax {
		return append(h[:0], b[len(b)-histMax:]...)
	}
	if d := len(h) + len(b) - histMax; d > 0 {
		h = h[:copy(h, h[d:])]
	}
	return append(h, b...)
}

// maxJoinKept bounds the join a guard keeps between reads (see tight).
const maxJoinKept = 48 << 10

// tightReady returns how many bytes at the start of a tight guard's
// buffer (from stream offset base, its raw open tail already judged:
// rawReady) no view could still be beginning a secret with, or a secret
// that the views' pending bytes finish.
func (s *viewSet) tightReady(d *Detector, t *tight, buf []byte, base int64, rawReady int) (int, Hit, bool) {
	n := len(buf)
	from := base + int64(rawReady)
	at := base - int64(len(t.hist))
	defer func() {
		// An open answer keeps them for its next read, a read's worth:
		// not what an outsized hold made them.
		if cap(t.join) > maxJoinKept {
			t.join, t.low = nil, nil
		}
	}()
	var joined, lowered bool
	raw := func() ([]byte, int64) {
		if !joined {
			t.join, joined = append(append(t.join[:0], t.hist...), buf...), true
		}
		return t.join, at
	}
	x1, decMore, hit, ok := s.dec.settle(d, nil, raw, false, &t.scratch[0])
	if ok {
		return 0, tagView(hit, "decoded "), true
	}
	from = min(from, x1)
	xf, _, hit, ok := s.flat.settle(d, nil, func() ([]byte, int64) {
		src, _ := raw()
		if !d.fold {
			return src, at
		}
		if !lowered {
			t.low, lowered = lowerASCII(slices.Grow(t.low[:0], len(src))[:len(src)], src), true
		}
		return t.low, at
	}, blankEnd(buf), &t.scratch[1])
	if ok {
		return 0, tagView(hit, "flattened "), true
	}
	from = min(from, xf)
	// The twice-decoded view reads the decoded one, whose pending bytes
	// decMore are what settle made of them.
	u, _, hit, ok := s.dec2.settle(d, decMore, func() ([]byte, int64) { return t.decHist, s.dec.outN - int64(len(t.decHist)) }, false, &t.scratch[1])
	if ok {
		return 0, tagView(hit, "decoded "), true
	}
	if u != noHold {
		if u >= s.dec.outN {
			from = min(from, s.dec.pendAt)
		} else {
			from = min(from, s.dec.walkBack(u, raw))
		}
	}
	if from < 0 {
		from = 0 // a mark was dropped: hold all there is
	}
	h := int64(d.maxLen - 1)
	s.dec.forget(min(s.dec.outN-h, s.dec2.inputOf(s.dec2.outN-h)))
	s.dec2.forget(s.dec2.outN - h)
	s.flat.forget(s.flat.outN - h)
	r := int(min(int64(n), max(0, from-base)))
	return max(r, n-max(int(h), maxFlatHold)), Hit{}, false
}

// blankEnd reports whether b ends in whitespace that holds an empty line
// (the end of a server-sent event, of a paragraph). The flattened view
// joins lines, to find a token wrapped at 60 or 76 columns; a wrapping
// encoder breaks lines and never leaves one empty, so what the flattened
// view sees before an empty line is not held for what comes after it.
// (A token split across one is still found when its end comes.)
func blankEnd(b []byte) bool {
	i := len(b)
	for i > 0 && isSpace[b[i-1]] {
		i--
	}
	ws := b[i:]
	return bytes.Contains(ws, []byte("\n\n")) || bytes.Contains(ws, []byte("\n\r\n"))
}

func tagView(h Hit, name string) Hit {
	h.Encoding = name + trimFolded(h.Encoding)
	return h
}

func trimFolded(s string) string {
	const p = "case-folded "
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// walkBack returns the offset in v's input of the byte that makes v's
// byte at out, or an offset before it: the marks say where each piece
// starts, and src (v's input from offset srcAt) is decoded again from the
// mark to find the byte. Without src there, the mark's offset.
func (v *viewStream) walkBack(out int64, input func() ([]byte, int64)) int64 {
	in := v.inputOf(out)
	src, srcAt := input()
	if in < 0 {
		return in
	}
	i := v.marks[0]
	for _, m := range v.marks { // the mark inputOf used
		if m.out <= out {
			i = m
		}
	}
	if i.in != in || in < srcAt || i.out > out {
		return in
	}
	class := &classes[b2i(v.flat)][b2i(v.plus)]
	keep := &keeps[b2i(v.flat)]
	o := i.out
	var rb [utf8.UTFMax]byte
	for j := int(in - srcAt); j < len(src); {
		c := src[j]
		if cl := class[c]; cl != stop {
			if o += int64(cl); o > out {
				return srcAt + int64(j)
			}
			j++
			continue
		}
		r, k, isByte := unescape(src[j:], v.plus, v.flat)
		switch {
		case k == 0:
			o++
			k = 1
		case isByte || 0 <= r && r < 0x80:
			o += int64(keep[byte(r)])
		case r >= 0:
			o += int64(utf8.EncodeRune(rb[:], r))
		}
		if o > out {
			return srcAt + int64(j)
		}
		j += k
	}
	return in
}
