package gitgate

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// store is a push's scratch file: the resolved content of the objects
// that deltas are based on, written once and read back at random, so no
// object, whatever its size, is held in memory.
type store struct {
	f   *os.File
	w   *bufio.Writer
	end int64 // bytes written
	max int64 // the most it may hold
}

func newStore(dir string, max int64) (*store, error) {
	f, err := os.CreateTemp(dir, "store-*")
	if err != nil {
		return nil, fmt.Errorf("creating the gate's scratch file: %w", err)
	}
	// Nothing but this process needs its name.
	os.Remove(f.Name())
	return &store{f: f, w: bufio.NewWriterSize(f, 64<<10), max: max}, nil
}

func (s *store) Close() error { return s.f.Close() }

// stored is an object's content in the store.
type stored struct {
	off, size int64
	typ       uint8
}

// writer returns a writer that appends to the store; end returns what it
// wrote once it is done.
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
	if w.s.end+int64(len(p)) > w.s.max {
		w.err = &LimitError{fmt.Sprintf("the objects deltas are based on are over %d bytes", w.s.max)}
		return 0, w.err
	}
	n, err := w.s.w.Write(p)
	w.s.end += int64(n)
	if err != nil {
		w.err = fmt.Errorf("writing the gate's scratch file: %w", err)
	}
	return n, w.err
}

// done flushes what was written and returns where it is.
func (w *storeWriter) done(typ uint8) (stored, error) {
	if w.err != nil {
		return stored{}, w.err
	}
	if err := w.s.w.Flush(); err != nil {
		return stored{}, fmt.Errorf("writing the gate's scratch file: %w", err)
	}
	return stored{off: w.start, size: w.s.end - w.start, typ: typ}, nil
}

// reader returns the content of o.
func (s *store) reader(o stored) *io.SectionReader { return io.NewSectionReader(s.f, o.off, o.size) }
