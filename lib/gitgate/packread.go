package gitgate

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// objReader reads a pack's objects at their offsets: the object headers
// as git's unpack_object_header_buffer and get_delta_base read them, and
// their zlib data with Go's zlib reader, which, like git's inflate, knows
// no preset dictionary. (go-git's Scanner resets each object's inflater
// with a 32 KiB dictionary from a shared pool — a stream that refers back
// before its own start, which git refuses, inflates there to pool bytes —
// and reads every byte through a hash; this reader inflates exactly what
// git would, a third faster.)
type objReader struct {
	src    io.ReaderAt
	br     *bufio.Reader
	pos    int64 // of the next byte br gives
	zr     io.ReadCloser
	hashed *trailingHash // the first pass's: every byte read, hashed
}

// packHeader is the 12 bytes a pack starts with.
type packHeader struct {
	version, count uint32
}

func newObjReader(src io.ReaderAt) *objReader {
	return &objReader{src: src, br: bufio.NewReaderSize(nil, 64<<10)}
}

// seek makes the next byte read the one at off. With hash, the reads
// from there on go through a trailingHash.
func (o *objReader) seek(off int64, hash bool) {
	var r io.Reader = io.NewSectionReader(o.src, off, 1<<62)
	o.hashed = nil
	if hash {
		o.hashed = &trailingHash{r: r, h: sha1.New()}
		r = o.hashed
	}
	o.br.Reset(r)
	o.pos = off
}

func (o *objReader) Read(p []byte) (int, error) {
	n, err := o.br.Read(p)
	o.pos += int64(n)
	return n, err
}

func (o *objReader) ReadByte() (byte, error) {
	c, err := o.br.ReadByte()
	if err == nil {
		o.pos++
	}
	return c, err
}

// header reads the pack's header, at the reader's position (0).
func (o *objReader) header() (packHeader, error) {
	var b [12]byte
	if _, err := io.ReadFull(o, b[:]); err != nil {
		if err == io.EOF {
			return packHeader{}, errors.New("empty packfile")
		}
		return packHeader{}, fmt.Errorf("the pack's header: %w", err)
	}
	if string(b[:4]) != "PACK" {
		return packHeader{}, errors.New("malformed pack file signature")
	}
	h := packHeader{version: binary.BigEndian.Uint32(b[4:]), count: binary.BigEndian.Uint32(b[8:])}
	// git writes version 2, and reads 2 and 3, which are the same.
	if h.version != 2 && h.version != 3 {
		return packHeader{}, fmt.Errorf("unsupported packfile version %d", h.version)
	}
	return h, nil
}

// objHeader is an object's header: its type, the size of its data once
// inflated, and for a delta its base (an offset, or an id).
type objHeader struct {
	off     int64
	typ     uint8
	size    int64
	baseOff int64
	baseID  Hash
}

// object reads the header of the object at the reader's position.
func (o *objReader) object() (objHeader, error) {
	h := objHeader{off: o.pos}
	c, err := o.ReadByte()
	if err != nil {
		return h, noEOF(err)
	}
	h.typ = (c >> 4) & 7
	size := uint64(c & 15)
	for shift := uint(4); c&0x80 != 0; shift += 7 {
		if shift > 57 {
			return h, errors.New("an object's size does not fit in 64 bits")
		}
		if c, err = o.ReadByte(); err != nil {
			return h, noEOF(err)
		}
		size += uint64(c&0x7f) << shift
	}
	if size > 1<<62 {
		return h, errors.New("an object's size does not fit in 62 bits")
	}
	h.size = int64(size)
	switch h.typ {
	case objOFS:
		// git's encoding: each continuation adds one before the shift.
		if c, err = o.ReadByte(); err != nil {
			return h, noEOF(err)
		}
		back := uint64(c & 0x7f)
		for c&0x80 != 0 {
			back++
			if back == 0 || back>>(64-7) != 0 {
				return h, errors.New("a delta's base offset does not fit in 64 bits")
			}
			if c, err = o.ReadByte(); err != nil {
				return h, noEOF(err)
			}
			back = back<<7 + uint64(c&0x7f)
		}
		if back == 0 || back > uint64(h.off) {
			return h, fmt.Errorf("a delta's base is %d bytes back, before the pack", back)
		}
		h.baseOff = h.off - int64(back)
	case objREF:
		if _, err := io.ReadFull(o, h.baseID[:]); err != nil {
			return h, noEOF(err)
		}
	}
	return h, nil
}

// data returns the inflated data of the object whose header was just
// read: at most size bytes (more is an error); the caller reads it to its
// end, where zlib's checksum is checked and the reader left on the next
// object.
func (o *objReader) data(size int64) (io.Reader, error) {
	var err error
	if o.zr == nil {
		o.zr, err = zlib.NewReader(o)
	} else {
		err = o.zr.(zlib.Resetter).Reset(o, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("zlib: %w", err)
	}
	return &sizedReader{r: o.zr, left: size}, nil
}

// trailer reads the pack's trailing id and returns where the pack ended,
// and whether the id is the hash of every byte before it (when nothing
// was read past the trailer: a pack followed by anything is refused for
// that before its checksum matters).
func (o *objReader) trailer() (int64, error) {
	var sum [20]byte
	if _, err := io.ReadFull(o, sum[:]); err != nil {
		return 0, fmt.Errorf("the pack's trailer: %w", noEOF(err))
	}
	end := o.pos
	if o.hashed != nil {
		if _, err := o.br.Peek(1); err == nil {
			return end, nil // more follows: the caller says so
		}
		if got := o.hashed.sum(end); !bytes.Equal(got, sum[:]) {
			return end, fmt.Errorf("checksum mismatch: %x instead of %x", sum, got)
		}
	}
	return end, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// sizedReader ends a stream at its declared size: a byte more is an
// error, as is the stream ending before it (zlib's own end).
type sizedReader struct {
	r    io.Reader
	left int64
	over [1]byte
}

var errOversize = errors.New("an object inflates to more than its header says")

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		// The stream must end here: zlib's checksum is read on the way.
		n, err := s.r.Read(s.over[:])
		if n > 0 {
			return 0, errOversize
		}
		return 0, err
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		return n, io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		// Read the end of the stream again through the check above.
		err = nil
	}
	return n, err
}

// trailingHash hashes what is read through it, holding back its last 20
// bytes: at the pack's end, those are the trailer, and the hash is of all
// before them.
type trailingHash struct {
	r    io.Reader
	h    hash.Hash
	held []byte
	n    int64 // bytes read
}

func (t *trailingHash) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.held = append(t.held, p[:n]...)
		if k := len(t.held) - 20; k > 0 {
			t.h.Write(t.held[:k])
			t.held = append(t.held[:0], t.held[k:]...)
		}
		t.n += int64(n)
	}
	return n, err
}

// sum returns the hash of the bytes read before the last 20, when they
// end at end.
func (t *trailingHash) sum(end int64) []byte {
	if t.n != end {
		return nil
	}
	return t.h.Sum(nil)
}
