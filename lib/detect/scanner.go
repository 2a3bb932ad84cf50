package detect

import "slices"

// Scanner finds secrets in a stream written to it in pieces of any size. It
// keeps the last MaxLen-1 bytes between writes, so a secret split across
// writes is found, in constant memory (besides the hits).
type Scanner struct {
	d     *Detector
	tail  []byte // the last min(pos, MaxLen-1) bytes of the stream, as written
	win   []byte // tail plus the start of the next write
	low   []byte // a folding detector's lower-cased copy of a write
	wlow  []byte // and of win
	pos   int64  // bytes written so far
	ms    []match
	hits  []Hit
	taken int // hits handed out by Take and forgotten
}

// NewScanner returns a scanner of a new stream.
func (d *Detector) NewScanner() *Scanner {
	keep := max(0, d.maxLen-1)
	return &Scanner{d: d, tail: make([]byte, 0, keep), win: make([]byte, 0, 2*keep)}
}

// Reset makes s the scanner of a new stream, keeping its buffers.
func (s *Scanner) Reset() {
	for _, b := range [][]byte{s.tail, s.win, s.low, s.wlow} {
		clear(b[:cap(b)]) // what it kept of the last stream, which may hold a secret
	}
	s.tail, s.pos, s.ms, s.hits, s.taken = s.tail[:0], 0, s.ms[:0], nil, 0
}

// Write scans p as the next bytes of the stream. It never fails.
func (s *Scanner) Write(p []byte) (int, error) {
	if s.d.fold {
		s.low = lowerASCII(slices.Grow(s.low[:0], len(p))[:len(p)], p)
		s.write(p, s.low)
		return len(p), nil
	}
	s.write(p, p)
	return len(p), nil
}

// write scans p, of which low is the folded copy (p itself when the
// detector does not fold); low may be s.low.
func (s *Scanner) write(p, low []byte) {
	d := s.d
	keep := cap(s.tail)
	if keep == 0 {
		s.pos += int64(len(p))
		return
	}
	// Every match ending before p was recorded by earlier writes. A new one
	// starts either in p, or in the tail and then ends within keep bytes
	// of p's start.
	if len(s.tail) > 0 {
		w := append(append(s.win[:0], s.tail...), p[:min(len(p), keep)]...)
		s.win = w
		wl := w
		if d.fold {
			s.wlow = lowerASCII(slices.Grow(s.wlow[:0], len(w))[:len(w)], w)
			wl = s.wlow
		}
		s.ms = d.scan(wl, false, s.ms[:0])
		s.ms = slices.DeleteFunc(s.ms, func(m match) bool {
			return m.start >= len(s.tail) || m.start+len(d.pats[m.pat].b) <= len(s.tail)
		})
		s.hits = d.appendHits(s.hits, s.ms, s.pos-int64(len(s.tail)), w)
	}
	s.ms = d.scan(low, false, s.ms[:0])
	s.hits = d.appendHits(s.hits, s.ms, s.pos, p)

	if len(p) >= keep {
		s.tail = append(s.tail[:0], p[len(p)-keep:]...)
	} else {
		drop := max(0, len(s.tail)+len(p)-keep)
		s.tail = append(s.tail[:copy(s.tail, s.tail[drop:])], p...)
	}
	s.pos += int64(len(p))
}

// skip takes p as the next bytes of the stream without looking for
// matches in it: for a caller that knows every match that could end in p
// is found elsewhere. The next write still sees the matches that begin
// in p's last MaxLen-1 bytes.
func (s *Scanner) skip(p []byte) {
	keep := cap(s.tail)
	if len(p) >= keep {
		s.tail = append(s.tail[:0], p[len(p)-keep:]...)
	} else {
		drop := max(0, len(s.tail)+len(p)-keep)
		s.tail = append(s.tail[:copy(s.tail, s.tail[drop:])], p...)
	}
	s.pos += int64(len(p))
}

// Hits returns the hits so far (since the last Take), by offset in the
// stream.
func (s *Scanner) Hits() []Hit { return s.hits }

// Take returns the hits since the last Take and forgets them, so a long
// stream with many hits is scanned in constant memory too.
func (s *Scanner) Take() []Hit {
	h := s.hits
	s.taken += len(h)
	s.hits = nil
	return h
}

// Found reports whether there was any hit so far, taken or not.
func (s *Scanner) Found() bool { return s.taken+len(s.hits) > 0 }
