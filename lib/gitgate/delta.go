package gitgate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// errDelta is a delta git would refuse (patch_delta in git's
// patch-delta.c): a source size that is not the base's, an opcode 0, a
// copy outside the base, more data than the target size, data left over.
var errDelta = errors.New("invalid delta")

// deltaReader applies a git delta to a base as it is read: it yields the
// target, holding nothing but a small buffer of the delta, so an object of
// any size is resolved in bounded memory. (go-git's streaming applier is
// unexported, and its exported ReaderFromDelta reads the base again from
// the start for every copy that goes backwards: quadratic on a hostile
// delta.)
type deltaReader struct {
	d        *bufio.Reader
	base     io.ReaderAt
	baseSize int64
	size     int64 // the target's size
	left     int64 // target bytes still to come
	copyOff  int64 // the current copy: from the base at copyOff,
	copyLeft int64 // this many bytes
	insLeft  int   // the current insert: this many bytes from the delta
	done     bool
}

// newDeltaReader reads the delta's header from delta and checks that its
// source size is the base's. br, when not nil, is a buffer to read the
// delta through (reset onto it): one per delta would be most of what the
// gate allocates on a push of many small changes.
func newDeltaReader(delta io.Reader, base io.ReaderAt, baseSize int64, br *bufio.Reader) (*deltaReader, error) {
	if br == nil {
		br = bufio.NewReaderSize(delta, 32<<10)
	} else {
		br.Reset(delta)
	}
	d := &deltaReader{d: br, base: base, baseSize: baseSize}
	src, err := d.varint()
	if err != nil {
		return nil, err
	}
	if src != baseSize {
		return nil, fmt.Errorf("%w: it applies to %d bytes, its base has %d", errDelta, src, baseSize)
	}
	if d.size, err = d.varint(); err != nil {
		return nil, err
	}
	d.left = d.size
	return d, nil
}

// varint reads a delta header size: 7 bits a byte, least significant first.
func (d *deltaReader) varint() (int64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := d.d.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: its header is cut short", errDelta)
		}
		if shift > 56 {
			return 0, fmt.Errorf("%w: a size over 2^63", errDelta)
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 1<<62 {
				return 0, fmt.Errorf("%w: a size over 2^62", errDelta)
			}
			return int64(v), nil
		}
	}
}

func (d *deltaReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case d.copyLeft > 0:
			m := int(min(int64(len(p)-n), d.copyLeft))
			k, err := d.base.ReadAt(p[n:n+m], d.copyOff)
			if k < m {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n + k, fmt.Errorf("reading a delta's base: %w", err)
			}
			n += m
			d.copyOff += int64(m)
			d.copyLeft -= int64(m)
			continue
		case d.insLeft > 0:
			m := min(len(p)-n, d.insLeft)
			if _, err := io.ReadFull(d.d, p[n:n+m]); err != nil {
				return n, fmt.Errorf("%w: an insert is cut short", errDelta)
			}
			n += m
			d.insLeft -= m
			continue
		case d.left == 0:
			if !d.done {
				d.done = true
				// Every byte of the delta must have been used, as git checks.
				if _, err := d.d.ReadByte(); err != io.EOF {
					if err == nil {
						return n, fmt.Errorf("%w: it has data past its target's end", errDelta)
					}
					return n, err
				}
			}
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		cmd, err := d.d.ReadByte()
		if err != nil {
			return n, fmt.Errorf("%w: it ends %d bytes before its target's end", errDelta, d.left)
		}
		switch {
		case cmd&0x80 != 0:
			var off, size uint64
			for i := uint(0); i < 4; i++ {
				if cmd&(1<<i) != 0 {
					b, err := d.d.ReadByte()
					if err != nil {
						return n, fmt.Errorf("%w: a copy is cut short", errDelta)
					}
					off |= uint64(b) << (8 * i)
				}
			}
			for i := uint(0); i < 3; i++ {
				if cmd&(0x10<<i) != 0 {
					b, err := d.d.ReadByte()
					if err != nil {
						return n, fmt.Errorf("%w: a copy is cut short", errDelta)
					}
					size |= uint64(b) << (8 * i)
				}
			}
			if size == 0 {
				size = 0x10000
			}
			if off+size > uint64(d.baseSize) || int64(size) > d.left {
				return n, fmt.Errorf("%w: a copy of %d bytes at %d reaches outside its base or target", errDelta, size, off)
			}
			d.copyOff, d.copyLeft = int64(off), int64(size)
			d.left -= int64(size)
		case cmd != 0:
			if int64(cmd) > d.left {
				return n, fmt.Errorf("%w: an insert reaches past its target's end", errDelta)
			}
			d.insLeft = int(cmd)
			d.left -= int64(cmd)
		default:
			return n, fmt.Errorf("%w: opcode 0 is reserved", errDelta)
		}
	}
	return n, nil
}

// windowReaderAt serves ReadAt from a window of the underlying reader: the
// copies of a delta are small and mostly in order, and one read of the
// store file per copy would be a system call each.
type windowReaderAt struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // of buf[0]
	n    int   // valid bytes in buf
}

func newWindowReaderAt(r io.ReaderAt, size int64, buf []byte) *windowReaderAt {
	return &windowReaderAt{r: r, size: size, buf: buf, off: -1}
}

func (w *windowReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := off + int64(n)
		if o >= w.size {
			return n, io.EOF
		}
		if w.off < 0 || o < w.off || o >= w.off+int64(w.n) {
			if len(p)-n >= len(w.buf) {
				// Large copies go straight through.
				k, err := w.r.ReadAt(p[n:min(len(p), n+int(w.size-o))], o)
				n += k
				if err != nil && !(err == io.EOF && n == len(p)) {
					return n, err
				}
				continue
			}
			k, err := w.r.ReadAt(w.buf[:min(int64(len(w.buf)), w.size-o)], o)
			if k == 0 {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
			w.off, w.n = o, k
		}
		n += copy(p[n:], w.buf[o-w.off:w.n])
	}
	return n, nil
}
