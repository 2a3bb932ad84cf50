package gitgate

import (
	"fmt"
	"io"
	"os"
)

// storeWindow is how much of the store's end is held in memory: the bases
// of deltas are mostly the objects just before them, read straight from
// there instead of through the file.
const storeWindow = 1 << 20

// store is a push's scratch file: the resolved content of the objects
// that deltas are based on, written once and read back at random, so no
// object, whatever its size, is held in memory. Its last bytes are kept
// in a window of memory until more push them out to the file.
type store struct {
	f    *os.File
	buf  []byte // the bytes from at to end, not yet in the file
	at   int64  // file offset of buf[0]
	end  int64  // bytes written
	max  int64  // the most it may hold
	werr error
}

func newStore(dir string, max int64) (*store, error) {
	f, err := os.CreateTemp(dir, "store-*")
	if err != nil {
		return nil, fmt.Errorf("creating the gate's scratch file: %w", err)
	}
	// Nothing but this process needs its name.
	os.Remove(f.Name())
	return &store{f: f, buf: make([]byte, 0, storeWindow), max: max}, nil
}

func (s *store) Close() error { return s.f.Close() }

func (s *store) write(p []byte) error {
	if s.werr != nil {
		return s.werr
	}
	if s.end+int64(len(p)) > s.max {
		return &LimitError{fmt.Sprintf("the objects deltas are based on are over %d bytes", s.max)}
	}
	for len(p) > 0 {
		if len(s.buf) == cap(s.buf) {
			if _, err := s.f.WriteAt(s.buf, s.at); err != nil {
				s.werr = fmt.Errorf("writing the gate's scratch file: %w", err)
				return s.werr
			}
			s.at += int64(len(s.buf))
			s.buf = s.buf[:0]
		}
		n := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+n]
		p = p[n:]
		s.end += int64(n)
	}
	return nil
}

// ReadAt reads from the file what was pushed out to it and from the
// window the rest.
func (s *store) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < s.at {
		k := int(min(int64(len(p)), s.at-off))
		m, err := s.f.ReadAt(p[:k], off)
		n += m
		if m < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	if n < len(p) {
		o := off + int64(n) - s.at
		if o >= int64(len(s.buf)) {
			return n, io.EOF
		}
		n += copy(p[n:], s.buf[o:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// stored is an object's content in the store.
type stored struct {
	off, size int64
	typ       uint8
}

// writer returns a writer that appends to the store; done says where
// what it wrote is.
func (s *store) writer() *storeWriter { return &storeWriter{s: s, start: s.end} }

type storeWriter struct {
	s     *store
	start int64
	err   error
}

func (w *storeWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.s.write(p); err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

func (w *storeWriter) done(typ uint8) (stored, error) {
	if w.err != nil {
		return stored{}, w.err
	}
	return stored{off: w.start, size: w.s.end - w.start, typ: typ}, nil
}

// reader returns the content of o.
func (s *store) reader(o stored) *io.SectionReader { return io.NewSectionReader(s, o.off, o.size) }
