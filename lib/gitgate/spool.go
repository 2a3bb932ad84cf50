package gitgate

import (
	"errors"
	"io"
	"os"
	"sync"
)

// Body is a push's request body as the gate reads it: at random, while it
// may still be arriving.
type Body interface {
	io.ReaderAt
	// Size waits for the whole body and returns its size, or why it did
	// not arrive whole.
	Size() (int64, error)
}

// Spool is a push's body written to a file as it arrives, and read by the
// gate meanwhile: a read of bytes that have not arrived yet waits for
// them. The gate so reads the pack while the client is still sending it,
// and nothing of it is held in memory.
type Spool struct {
	f    *os.File
	mu   sync.Mutex
	cond *sync.Cond
	n    int64 // bytes arrived
	done bool
	err  error // why it ended short; nil when whole
}

// NewSpool spools into f, which it owns from then on.
func NewSpool(f *os.File) *Spool {
	s := &Spool{f: f}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	off := s.n
	s.mu.Unlock()
	n, err := s.f.WriteAt(p, off)
	s.mu.Lock()
	s.n += int64(n)
	s.cond.Broadcast()
	s.mu.Unlock()
	return n, err
}

// Finish says the body is all there (err nil) or will not be (err says
// why): reads waiting for more then end.
func (s *Spool) Finish(err error) {
	s.mu.Lock()
	s.done, s.err = true, err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// errShort is what a read past a body that ended short returns.
var errShort = errors.New("the request body ended short")

func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	for !s.done && s.n < off+int64(len(p)) {
		s.cond.Wait()
	}
	avail, done, ferr := s.n, s.done, s.err
	s.mu.Unlock()
	if off >= avail {
		if done && ferr != nil {
			return 0, errShort
		}
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > avail-off {
		want = p[:avail-off]
	}
	n, err := s.f.ReadAt(want, off)
	if err == nil && n < len(p) {
		err = io.EOF
		if ferr != nil {
			err = errShort
		}
	}
	return n, err
}

// Size waits for the body to end and returns its size.
func (s *Spool) Size() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.done {
		s.cond.Wait()
	}
	return s.n, s.err
}

// Close closes and removes the spool's file.
func (s *Spool) Close() error {
	os.Remove(s.f.Name())
	return s.f.Close()
}

// whole is a Body that is all there.
type whole struct {
	io.ReaderAt
	size int64
}

func (w whole) Size() (int64, error) { return w.size, nil }
