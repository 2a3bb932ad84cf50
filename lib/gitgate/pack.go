package gitgate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
)

// Object types as the pack format numbers them (and go-git's
// plumbing.ObjectType).
const (
	objCommit = uint8(plumbing.CommitObject)
	objTree   = uint8(plumbing.TreeObject)
	objBlob   = uint8(plumbing.BlobObject)
	objTag    = uint8(plumbing.TagObject)
	objOFS    = uint8(plumbing.OFSDeltaObject)
	objREF    = uint8(plumbing.REFDeltaObject)
)

func typeName(t uint8) string { return plumbing.ObjectType(t).String() }

// Hash is an object id.
type Hash = plumbing.Hash

// entry is what the gate keeps of one object of a pack: about 60 bytes,
// whatever the object's size.
type entry struct {
	off   int64 // where its header starts in the pack
	store int64 // 1 + where its resolved content starts in the store; 0: not there
	rsize int64 // its resolved size, once known
	base  int32 // a delta's base in the pack (an OFS delta's); -1 if none or not yet known
	typ   uint8 // as in the pack: commit, tree, blob, tag, or a delta
	rtyp  uint8 // commit, tree, blob or tag, once resolved; 0 before
	kids  bool  // some delta is based on it: keep its content in the store
	hash  Hash  // its id, once resolved
}

func isDelta(t uint8) bool { return t == objOFS || t == objREF }

// LimitError is a push over one of the gate's limits.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// PackError is a pack the gate cannot read as git would: it is refused.
type PackError struct{ Msg string }

func (e *PackError) Error() string { return "the pack does not parse: " + e.Msg }

func packErr(format string, a ...any) error { return &PackError{fmt.Sprintf(format, a...)} }

// visitFunc is given every object of a pack once, resolved, as its content
// streams by: it must read r to its end, or fail.
type visitFunc func(i int32, typ uint8, size int64, r io.Reader) error

// externalFunc writes the content of an object the pack does not hold (a
// thin pack's base) into w, and returns its type; ok is false when it is
// not to be found.
type externalFunc func(ctx context.Context, id Hash, w io.Writer) (typ uint8, ok bool, err error)

// pack reads one pack in bounded memory: a first pass over every object
// in order (headers; the content of whole objects, hashed and visited), a
// second that resolves the deltas, each against a base held in the store.
type pack struct {
	seq     *objReader            // the first pass's, in order, hashing the pack
	rnd     *objReader            // the second's, at random
	size    func() (int64, error) // the pack's bytes, waited for once its trailer is read
	entries []entry
	refBase map[int32]Hash  // a REF delta's base id
	byHash  map[Hash]int32  // resolved objects by id, kept when REF deltas need them
	ext     map[Hash]stored // bases from outside the pack
	st      *store
	lim     *Limits
	visit   visitFunc
	extern  externalFunc
	win     []byte
	dbuf    *bufio.Reader // a delta's reader, reused
	total   int64         // bytes resolved, against MaxResolved
	deltas  int
}

// readPack reads the pack in r (possibly still arriving: size
// says how long it turned out to be) through both passes, visiting every
// object; st holds what deltas need. On an error it still returns the pack
// as far as it was read.
func readPack(ctx context.Context, r io.ReaderAt, size func() (int64, error), st *store, lim *Limits, visit visitFunc, extern externalFunc) (*pack, error) {
	p := &pack{seq: newObjReader(r), rnd: newObjReader(r), size: size, st: st, lim: lim, visit: visit, extern: extern,
		refBase: map[int32]Hash{}, ext: map[Hash]stored{}, win: make([]byte, 64<<10), dbuf: bufio.NewReaderSize(nil, 32<<10)}
	// What was read is returned with the error: where a secret found
	// before it was is still told.
	if err := p.index(ctx); err != nil {
		return p, err
	}
	if err := p.resolve(ctx); err != nil {
		return p, err
	}
	return p, nil
}

