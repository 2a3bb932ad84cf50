package gitgate

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/bb-bottles/bb/lib/detect"
)

// HitError is a known secret found in a push: in which object (its index
// in the pack, -1 for the push's ref names and options), of what type,
// and what held it ("blob", "commit", "tree entry name", "tag", "ref name
// or push option").
type HitError struct {
	Hit    detect.Hit
	Object int32
	ID     Hash
	Type   uint8
	What   string
}

func (e *HitError) Error() string {
	return fmt.Sprintf("secret %s (%s) in a %s", e.Hit.Secret, e.Hit.Encoding, e.What)
}

// maxCompressedDepth is how many layers of gzip or zlib in a blob are
// opened (a .tar.gz of .gz files is two).
const maxCompressedDepth = 3

// commitRec is a commit of the pack: its object, tree and parents (in
// scanner.parents).
type commitRec struct {
	obj    int32
	tree   Hash
	p0, pn int32
}

func (s *scanner) parentsOf(c commitRec) []Hash { return s.parents[c.p0 : c.p0+c.pn] }

// scanner is the visitor that runs the secret detector over every object
// of a pushed pack, and keeps the commits' trees and parents. Small
// objects are searched by a second goroutine while the first inflates and
// hashes the next ones: a push of many small commits keeps two cores busy.
type scanner struct {
	det   *detect.Detector
	lim   *Limits
	whole [maxCompressedDepth + 1][]byte // a buffer per layer, ScanWhole+1 bytes
	meta  []byte
	ids   []byte // an object's ids, one after another
	// commits are the pack's commits, their parents in one slice for all:
	// a push of many commits must not cost a map and a slice each.
	commits []commitRec
	parents []Hash
	budget  *atomic.Int64 // decompressed bytes left for the whole push

	jobs   chan scanJob  // to the worker; nil when there is none
	free   chan []byte   // the jobs' buffers
	done   chan struct{} // closed when the worker has finished
	worker *scanner      // the worker's own buffers
	any    atomic.Bool   // a secret was found, here or by the worker

	mu   sync.Mutex
	werr error // a limit the worker ran into
	// found is the secret of the lowest object found: the rest of the
	// pack is still read (not scanned), so that the message can say which
	// path of which commit held it.
	found *HitError
}

// scanJob is a small object's text for the worker: a blob's content, or
// a commit's, tree's or tag's text and ids.
type scanJob struct {
	obj   int32
	typ   uint8
	what  string
	text  []byte
	ids   []byte
	buf   []byte // what text and ids are in, to give back
	isRaw bool   // a blob: also opened when compressed
}

// asyncMax is the largest object a job takes; larger ones are scanned by
// the goroutine that reads the pack.
const asyncMax = 64 << 10

func newScanner(det *detect.Detector, lim *Limits) *scanner {
	s := &scanner{det: det, lim: lim, budget: new(atomic.Int64)}
	s.budget.Store(lim.MaxResolved)
	if det != nil && runtime.GOMAXPROCS(0) > 1 {
		s.jobs, s.free, s.done = make(chan scanJob, 64), make(chan []byte, 66), make(chan struct{})
		s.worker = &scanner{det: det, lim: lim, budget: s.budget}
		go s.work()
	}
	return s
}

func (s *scanner) work() {
	defer close(s.done)
	for j := range s.jobs {
		if !s.lower(j.obj) {
			s.put(j.buf)
			continue
		}
		var hit detect.Hit
		var ok bool
		what := j.what
		if j.isRaw {
			var err error
			if hit, ok, err = s.worker.scanWhole(j.text, 0); err != nil {
				// A decompression past its budget: the blob cannot be told
				// clean.
				s.mu.Lock()
				if s.werr == nil {
					s.werr = err
				}
				s.mu.Unlock()
			}
		} else if hit, ok = s.det.Search(j.text); !ok {
			hit, ok = s.det.Find(j.ids)
			what = idsOf(j.typ)
		}
		if ok {
			s.record(&HitError{Hit: hit, Object: j.obj, Type: j.typ, What: what})
		}
		s.put(j.buf)
	}
}

