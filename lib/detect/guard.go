package detect

import (
	"io"
	"slices"
	"strings"
)

// guardChunk is how much a guard reads from its source at a time.
const guardChunk = 32 << 10

// Guard is a reader of another reader's bytes that holds each byte back
// until no match can include it. When it finds a secret, Read returns a
// *HitError (then and ever after), and no byte of the match, in any
// encoding, has been returned. At the source's end it releases the tail.
// An error from the source other than io.EOF is returned after the bytes
// known to be clean, and the held-back bytes are never released.
type Guard struct {
	d     *Detector
	r     io.Reader
	sc    *Scanner
	flat  *Scanner // GuardFlat: the flattened stream
	fbuf  []byte   // the flattened fresh bytes
	tight bool
	hold  int
	buf   []byte // buf[off:off+rdy] may be returned; buf[off+rdy:] is held
	off   int
	rdy   int
	err   error // sticky: a *HitError, r's error, or io.EOF
}

// Guard returns a guard of r that holds back MaxLen-1 bytes behind what it
// has read from r.
func (d *Detector) Guard(r io.Reader) *Guard {
	return d.newGuard(r, max(0, d.maxLen-1))
}

// GuardFlat is Guard that also scans the stream flattened: without
// whitespace (base64 wrapped in lines or spaced out) and "=" (so without
// quoted-printable soft line breaks). It holds back the bytes that hold
// the last MaxLen-1 flattened ones, up to 64 KiB: a secret split by more
// whitespace than that is caught once its end arrives, not before any of
// it is released.
func (d *Detector) GuardFlat(r io.Reader) *Guard {
	g := d.newGuard(r, max(0, d.maxLen-1))
	g.flat = d.NewScanner()
	g.buf = make([]byte, 0, max(g.hold, maxFlatHold)+guardChunk) // room to read past what is held
	return g
}

// GuardTight is Guard that holds back only the bytes at the end of what it
// has read that could begin a match (a suffix that is a prefix of some
// form), so a stream (server-sent events, a long poll) is not delayed by
// bytes that cannot be part of a secret.
func (d *Detector) GuardTight(r io.Reader) *Guard {
	g := d.newGuard(r, max(0, d.maxLen-1))
	g.tight = true
	return g
}

func (d *Detector) newGuard(r io.Reader, hold int) *Guard {
	return &Guard{d: d, r: r, sc: d.NewScanner(), hold: hold, buf: make([]byte, 0, hold+guardChunk)}
}

// Reset makes g a guard of r, as new, keeping its buffers.
func (g *Guard) Reset(r io.Reader) {
	g.r, g.off, g.rdy, g.err = r, 0, 0, nil
	clear(g.buf)
	g.buf = g.buf[:0]
	g.sc.Reset()
	if g.flat != nil {
		g.flat.Reset()
	}
}

func (g *Guard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if g.rdy > 0 {
			n := copy(p, g.buf[g.off:g.off+g.rdy])
			g.off += n
			g.rdy -= n
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		g.buf = g.buf[:copy(g.buf, g.buf[g.off:])]
		g.off = 0
		n, err := g.r.Read(g.buf[len(g.buf):cap(g.buf)])
		fresh := g.buf[len(g.buf) : len(g.buf)+n]
		g.buf = g.buf[:len(g.buf)+n]
		if hit, ok := g.scan(fresh); ok {
			g.err = &HitError{Hit: hit}
			clear(g.buf)
			g.buf = g.buf[:0]
			return 0, g.err
		}
		switch {
		case err == io.EOF:
			g.rdy = len(g.buf)
		case g.tight:
			g.rdy = len(g.buf) - g.d.openTail(g.buf)
		case g.flat != nil:
			g.rdy = len(g.buf) - max(g.hold, flatHold(g.buf, g.hold))
		default:
			g.rdy = max(0, len(g.buf)-g.hold)
		}
		if err != nil {
			g.err = err
		}
	}
}

// scan scans the fresh bytes, and their flattened form for GuardFlat.
func (g *Guard) scan(fresh []byte) (Hit, bool) {
	low := fresh
	if g.d.fold {
		g.sc.low = lowerASCII(slices.Grow(g.sc.low[:0], len(fresh))[:len(fresh)], fresh)
		low = g.sc.low
	}
	g.sc.write(fresh, low)
	if g.sc.Found() {
		return g.sc.Hits()[0], true
	}
	if g.flat == nil {
		return Hit{}, false
	}
	// The flattened bytes come from the folded ones: they need no folding
	// again (nor can they tell a case change).
	g.fbuf = appendFlat(g.fbuf[:0], low)
	g.flat.write(g.fbuf, g.fbuf)
	if g.flat.Found() {
		h := g.flat.Hits()[0]
		h.Encoding = "flattened " + strings.TrimPrefix(h.Encoding, "case-folded ")
		return h, true
	}
	return Hit{}, false
}

// openTail returns how many bytes at the end of b could be the start of a
// match that more bytes would complete.
func (d *Detector) openTail(b []byte) int {
	for i := max(0, len(b)-(d.maxLen-1)); i < len(b); i++ {
		c := b[i]
		if d.fold {
			c = lowerByte(c)
		}
		rest := b[i:]
		for _, pi := range d.first[c] {
			if p := d.pats[pi].b; len(rest) < len(p) && hasPrefix(p, rest, d.fold) {
				return len(rest)
			}
		}
	}
	return 0
}

// hasPrefix reports whether p starts with s, s folded when fold.
func hasPrefix(p, s []byte, fold bool) bool {
	for i, c := range s {
		if fold {
			c = lowerByte(c)
		}
		if p[i] != c {
			return false
		}
	}
	return true
}