// index is the first pass.
func (p *pack) index(ctx context.Context) error {
	p.seq.seek(0, true)
	ph, err := p.seq.header()
	if err != nil {
		return packErr("%v", err)
	}
	n := ph.count
	if int64(n) > int64(p.lim.MaxObjects) {
		return &LimitError{fmt.Sprintf("the pack has %d objects, over the gate's %d", n, p.lim.MaxObjects)}
	}
	// The count may be a lie: the objects are there, or the pack ends
	// short of them. What is allocated grows with what is read.
	p.entries = make([]entry, 0, min(n, 1<<16))
	for i := int32(0); i < int32(n); i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		h, err := p.seq.object()
		if err != nil {
			return packErr("object %d of %d: %v", i+1, n, err)
		}
		e := entry{off: h.off, base: -1, typ: h.typ}
		switch e.typ {
		case objCommit, objTree, objBlob, objTag:
			if err := p.checkSize(e.typ, h.size); err != nil {
				return err
			}
			e.rtyp, e.rsize = e.typ, h.size
			rc, err := p.seq.data(h.size)
			if err != nil {
				return packErr("object %d: %v", i+1, err)
			}
			// A small object is kept as it goes by: it is likely some
			// delta's base, and then need not be inflated again.
			var sw *storeWriter
			var w io.Writer
			if h.size <= keepSmall {
				sw = p.st.writer()
				w = sw
			}
			if e.hash, err = p.hashVisit(i, e.typ, h.size, rc, w, p.visit); err != nil {
				return err
			}
			if sw != nil {
				s, err := sw.done(e.typ)
				if err != nil {
					return err
				}
				e.store = s.off + 1
			}
		case objOFS:
			b := sort.Search(len(p.entries), func(j int) bool { return p.entries[j].off >= h.baseOff })
			if b == len(p.entries) || p.entries[b].off != h.baseOff {
				return packErr("object %d is a delta of offset %d, where no object starts", i+1, h.baseOff)
			}
			e.base = int32(b)
			p.entries[b].kids = true
			fallthrough
		case objREF:
			if h.size > p.lim.MaxObject {
				return &LimitError{fmt.Sprintf("a delta of %d bytes is over the gate's %d per object", h.size, p.lim.MaxObject)}
			}
			if e.typ == objREF {
				p.refBase[i] = h.baseID
			}
			rc, err := p.seq.data(h.size)
			if err != nil {
				return packErr("object %d: %v", i+1, err)
			}
			if e.typ == objOFS && p.entries[e.base].store != 0 {
				// Its base is at hand: resolved now, its delta inflated
				// once.
				p.entries = append(p.entries, e)
				if err := p.resolveNow(i, rc, h.size); err != nil {
					return err
				}
				continue
			}
			// The delta is read again when its base is at hand.
			m, err := io.Copy(io.Discard, rc)
			if err != nil {
				return packErr("object %d: %v", i+1, err)
			}
			if m != h.size {
				return packErr("object %d inflates to %d bytes, its header says %d", i+1, m, h.size)
			}
			p.deltas++
		default:
			return packErr("object %d has type %d, which no object has", i+1, e.typ)
		}
		p.entries = append(p.entries, e)
	}
	end, sumErr := p.seq.trailer()
	if end == 0 {
		return packErr("%v", sumErr)
	}
	// Anything after the trailer would be read by nobody here, and by
	// who knows what upstream.
	size, err := p.size()
	if err != nil {
		return err
	}
	if end != size {
		return packErr("%d bytes follow the pack's trailer", size-end)
	}
	if sumErr != nil {
		return packErr("%v", sumErr)
	}
	return nil
}

// keepSmall is the size up to which an object is kept in the store as the
// first pass resolves it.
const keepSmall = 512 << 10

