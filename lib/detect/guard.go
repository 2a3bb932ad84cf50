package detect

import (
	"io"
	"slices"
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
	views *viewSet // GuardViews
	tight bool
	tv    *tight // GuardTight's history for its views
	hold  int
	buf   []byte // buf[off:off+rdy] may be returned; buf[off+rdy:] is held
	base  int64  // stream offset of buf[0]
	off   int
	rdy   int
	err   error // sticky: a *HitError, r's error, or io.EOF
}

// Guard returns a guard of r that holds back MaxLen-1 bytes behind what it
// has read from r.
func (d *Detector) Guard(r io.Reader) *Guard {
	return d.newGuard(r, max(0, d.maxLen-1))
}

// GuardViews is Guard that also scans every view Search looks through,
// decoded as the stream arrives: decoded, decoded twice, and flattened
// (escapes undone, whitespace, escaped whitespace and soft line breaks
// dropped). It holds back every raw byte that any view's last MaxLen-1
// bytes come from, up to 64 KiB: a secret split by more whitespace than
// that is caught once its end arrives, not before any of it is released.
func (d *Detector) GuardViews(r io.Reader) *Guard {
	g := d.newGuard(r, max(0, d.maxLen-1))
	g.views = d.newViewSet()
	g.buf = make([]byte, 0, max(g.hold, maxFlatHold)+guardChunk) // room to read past what is held
	return g
}

// GuardFlat is GuardViews, under the name it had when it scanned the
// flattened view alone.
func (d *Detector) GuardFlat(r io.Reader) *Guard { return d.GuardViews(r) }

// GuardTight is GuardViews that holds back only the bytes at the end of
// what it has read that could still begin a match in some view (a suffix
// that is a prefix of some form, an escape not finished yet), so a stream
// (server-sent events, a long poll) is not delayed by bytes that cannot be
// part of a secret. See tight.go.
func (d *Detector) GuardTight(r io.Reader) *Guard {
	g := d.newGuard(r, max(0, d.maxLen-1))
	g.views = d.newViewSet()
	g.tight, g.tv = true, &tight{}
	return g
}

func (d *Detector) newGuard(r io.Reader, hold int) *Guard {
	return &Guard{d: d, r: r, sc: d.NewScanner(), hold: hold, buf: make([]byte, 0, hold+guardChunk)}
}

// Reset makes g a guard of r, as new, keeping its buffers.
func (g *Guard) Reset(r io.Reader) {
	g.r, g.off, g.rdy, g.err, g.base = r, 0, 0, nil, 0
	clear(g.buf)
	g.buf = g.buf[:0]
	g.sc.Reset()
	if g.views != nil {
		g.views.reset()
	}
	if g.tv != nil {
		g.tv.reset()
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
		if g.tv != nil {
			g.tv.hist = keep(g.tv.hist, g.buf[:g.off])
		}
		g.buf = g.buf[:copy(g.buf, g.buf[g.off:])]
		g.base += int64(g.off)
		g.off = 0
		if g.tv != nil && cap(g.buf)-len(g.buf) < guardChunk/2 {
			// What the views hold grows the buffer, up to maxFlatHold.
			g.buf = slices.Grow(g.buf, guardChunk)
		}
		n, err := g.r.Read(g.buf[len(g.buf):cap(g.buf)])
		fresh := g.buf[len(g.buf) : len(g.buf)+n]
		g.buf = g.buf[:len(g.buf)+n]
		if hit, ok := g.scan(fresh, err == io.EOF); ok {
			g.err = &HitError{Hit: hit}
			clear(g.buf)
			g.buf = g.buf[:0]
			return 0, g.err
		}
		switch {
		case err == io.EOF:
			g.rdy = len(g.buf)
		case g.tight:
			rdy, hit, found := g.views.tightReady(g.d, g.tv, g.buf, g.base, len(g.buf)-g.d.openTail(g.buf))
			if found {
				g.err = &HitError{Hit: hit}
				clear(g.buf)
				g.buf = g.buf[:0]
				return 0, g.err
			}
			g.rdy = rdy
		case g.views != nil:
			g.rdy = g.views.ready(g.base, len(g.buf), g.hold)
		default:
			g.rdy = max(0, len(g.buf)-g.hold)
		}
		if err != nil {
			g.err = err
		}
	}
}

// scan scans the fresh bytes, and the views of the stream for GuardViews;
// final says the stream ends with them.
func (g *Guard) scan(fresh []byte, final bool) (Hit, bool) {
	low := fresh
	if g.d.fold {
		g.sc.low = lowerASCII(slices.Grow(g.sc.low[:0], len(fresh))[:len(fresh)], fresh)
		low = g.sc.low
	}
	g.sc.write(fresh, low)
	if g.sc.Found() {
		return g.sc.Hits()[0], true
	}
	if g.views == nil {
		return Hit{}, false
	}
	if g.tv == nil {
		return g.views.write(fresh, low, final)
	}
	// A tight guard's views decode a piece at a time: their buffers grow
	// to what one write makes, and an answer held open keeps them.
	for i := 0; i < len(fresh) || i == 0; i += viewPiece {
		j := min(len(fresh), i+viewPiece)
		if hit, ok := g.views.write(fresh[i:j], low[i:j], final && j == len(fresh)); ok {
			return hit, ok
		}
		g.tv.wrote(g.views)
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