// finish waits for the worker, and returns the limit it ran into, if
// any; what it found is in found.
func (s *scanner) finish() error {
	if s.jobs != nil {
		close(s.jobs)
		<-s.done
		s.jobs = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.werr
}

// lower reports whether a secret in object i would be one of a lower
// object than what was found.
func (s *scanner) lower(i int32) bool {
	if !s.any.Load() {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.found == nil || i < s.found.Object
}

func (s *scanner) record(h *HitError) {
	s.mu.Lock()
	if s.found == nil || h.Object < s.found.Object {
		s.found = h
	}
	s.mu.Unlock()
	s.any.Store(true)
}

func (s *scanner) get() []byte {
	select {
	case b := <-s.free:
		return b[:0]
	default:
		return make([]byte, 0, asyncMax)
	}
}

func (s *scanner) put(b []byte) {
	select {
	case s.free <- b:
	default:
	}
}

func idsOf(typ uint8) string {
	if typ == objTree {
		return "tree entry's object id"
	}
	return typeName(typ) + "'s object ids"
}

func (s *scanner) visit(i int32, typ uint8, size int64, r io.Reader) error {
	if typ == objBlob {
		if s.det == nil || !s.lower(i) {
			return nil
		}
		if s.jobs != nil && size <= asyncMax {
			b := s.get()[:size]
			if _, err := io.ReadFull(r, b); err != nil {
				return err
			}
			s.jobs <- scanJob{obj: i, typ: typ, what: "blob", text: b, buf: b, isRaw: true}
			return nil
		}
		hit, ok, err := s.scanStream(r, 0)
		if err != nil {
			return err
		}
		if ok {
			s.record(&HitError{Hit: hit, Object: i, Type: typ, What: "blob"})
		}
		return nil
	}
	b, err := s.readMeta(r, size)
	if err != nil {
		return err
	}
	var names, ids []byte
	switch typ {
	case objCommit:
		c, err := parseCommit(b)
		if err != nil {
			return packErr("%v", err)
		}
		s.commits = append(s.commits, commitRec{obj: i, tree: c.tree, p0: int32(len(s.parents)), pn: int32(len(c.parents))})
		s.parents = append(s.parents, c.parents...)
		// The ids, one after another: a commit nothing reaches is never
		// checked for its parents to exist, and is kept all the same.
		ids = append(s.ids[:0], c.tree[:]...)
		for _, p := range c.parents {
			ids = append(ids, p[:]...)
		}
		s.ids = ids
	case objTree:
		// The modes and names, a line each (a secret split over two names
		// is found in the flattened view); and the ids one after another,
		// as a submodule's is never checked to exist: twenty bytes of the
		// agent's choosing each.
		ids = s.ids[:0]
		err := eachTreeEntry(b, func(e treeEntry) error {
			names = append(append(append(append(names, e.mode...), ' '), e.name...), '\n')
			ids = append(ids, e.id[:]...)
			return nil
		})
		s.ids = ids
		if err != nil {
			return packErr("%v", err)
		}
	}
	if s.det == nil || !s.lower(i) {
		return nil
	}
	what, text := typeName(typ), b
	if typ == objTree {
		what, text = "tree entry name", names
	}
	if s.jobs != nil && len(text)+len(ids) <= asyncMax {
		buf := append(append(s.get(), text...), ids...)
		s.jobs <- scanJob{obj: i, typ: typ, what: what, text: buf[:len(text)], ids: buf[len(text):], buf: buf}
		return nil
	}
	if hit, ok := s.det.Search(text); ok {
		s.record(&HitError{Hit: hit, Object: i, Type: typ, What: what})
	} else if hit, ok := s.det.Find(ids); ok {
		s.record(&HitError{Hit: hit, Object: i, Type: typ, What: idsOf(typ)})
	}
	return nil
}

// readMeta reads a commit, tree or tag whole (index checked its size).
func (s *scanner) readMeta(r io.Reader, size int64) ([]byte, error) {
	if int64(cap(s.meta)) < size {
		s.meta = make([]byte, size)
	}
	b := s.meta[:size]
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// scanStream runs the detector over r: whole, through every view, when
// it is ScanWhole bytes or less; streamed through the flattening guard
// when longer. gzip or zlib data (by its first bytes) is also scanned
// decompressed, up to maxCompressedDepth layers, within the push's
// budget; data that turns out not to decompress is only scanned as is.
func (s *scanner) scanStream(r io.Reader, depth int) (detect.Hit, bool, error) {
	if s.det == nil {
		_, err := io.Copy(io.Discard, r)
		return detect.Hit{}, false, err
	}
	if s.whole[depth] == nil {
		s.whole[depth] = make([]byte, s.lim.ScanWhole+1)
	}
	buf := s.whole[depth]
	n, err := io.ReadFull(r, buf)
	head := buf[:n]
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return s.scanWhole(head, depth)
	}
	if err != nil {
		return detect.Hit{}, false, err
	}
	var rest io.Reader = io.MultiReader(bytes.NewReader(head), r)
	enc := ""
	if depth < maxCompressedDepth {
		enc = sniffCompressed(head)
	}
	type result struct {
		hit detect.Hit
		ok  bool
		err error
	}
	var inner chan result
	var pw *io.PipeWriter
	if enc != "" {
		// The decompressed stream is scanned beside the raw one, in step.
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		inner = make(chan result, 1)
		go func() {
			hit, ok, err := s.scanDecompressed(pr, enc, depth)
			io.Copy(io.Discard, pr) //nolint:errcheck // only to let the raw scan go on
			inner <- result{hit, ok, err}
		}()
		rest = io.TeeReader(rest, pw)
	}
	_, err = io.Copy(io.Discard, s.det.GuardFlat(rest))
	if pw != nil {
		pw.Close()
		res := <-inner
		if res.err != nil || res.ok {
			return res.hit, res.ok, res.err
		}
	}
	if hit, ok := detect.IsHit(err); ok {
		return hit, true, nil
	}
	return detect.Hit{}, false, err
}

// scanWhole searches b, a whole stream, through every view, and what it
// decompresses to when it looks compressed.
func (s *scanner) scanWhole(b []byte, depth int) (detect.Hit, bool, error) {
	if hit, ok := s.det.Search(b); ok {
		return hit, true, nil
	}
	enc := sniffCompressed(b)
	if enc == "" || depth >= maxCompressedDepth {
		return detect.Hit{}, false, nil
	}
	return s.scanDecompressed(bytes.NewReader(b), enc, depth)
}

// scanDecompressed scans r decompressed as enc. Data that does not
// decompress is no error (a text may start like zlib); more than the
// push's budget or MaxDecompressed is.
func (s *scanner) scanDecompressed(r io.Reader, enc string, depth int) (detect.Hit, bool, error) {
	var dr io.Reader
	var err error
	switch enc {
	case "gzip":
		dr, err = gzip.NewReader(r)
	case "zlib":
		dr, err = zlib.NewReader(r)
	}
	if err != nil {
		return detect.Hit{}, false, nil
	}
	lr := &budgetReader{r: dr, left: s.lim.MaxDecompressed, budget: s.budget}
	hit, ok, err := s.scanStream(lr, depth+1)
	if ok {
		hit.Encoding = enc + "/" + hit.Encoding
		return hit, true, nil
	}
	var le *LimitError
	if errors.As(err, &le) {
		return detect.Hit{}, false, err
	}
	return detect.Hit{}, false, nil // not compressed after all, or cut: what decoded was scanned
}

// budgetReader fails with a LimitError past left bytes, or past what the
// push's budget has left.
type budgetReader struct {
	r      io.Reader
	left   int64
	budget *atomic.Int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, &LimitError{"a blob decompresses to more bytes than the gate scans (MaxDecompressed)"}
	}
	if b.budget.Add(-int64(n)) < 0 {
		return n, &LimitError{"the push's blobs decompress to more bytes than the gate scans"}
	}
	return n, err
}

// sniffCompressed names the compression b starts like: gzip's magic, or a
// zlib header (which text can start like too: a caller takes a failure to
// decompress as "not compressed").
func sniffCompressed(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8:
		return "gzip"
	case len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0:
		return "zlib"
	}
	return ""
}