// resolveNow resolves OFS delta i, whose base is in the store, in the
// first pass: from its delta's stream rc, as it comes.
func (p *pack) resolveNow(i int32, rc io.Reader, length int64) error {
	e := &p.entries[i]
	base := stored{off: p.entries[e.base].store - 1, size: p.entries[e.base].rsize, typ: p.entries[e.base].rtyp}
	// Its size is known only from the delta's header: kept when small.
	sw := p.st.writer()
	cw := &capWriter{w: sw, left: keepSmall}
	if err := p.applyFrom(i, rc, length, base, cw, true); err != nil {
		return err
	}
	if !cw.over {
		s, err := sw.done(e.rtyp)
		if err != nil {
			return err
		}
		e.store = s.off + 1
	}
	return nil
}

// capWriter passes at most left bytes to w, then notes it is over and
// drops the rest: what it passed is left unused in the store.
type capWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (c *capWriter) Write(b []byte) (int, error) {
	if c.over || int64(len(b)) > c.left {
		c.over = true
		return len(b), nil
	}
	c.left -= int64(len(b))
	return c.w.Write(b)
}

func (p *pack) checkSize(typ uint8, size int64) error {
	if size > p.lim.MaxObject {
		return &LimitError{fmt.Sprintf("a %s of %d bytes is over the gate's %d per object", typeName(typ), size, p.lim.MaxObject)}
	}
	if typ != objBlob && size > p.lim.MaxMeta {
		return &LimitError{fmt.Sprintf("a %s of %d bytes is over the gate's %d for commits, trees and tags", typeName(typ), size, p.lim.MaxMeta)}
	}
	p.total += size
	if p.total > p.lim.MaxResolved {
		return &LimitError{fmt.Sprintf("the pack's objects come to more than the gate's %d bytes", p.lim.MaxResolved)}
	}
	return nil
}

// hashVisit streams an object's content r (of the size its header says)
// through its hash, the visitor, and w when not nil, and checks that r
// holds exactly size bytes and ends cleanly.
func (p *pack) hashVisit(i int32, typ uint8, size int64, r io.Reader, w io.Writer, visit visitFunc) (Hash, error) {
	hasher := plumbing.NewHasher(plumbing.ObjectType(typ), size)
	cr := &countReader{r: r}
	var src io.Reader = cr
	if w != nil {
		src = io.TeeReader(cr, w)
	}
	src = io.TeeReader(src, hasher)
	if err := visit(i, typ, size, src); err != nil {
		if stops(err) {
			return Hash{}, err
		}
		return Hash{}, packErr("object %d: %v", i+1, err)
	}
	// The visitor may stop early on its own account: the rest still
	// counts for the hash and the checks.
	if _, err := io.Copy(io.Discard, src); err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return Hash{}, err
		}
		return Hash{}, packErr("object %d: %v", i+1, err)
	}
	if cr.n != size {
		return Hash{}, packErr("object %d is %d bytes, its header says %d", i+1, cr.n, size)
	}
	return hasher.Sum(), nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// resolve is the second pass: every delta, each once its base is known.
