package detect

import "io"

// guardChunk is how much a guard reads from its source at a time.
const guardChunk = 32 << 10

// Guard returns a reader of r's bytes that holds each byte back until no
// match can include it: MaxLen-1 bytes behind what it has read from r.
// When it finds a secret, Read returns a *HitError (then and ever after),
// and no byte of the match, in any encoding, has been returned. At r's end
// it releases the tail. An error from r other than io.EOF is returned
// after the bytes known to be clean, and the held-back bytes are never
// released.
func (d *Detector) Guard(r io.Reader) io.Reader {
	hold := max(0, d.maxLen-1)
	return &guard{r: r, sc: d.NewScanner(), hold: hold, buf: make([]byte, 0, hold+guardChunk)}
}

type guard struct {
	r    io.Reader
	sc   *Scanner
	hold int
	buf  []byte // buf[off:off+ready] may be returned; buf[off+ready:] is held
	off  int
	rdy  int
	err  error // sticky: a *HitError, r's error, or io.EOF
}

func (g *guard) Read(p []byte) (int, error) {
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
		g.sc.Write(fresh)
		if g.sc.Found() {
			g.err = &HitError{Hit: g.sc.Hits()[0]}
			clear(g.buf)
			g.buf = g.buf[:0]
			return 0, g.err
		}
		switch {
		case err == io.EOF:
			g.rdy = len(g.buf)
		default:
			g.rdy = max(0, len(g.buf)-g.hold)
		}
		if err != nil {
			g.err = err
		}
	}
}