func (p *pack) resolve(ctx context.Context) error {
	if p.deltas == 0 {
		return nil
	}
	if len(p.refBase) > 0 {
		p.byHash = make(map[Hash]int32, len(p.entries))
		for i, e := range p.entries {
			if e.rtyp != 0 {
				p.byHash[e.hash] = int32(i)
			}
		}
		for _, h := range p.refBase {
			if j, ok := p.byHash[h]; ok {
				p.entries[j].kids = true
			}
		}
	}
	var queue []int32
	waitIdx := map[int32][]int32{}
	waitHash := map[Hash][]int32{}
	for i := range p.entries {
		e := &p.entries[i]
		if e.rtyp != 0 {
			continue // resolved in the first pass
		}
		switch e.typ {
		case objOFS:
			if p.entries[e.base].rtyp != 0 {
				queue = append(queue, int32(i))
			} else {
				waitIdx[e.base] = append(waitIdx[e.base], int32(i))
			}
		case objREF:
			if _, ok := p.byHash[p.refBase[int32(i)]]; ok {
				queue = append(queue, int32(i))
			} else {
				waitHash[p.refBase[int32(i)]] = append(waitHash[p.refBase[int32(i)]], int32(i))
			}
		}
	}
	done := 0
	for done < p.deltas {
		if len(queue) == 0 {
			// What is left waits on bases the pack does not hold: a thin
			// pack's, which the upstream has (or nobody has).
			ids := make([]Hash, 0, len(waitHash))
			for h := range waitHash {
				ids = append(ids, h)
			}
			sort.Slice(ids, func(a, b int) bool { return string(ids[a][:]) < string(ids[b][:]) })
			for _, h := range ids {
				if err := p.external(ctx, h); err != nil {
					return err
				}
				queue = append(queue, waitHash[h]...)
				delete(waitHash, h)
			}
			if len(queue) == 0 {
				return packErr("%d deltas are based on objects that never resolve (a cycle)", p.deltas-done)
			}
		}
		i := queue[0]
		queue = queue[1:]
		if err := p.resolveDelta(ctx, i); err != nil {
			return err
		}
		done++
		queue = append(queue, waitIdx[i]...)
		delete(waitIdx, i)
		if p.byHash != nil {
			h := p.entries[i].hash
			if _, ok := p.byHash[h]; !ok {
				p.byHash[h] = i
			}
			queue = append(queue, waitHash[h]...)
			delete(waitHash, h)
		}
	}
	return nil
}

// external fetches the base id of a thin pack's deltas into the store.
func (p *pack) external(ctx context.Context, id Hash) error {
	if p.extern == nil {
		return &PackError{fmt.Sprintf("a delta's base %s is not in the pack (a thin pack), and the gate has no way to the upstream's objects", id)}
	}
	w := p.st.writer()
	typ, ok, err := p.extern(ctx, id, w)
	if err != nil {
		return err
	}
	if !ok {
		return &PackError{fmt.Sprintf("a delta's base %s is neither in the pack nor in the upstream", id)}
	}
	s, err := w.done(typ)
	if err != nil {
		return err
	}
	p.ext[id] = s
	return nil
}

// resolveDelta resolves delta i, visiting it; its content goes to the
// store when other deltas are based on it.
func (p *pack) resolveDelta(ctx context.Context, i int32) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	base, err := p.baseOf(i, 0)
	if err != nil {
		return err
	}
	e := &p.entries[i]
	var w *storeWriter
	if e.kids {
		w = p.st.writer()
	}
	var ww io.Writer
	if w != nil {
		ww = w
	}
	if err := p.apply(i, base, ww, true); err != nil {
		return err
	}
	if w != nil {
		s, err := w.done(e.rtyp)
		if err != nil {
			return err
		}
		e.store = s.off + 1
	}
	return nil
}

// apply applies delta i to base, streaming the target through its hash,
// the visitor (when visit) and w; it records the target's type, size and
// id in the entry.
func (p *pack) apply(i int32, base stored, w io.Writer, visit bool) error {
	h, rc, err := p.at(p.entries[i].off)
	if err != nil {
		return packErr("object %d: %v", i+1, err)
	}
	return p.applyFrom(i, rc, h.size, base, w, visit)
}

// at reads the header of the object at off, and returns its data.
func (p *pack) at(off int64) (objHeader, io.Reader, error) {
	p.rnd.seek(off, false)
	h, err := p.rnd.object()
	if err != nil {
		return h, nil, err
	}
	rc, err := p.rnd.data(h.size)
	return h, rc, err
}

// applyFrom is apply with the delta's stream (of length bytes) at hand.
func (p *pack) applyFrom(i int32, rc io.Reader, length int64, base stored, w io.Writer, visit bool) error {
	e := &p.entries[i]
	delta := &countReader{r: rc}
	dr, err := newDeltaReader(delta, newWindowReaderAt(p.st.reader(base), base.size, p.win), base.size, p.dbuf)
	if err != nil {
		return packErr("object %d: %v", i+1, err)
	}
	if e.rtyp == 0 {
		if err := p.checkSize(base.typ, dr.size); err != nil {
			return err
		}
	}
	e.rtyp, e.rsize = base.typ, dr.size
	v := p.visit
	if !visit {
		v = discardVisit
	}
	e.hash, err = p.hashVisit(i, base.typ, dr.size, dr, w, v)
	if err != nil {
		var pe *PackError
		if errors.As(err, &pe) || errors.Is(err, errDelta) {
			return packErr("object %d: %v", i+1, err)
		}
		return err
	}
	// The delta's zlib stream must end where the delta does.
	if _, err := io.Copy(io.Discard, delta); err != nil || delta.n != length {
		return packErr("object %d: its delta is %d bytes, its header says %d (%v)", i+1, delta.n, length, err)
	}
	return nil
}

// stops reports whether err ends the reading of a pack on its own account
// (a secret found, a limit passed, the request gone) rather than as a pack
// that does not parse.
func stops(err error) bool {
	var le *LimitError
	var he *HitError
	var pe *PackError
	return errors.As(err, &le) || errors.As(err, &he) || errors.As(err, &pe) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func discardVisit(_ int32, _ uint8, _ int64, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// baseOf returns the content of delta i's base, in the store.
func (p *pack) baseOf(i int32, depth int) (stored, error) {
	e := &p.entries[i]
	if e.typ == objOFS {
		return p.content(e.base, depth+1)
	}
	id := p.refBase[i]
	if j, ok := p.byHash[id]; ok {
		return p.content(j, depth+1)
	}
	if s, ok := p.ext[id]; ok {
		return s, nil
	}
	return stored{}, packErr("object %d: its base %s is not resolved", i+1, id)
}

// content returns object j's content in the store, putting it there
// first: a whole object is inflated again from the pack, a delta (based
// on an object that was not known to be a base when it was resolved) is
// resolved again.
func (p *pack) content(j int32, depth int) (stored, error) {
	e := &p.entries[j]
	if e.store != 0 {
		return stored{off: e.store - 1, size: e.rsize, typ: e.rtyp}, nil
	}
	if depth > p.lim.MaxDepth {
		return stored{}, &LimitError{fmt.Sprintf("a delta chain deeper than the gate's %d", p.lim.MaxDepth)}
	}
	w := p.st.writer()
	if !isDelta(e.typ) {
		h, rc, err := p.at(e.off)
		if err != nil {
			return stored{}, packErr("object %d: %v", j+1, err)
		}
		n, err := io.Copy(w, rc)
		if err != nil {
			return stored{}, err
		}
		if n != h.size {
			return stored{}, packErr("object %d is %d bytes, its header says %d", j+1, n, h.size)
		}
	} else {
		base, err := p.baseOf(j, depth)
		if err != nil {
			return stored{}, err
		}
		if err := p.apply(j, base, w, false); err != nil {
			return stored{}, err
		}
	}
	s, err := w.done(e.rtyp)
	if err != nil {
		return stored{}, err
	}
	e.store = s.off + 1
	return s, nil
}

// find returns the index of the object with id, or -1, building a sorted
// index on first use.
func (p *pack) find(id Hash) int32 {
	if p.byHash == nil {
		p.byHash = make(map[Hash]int32, len(p.entries))
		for i, e := range p.entries {
			if _, ok := p.byHash[e.hash]; !ok {
				p.byHash[e.hash] = int32(i)
			}
		}
	}
	if j, ok := p.byHash[id]; ok {
		return j
	}
	return -1
}

// read returns object j's content (resolving it into the store).
func (p *pack) read(j int32) (io.Reader, uint8, error) {
	s, err := p.content(j, 0)
	if err != nil {
		return nil, 0, err
	}
	return p.st.reader(s), s.typ, nil
}
