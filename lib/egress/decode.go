package egress

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// contentEncodings lists a request's content codings in the order they
// were applied; identity is dropped. A coding the sidecar cannot undo is
// an error: what cannot be scanned does not leave.
func contentEncodings(h http.Header) ([]string, error) {
	out, unknown := parseCodings(h)
	switch {
	case unknown != "":
		return nil, fmt.Errorf("the request body's content-encoding %q cannot be scanned", unknown)
	case len(out) > 4:
		return nil, fmt.Errorf("the request body has %d content-encodings; at most 4 are scanned", len(out))
	}
	return out, nil
}

// parseCodings reads a Content-Encoding, requests' and answers' alike: the
// codings the sidecar can undo in the order they were applied (identity
// dropped), or the first it cannot.
func parseCodings(h http.Header) (codings []string, unknown string) {
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			switch c = strings.ToLower(strings.TrimSpace(c)); c {
			case "", "identity":
			case "gzip", "x-gzip", "deflate":
				codings = append(codings, c)
			default:
				return nil, c
			}
		}
	}
	return codings, ""
}

// scanDecoded undoes the codings of a whole body and scans the result as
// it streams out of the decompressor, with the compressed data in it: a
// body that expands beyond the budget is refused, one that does not decode
// is blocked.
func (s *Server) scanDecoded(det *detect.Detector, body []byte, encs []string) *bodyFail {
	o := s.newOpener(det, len(body), true)
	src := func(own *int64) (io.Reader, error) {
		var r io.Reader = bytes.NewReader(body)
		for i := len(encs) - 1; i >= 0; i-- {
			var err error
			switch encs[i] {
			case "gzip", "x-gzip":
				r, err = gzip.NewReader(r)
			case "deflate":
				r, err = newDeflateReader(r)
			}
			if err != nil {
				return nil, fmt.Errorf("as %s: %w", encs[i], err)
			}
		}
		return &counted{r: r, own: own, o: o}, nil
	}
	f, err := o.scan(src, 1, strings.Join(encs, "+")+"/")
	if f != nil {
		return f
	}
	if err != nil {
		return &bodyFail{status: http.StatusForbidden, decision: audit.Block,
			reason: fmt.Sprintf("the request body does not decode %s: %v", strings.Join(encs, ","), err)}
	}
	return nil
}

// isGzip reports a gzip stream's magic at the start of b.
func isGzip(b []byte) bool { return len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8 }

// sniffCompressed names the coding b starts like, "" if none: gzip's
// magic, or a zlib header (two bytes a text can start with too: a caller
// must take a failure to decode as "not compressed").
func sniffCompressed(b []byte) string {
	switch {
	case isGzip(b):
		return "gzip"
	case len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0:
		return "deflate"
	}
	return ""
}

// newDeflateReader reads "deflate" as RFC 9110 means it (zlib), or as raw
// DEFLATE, which some clients send under that name.
func newDeflateReader(r io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(io.LimitReader(r, 2))
	if err != nil {
		return nil, err
	}
	rest := io.MultiReader(bytes.NewReader(b), r)
	if len(b) == 2 && b[0]&0x0f == 8 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0 {
		return zlib.NewReader(rest)
	}
	return flate.NewReader(rest), nil
}

// Compressed data in a body is opened and scanned: gzip and zip members
// wherever their signature is, and zlib or raw DEFLATE where a stream
// starts (the body, a multipart part, a stream opened, a stored zip
// entry), nested up to maxOpenDepth, within a budget of decompressed
// bytes. A stream inside a decompressed one is read again from the outer
// stream's start rather than held: memory stays bounded by the depth.
const (
	maxOpenDepth = 3    // layers opened inside one another
	maxMembers   = 1024 // gzip members and zip entries opened in one stream
	maxRatio     = 1024 // bytes a body may decompress to per byte of it, past 1 MiB
)

// errBudget is what a decompressed stream returns past its budget, and
// errWork what every stream returns once opening the body took more than
// workRatio times it.
var (
	errBudget = errors.New("decompressed past the budget")
	errWork   = errors.New("decompressed past the work budget")
)

// workRatio bounds all the decompressing an opener does (the streams,
// and reading outer ones again to reach the members in them), as a
// multiple of its budget.
const workRatio = 4

// source makes a new reader of a stream, from its start, that charges what
// it decompresses to own (when not nil).
type source func(own *int64) (io.Reader, error)

// member is where a compressed stream may start in another stream.
type member struct {
	off  int64
	kind string // gzip, zip, or start: zlib if it has the header, else raw DEFLATE
}

// opener opens and scans the compressed data of one body.
type opener struct {
	det      *detect.Detector
	work     int64 // decompressed bytes it may still read, in all
	budget   int64 // bytes one stream may decompress to
	complete bool  // the body is whole: a stream cut at its end is only cut short
	prefix   int   // the bytes of the body there are, when not complete
}

func (s *Server) newOpener(det *detect.Detector, size int, complete bool) *opener {
	b := min(s.cfg.MaxDecompressed, max(1<<20, maxRatio*int64(size)))
	return &opener{det: det, work: workRatio * b, budget: b, complete: complete, prefix: size}
}

func (o *opener) tooLarge(err error) *bodyFail {
	if errors.Is(err, errWork) {
		return o.refuse("the request body's compressed data takes more than %d bytes of decompressing to open", workRatio*o.budget)
	}
	return o.refuse("a stream of compressed data in the request body decompresses to more than %d bytes", o.budget)
}

func (o *opener) refuse(format string, args ...any) *bodyFail {
	return &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block, reason: fmt.Sprintf(format, args...)}
}

// counted charges what r decompresses to its stream's budget (own) and
// to the opener's work.
type counted struct {
	r   io.Reader
	own *int64
	o   *opener
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.o.work -= int64(n)
	if c.own != nil {
		*c.own -= int64(n)
		if *c.own < 0 {
			return n, errBudget
		}
	}
	if c.o.work < 0 {
		return n, errWork
	}
	return n, err
}

// openBody opens the compressed members of a body (or of the first
// bytes of a large one, complete false) whose content type is ctype.
func (o *opener) openBody(body []byte, ctype string) *bodyFail {
	var w memberWatch
	w.Write(body) //nolint:errcheck // never fails
	if len(w.found) > maxMembers {
		return o.refuse("the request body holds more than %d compressed members", maxMembers)
	}
	ms := w.members()
	starts := map[int64]bool{0: true}
	for _, p := range partStarts(body, ctype) {
		ms = append(ms, member{int64(p), "start"})
		starts[int64(p)] = true
	}
	for _, m := range ms {
		// Of a large body, only the start is here: a zip's later entries,
		// a gzip's later members are not.
		if !o.complete && m.kind != "start" && starts[m.off] {
			return o.refuse("a body over %d bytes with %s data at its start or a part's cannot be scanned before it leaves", o.prefix, m.kind)
		}
	}
	src := func(*int64) (io.Reader, error) { return bytes.NewReader(body), nil }
	for _, m := range ms {
		if !o.complete && m.off > 0 && m.off >= int64(len(body)-partSniff) {
			continue // too near the end to judge: the sniffer of the rest does
		}
		if f := o.open(src, m, 1, ""); f != nil {
			return f
		}
	}
	return nil
}

// An upload of a compressed file is often escaped: percent-escaped in a
// form, base64 in JSON (GitHub's contents API) or in a multipart part whose
// Content-Transfer-Encoding is base64, wrapped or not. A whole body is
// opened through its views too: the decoded view where it holds a gzip or
// zip signature, and the base64 in its flattened view that starts like
// gzip ("H4sI"), a zip entry ("UEsDB") or zlib ("eJ", "eN", "eA", "eF":
// 78 01, 78 5e, 78 9c, 78 da).
var b64Sigs = [][]byte{[]byte("H4sI"), []byte("UEsDB"), []byte("eJ"), []byte("eN"), []byte("eA"), []byte("eF")}

// openEscaped opens the compressed data of a whole body's views. The
// base64 it decodes whole (gzip and zip, whose signatures are rare by
// chance) is bounded by the size of the body; zlib is read as a stream,
// which fails within a few bytes of a false start.
func (o *opener) openEscaped(body []byte, ctype string) *bodyFail {
	plus := strings.HasPrefix(strings.ToLower(strings.TrimSpace(ctype)), "application/x-www-form-urlencoded")
	tried := 0
	if f := o.openZlib(body, &tried); f != nil {
		return f
	}
	// Of the escapes the decoded view undoes, only %XX stands for a byte
	// that is not ASCII: JSON and HTML escapes stand for characters, which
	// carry no compressed data.
	if bytes.IndexByte(body, '%') >= 0 {
		if v, changed := detect.Decoded(body, plus); changed {
			if hasSig(v) {
				if f := o.openBody(v, ""); f != nil {
					return f
				}
			}
			if f := o.openZlib(v, &tried); f != nil {
				return f
			}
		}
	}
	if !hasB64Sig(body) {
		return nil // the signature is at the start of the base64, before any line break
	}
	flat, _ := detect.Flattened(body)
	decoded := 0
	for i, sig := range b64Sigs {
		end := 0 // of the base64 run at is in
		for at := 0; ; at++ {
			k := bytes.Index(flat[at:], sig)
			if k < 0 {
				break
			}
			at += k
			if at >= end {
				end = at + len(b64Run(flat[at:]))
			}
			run := flat[at:end]
			if i >= 2 { // zlib
				src := func(*int64) (io.Reader, error) { return b64Reader(run), nil }
				if len(run) < 4 {
					continue
				}
				// The header from the first four characters, without a
				// decoder: most tries end here.
				var c [4]byte
				var hd [3]byte
				for j, ch := range run[:4] {
					switch ch {
					case '-':
						ch = '+'
					case '_':
						ch = '/'
					}
					c[j] = ch
				}
				if _, err := base64.StdEncoding.Decode(hd[:], c[:]); err != nil || !zlibHeader(hd[0], hd[1]) {
					continue
				}
				if tried++; tried > maxMembers {
					return o.refuse("the request body holds more than %d base64 runs that start like zlib", maxMembers)
				}
				if f := o.open(src, member{0, "start"}, 1, "base64/"); f != nil {
					return f
				}
				continue
			}
			if decoded += len(run); decoded > 2*len(body) {
				return o.refuse("the request body holds more base64 that starts like compressed data than can be opened")
			}
			b, err := io.ReadAll(b64Reader(run))
			if len(b) == 0 {
				continue
			}
			_ = err // what decoded before a bad byte is opened
			if f := o.openBody(b, ""); f != nil {
				if f.hit != nil {
					f.hit.Encoding = "base64/" + f.hit.Encoding
				}
				return f
			}
		}
	}
	return nil
}

// openZlib opens what has a zlib header anywhere in b past its start (a
// prefix before compressed data, as "data=" in a form). In text a zlib
// header never appears (its second byte is not ASCII after an "x"); in
// binary data about one in 16,000 positions has one, and a false start
// fails within a few bytes. More than maxMembers tries are refused:
// decoys must not be a way to hide the real one.
func (o *opener) openZlib(b []byte, tried *int) *bodyFail {
	src := func(*int64) (io.Reader, error) { return bytes.NewReader(b), nil }
	for at := 1; at+1 < len(b); at++ {
		k := bytes.IndexByte(b[at:len(b)-1], 0x78)
		if k < 0 {
			break
		}
		at += k
		if !zlibHeader(b[at], b[at+1]) {
			continue
		}
		if *tried++; *tried > maxMembers {
			return o.refuse("the request body holds more than %d places that start like zlib", maxMembers)
		}
		if f := o.open(src, member{int64(at), "start"}, 1, ""); f != nil {
			return f
		}
	}
	return nil
}

// zlibHeader reports the header of a zlib stream as compressors write it:
// a 32 KiB window, no preset dictionary, the check bits right.
func zlibHeader(a, b byte) bool {
	return a == 0x78 && b&0x20 == 0 && (int(a)<<8|int(b))%31 == 0
}

// hasB64Sig reports whether b holds the start of base64 of compressed data.
func hasB64Sig(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		switch b[i] {
		case 'e':
			if c := b[i+1]; c == 'J' || c == 'N' || c == 'A' || c == 'F' {
				return true
			}
		case 'H', 'U':
			if bytes.HasPrefix(b[i:], b64Sigs[0]) || bytes.HasPrefix(b[i:], b64Sigs[1]) {
				return true
			}
		}
	}
	return false
}

// hasSig reports a gzip or zip signature in b.
func hasSig(b []byte) bool {
	return bytes.Contains(b, []byte{0x1f, 0x8b, 8}) || bytes.Contains(b, []byte("PK\x03\x04"))
}

// b64Run returns the base64 (either alphabet) at the start of b, without
// its padding.
func b64Run(b []byte) []byte {
	n := 0
	for n < len(b) && b64Char[b[n]] {
		n++
	}
	return b[:n]
}

var b64Char = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_") {
		t[c] = true
	}
	return t
}()

// b64Reader decodes run, either alphabet, its last partial group dropped.
func b64Reader(run []byte) io.Reader {
	run = run[:len(run)/4*4]
	return base64.NewDecoder(base64.StdEncoding, &urlToStd{r: bytes.NewReader(run)})
}

// urlToStd reads the URL alphabet as the standard one.
type urlToStd struct{ r io.Reader }

func (u *urlToStd) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	for i, c := range p[:n] {
		switch c {
		case '-':
			p[i] = '+'
		case '_':
			p[i] = '/'
		}
	}
	return n, err
}

// open opens the member m of the stream src as a stream at depth, and
// scans it; path names the layers around it, for the hit's encoding.
func (o *opener) open(src source, m member, depth int, path string) *bodyFail {
	kind := m.kind
	child := func(own *int64) (io.Reader, error) {
		r, err := src(nil)
		if err != nil {
			return nil, err
		}
		if sk, ok := r.(io.Seeker); ok {
			_, err = sk.Seek(m.off, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, r, m.off)
		}
		if err != nil {
			return nil, err
		}
		br := bufio.NewReaderSize(r, 512)
		var z io.Reader
		switch m.kind {
		case "gzip":
			z, err = gzip.NewReader(br)
		case "zip":
			z, kind, err = zipEntry(br)
		default:
			z, kind, err = startStream(br)
		}
		if err != nil {
			return nil, err
		}
		return &counted{r: z, own: own, o: o}, nil
	}
	if depth > maxOpenDepth {
		if m.kind == "start" {
			return nil // no signature, too deep to try
		}
		if _, err := child(nil); err != nil {
			return o.openFailed(err)
		}
		return o.refuse("the request body nests compressed data more than %d deep", maxOpenDepth)
	}
	f, err := o.scan(child, depth, path+kind+"/")
	if f == nil && err != nil {
		f = o.openFailed(err)
	}
	return f
}

// openFailed says what to do with a stream that did not open: refuse
// what cannot be scanned, and let by what is not compressed data.
func (o *opener) openFailed(err error) *bodyFail {
	switch {
	case errors.Is(err, errZip):
		return o.refuse("the request body holds a zip entry that cannot be opened: %v", err)
	case errors.Is(err, errWork):
		return o.tooLarge(err)
	}
	return nil
}

// scan scans a decompressed stream in every view, then opens its members.
// It returns why the stream stopped decoding, if not at its end.
func (o *opener) scan(src source, depth int, path string) (*bodyFail, error) {
	own := o.budget
	r, err := src(&own)
	if err != nil {
		return nil, err
	}
	// Most streams tried are short, or no streams at all (text read as
	// DEFLATE): those are searched whole, without a guard's buffers.
	first := make([]byte, 4<<10)
	n, err := fill(r, first)
	w := memberWatch{}
	if err != nil {
		first = first[:n]
		w.Write(first) //nolint:errcheck // never fails
		if h, ok := o.det.Search(first); ok {
			err = &detect.HitError{Hit: h}
		}
	} else {
		_, err = io.Copy(&w, o.det.GuardViews(io.MultiReader(bytes.NewReader(first), r)))
	}
	if h, ok := detect.IsHit(err); ok {
		h.Encoding = path + h.Encoding
		return &bodyFail{hit: &h}, nil
	}
	switch {
	case errors.Is(err, errBudget) || errors.Is(err, errWork):
		return o.tooLarge(err), nil
	case !o.complete && errors.Is(err, io.ErrUnexpectedEOF):
		return o.refuse("compressed data runs past the first %d bytes of a request body over that size: it cannot be scanned before it leaves", o.prefix), nil
	case len(w.found) > maxMembers:
		return o.refuse("the request body holds more than %d compressed members", maxMembers), nil
	case err == io.EOF:
		err = nil
	}
	// Any other error: the stream does not decode past it, and what did
	// decode was scanned.
	if n == 0 {
		return nil, err
	}
	for _, m := range w.members() {
		if f := o.open(src, m, depth+1, path); f != nil {
			return f, err
		}
	}
	return nil, err
}

// fill reads into b until it is full or r fails; io.EOF is r's end.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// memberWatch records where gzip and zip signatures are in a stream
// written to it.
type memberWatch struct {
	n     int64
	tail  []byte // the last 3 bytes written
	found []member
	buf   []byte
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 8}
	zipMagic  = []byte("PK\x03\x04")
)

func (w *memberWatch) Write(p []byte) (int, error) {
	// A signature that begins in the tail ends in p: look at the two
	// together for those, then in p for the rest.
	w.buf = append(append(w.buf[:0], w.tail...), p[:min(len(p), 3)]...)
	w.find(w.buf, w.n-int64(len(w.tail)), len(w.tail))
	w.find(p, w.n, 0)
	w.n += int64(len(p))
	w.buf = append(append(w.buf[:0], w.tail...), p[max(0, len(p)-3):]...)
	w.tail = append(w.tail[:0], w.buf[max(0, len(w.buf)-3):]...)
	return len(p), nil
}

// find records the signatures in b, at stream offset base, that begin
// before tail (all of them when tail is 0) and end after it.
func (w *memberWatch) find(b []byte, base int64, tail int) {
	for _, sig := range []struct {
		b    []byte
		kind string
	}{{gzipMagic, "gzip"}, {zipMagic, "zip"}} {
		for i := 0; i < len(b) && len(w.found) <= maxMembers; i++ {
			j := bytes.Index(b[i:], sig.b)
			if j < 0 {
				break
			}
			i += j
			if tail > 0 && (i >= tail || i+len(sig.b) <= tail) {
				continue
			}
			w.found = append(w.found, member{base + int64(i), sig.kind})
		}
	}
}

// members returns what w found, by offset, after a start at 0.
func (w *memberWatch) members() []member {
	slices.SortFunc(w.found, func(a, b member) int { return cmp.Compare(a.off, b.off) })
	return append([]member{{0, "start"}}, w.found...)
}

// errZip is a zip entry the sidecar cannot open: what it holds cannot be
// scanned.
var errZip = errors.New("zip entry")

// zipEntry reads a zip local file header and returns a reader of the
// entry's data, decompressed: DEFLATE, or for a stored entry the bytes
// that follow (its data is in the outer stream as it is, scanned there;
// opened as a stream start, it may itself be zlib or raw DEFLATE).
func zipEntry(br *bufio.Reader) (io.Reader, string, error) {
	var h [30]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, "", err
	}
	version := binary.LittleEndian.Uint16(h[4:])
	flags := binary.LittleEndian.Uint16(h[6:])
	method := binary.LittleEndian.Uint16(h[8:])
	skip := int64(binary.LittleEndian.Uint16(h[26:])) + int64(binary.LittleEndian.Uint16(h[28:]))
	switch {
	case version&0xff > 63 || method != 0 && method != 8 && !zipMethods[method]:
		// Four bytes of binary data that happen to be a signature: what
		// follows is no zip header.
		return nil, "", errors.New("not a zip local file header")
	case flags&1 != 0:
		return nil, "", fmt.Errorf("%w is encrypted", errZip)
	case method != 0 && method != 8:
		return nil, "", fmt.Errorf("%w has compression method %d; only stored (0) and deflate (8) are opened", errZip, method)
	}
	if _, err := io.CopyN(io.Discard, br, skip); err != nil {
		return nil, "", err
	}
	if method == 0 {
		r, _, err := startStream(br)
		return r, "zip", err
	}
	return newFlate(br), "zip", nil
}

// zipMethods are the compression methods of APPNOTE 4.4.5 (and AES, 99)
// other than stored and deflate.
var zipMethods = map[uint16]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 9: true, 10: true,
	12: true, 14: true, 16: true, 18: true, 19: true, 20: true, 93: true, 94: true, 95: true, 96: true, 97: true, 98: true, 99: true}

// startStream reads where a stream may start with no signature: as zlib
// if it has the header, else as raw DEFLATE. Text read as DEFLATE fails
// within a few bytes.
func startStream(br *bufio.Reader) (io.Reader, string, error) {
	b, err := br.Peek(2)
	if err != nil {
		return nil, "", err
	}
	if sniffCompressed(b) == "deflate" {
		z, err := zlib.NewReader(br)
		return z, "zlib", err
	}
	return newFlate(br), "deflate", nil
}

// flates recycles DEFLATE readers: nearly every body is tried as one, and
// a new one is tens of kilobytes.
var flates = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// pooledFlate gives its reader back to the pool at its end.
type pooledFlate struct {
	r   io.ReadCloser
	err error
}

func newFlate(r io.Reader) io.Reader {
	f := flates.Get().(io.ReadCloser)
	f.(flate.Resetter).Reset(r, nil) //nolint:errcheck // never fails without a dictionary
	return &pooledFlate{r: f}
}

func (p *pooledFlate) Read(b []byte) (int, error) {
	if p.r == nil {
		return 0, p.err
	}
	n, err := p.r.Read(b)
	if err != nil {
		flates.Put(p.r)
		p.r, p.err = nil, err
	}
	return n, err
}

// partStarts returns where the parts of a multipart body start (after
// each part's head), when ctype says it is one.
func partStarts(body []byte, ctype string) []int {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil
	}
	delim := []byte("--" + params["boundary"])
	var out []int
	for i := 0; ; {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			return out
		}
		i += j + len(delim)
		if i-len(delim) > 0 && body[i-len(delim)-1] != '\n' {
			continue
		}
		if h := headEnd(body[i:]); h >= 0 {
			out = append(out, i+h)
		}
	}
}

// headEnd returns where a part's content starts in b, which starts just
// after its delimiter: past the first blank line; -1 if none.
func headEnd(b []byte) int {
	crlf, lf := bytes.Index(b, []byte("\r\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return -1
}

// partSniff is how much of a part's content a large body's sniffer holds
// to try it as zlib or raw DEFLATE: text and random bytes read as DEFLATE
// fail or end well within it (none of 37,000 files nor of 200,000 random
// blocks went on past 512 bytes); a real stream goes on.
const partSniff = 512

// maxPartHead bounds a part's head in a large body.
const maxPartHead = 16 << 10

// partSniffer passes a large body on and fails, before any byte of it, at
// the first compressed data past the first bytes (those were opened whole)
// that goes on past partSniff bytes: gzip or a zip entry anywhere, and in
// a multipart body, a part that starts with gzip or zip, or with zlib or
// raw DEFLATE. A stream that ends within them is searched.
type partSniffer struct {
	det     *detect.Detector
	r       io.Reader
	delim   []byte // "--" and the boundary
	skip    int64  // parts that start before this offset were opened already
	buf     []byte // read and not yet passed on; buf[:ok] may be
	base    int64  // stream offset of buf[0]
	ok      int
	from    int  // where in buf the next delimiter may start
	sigFrom int  // and the next signature
	escFrom int  // and the next escaped one
	nJudged int  // signatures judged
	nEsc    int  // escaped signatures looked at
	last    byte // the last byte passed on
	eof     bool
	err     error
}

// sniffParts returns r (the body, from its start) with its parts sniffed,
// when ctype is multipart; first is how much of it was opened already.
func sniffParts(det *detect.Detector, r io.Reader, ctype string, first int) (io.Reader, *bodyFail) {
	s := &partSniffer{det: det, r: r, skip: int64(first), buf: make([]byte, 0, 64<<10)}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return s, nil
	}
	bd := params["boundary"]
	if bd == "" || len(bd) > 70 {
		return nil, &bodyFail{status: http.StatusBadRequest, decision: audit.Deny,
			reason: fmt.Sprintf("a multipart body's boundary must be 1 to 70 characters (RFC 2046), not %d", len(bd))}
	}
	s.delim = []byte("--" + bd)
	return s, nil
}

// sniffError is a part a sniffer refuses.
type sniffError struct{ fail *bodyFail }

func (e *sniffError) Error() string { return e.fail.reason }

func (s *partSniffer) Read(p []byte) (int, error) {
	for {
		if s.ok > 0 {
			n := copy(p, s.buf[:s.ok])
			s.last = s.buf[n-1]
			s.buf = s.buf[:copy(s.buf, s.buf[n:])]
			s.base += int64(n)
			s.ok -= n
			s.from = max(0, s.from-n)
			s.sigFrom = max(0, s.sigFrom-n)
			s.escFrom = max(0, s.escFrom-n)
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.eof {
			return 0, io.EOF
		}
		if len(s.buf) == cap(s.buf) {
			// Cannot happen (what is held is bounded well below the
			// buffer), but a sniffer that cannot read must not spin.
			return 0, &sniffError{&bodyFail{status: http.StatusBadRequest, decision: audit.Deny,
				reason: "a large body the sidecar could not sniff"}}
		}
		n, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			s.err = err
		}
		if f := s.sniff(); f != nil {
			s.err = &sniffError{f}
		}
	}
}

// sniff looks at the parts and signatures that start in buf, and sets ok
// to what may be passed on: up to one it cannot judge yet.
func (s *partSniffer) sniff() *bodyFail {
	okS, f := s.sniffSigs()
	if f != nil {
		return f
	}
	okE, f := s.sniffEscaped()
	if f != nil {
		return f
	}
	okS = min(okS, okE)
	okP := len(s.buf)
	if s.delim != nil {
		if okP, f = s.sniffParts(); f != nil {
			return f
		}
	}
	s.ok = min(okS, okP)
	return nil
}

// sniffSigs judges the gzip and zip signatures in buf wherever they are,
// and returns how much of buf may be passed on.
func (s *partSniffer) sniffSigs() (int, *bodyFail) {
	end := s.eof || s.err != nil
	for {
		// One pass for both signatures' first bytes: searching for each
		// apart, again after every one found, is quadratic in a body of
		// nothing but one of them.
		j := bytes.IndexAny(s.buf[s.sigFrom:], "\x1fP")
		q := s.sigFrom + j
		if j >= 0 && len(s.buf)-q < len(zipMagic) && !end {
			s.sigFrom = q
			return q, nil // a signature may go on in the next read
		}
		if j < 0 {
			s.sigFrom = len(s.buf)
			return len(s.buf), nil
		}
		if !bytes.HasPrefix(s.buf[q:], gzipMagic) && !bytes.HasPrefix(s.buf[q:], zipMagic) {
			s.sigFrom = q + 1
			continue
		}
		if len(s.buf)-q < partSniff && !end && s.base+int64(q) >= s.skip {
			s.sigFrom = q
			return q, nil
		}
		s.sigFrom = q + 1
		if s.base+int64(q) < s.skip {
			continue
		}
		if !plausibleHeader(s.buf[q:min(len(s.buf), q+partSniff)]) {
			continue // a signature in binary data by chance
		}
		if s.nJudged++; s.nJudged > maxMembers {
			return 0, &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
				reason: fmt.Sprintf("a large body holds more than %d gzip or zip headers", maxMembers)}
		}
		if f := s.judgeSig(s.buf[q:min(len(s.buf), q+partSniff)]); f != nil {
			return 0, f
		}
	}
}

// escSigs are where gzip and a zip entry may start when escaped: base64,
// and percent escapes (in either case; "P" and "K" need none), which
// pctSig looks at closer.
var escSigs = [][]byte{b64Sigs[0], b64Sigs[1], []byte("%1"), []byte("%03%04")}

// pctSig returns where the percent-escaped gzip or zip signature that the
// anchor at q in b belongs to starts, or -1.
func pctSig(b []byte, q int) int {
	if b[q+1] == '1' {
		if len(b)-q >= 9 && bytes.EqualFold(b[q:q+9], []byte("%1f%8b%08")) {
			return q
		}
		return -1
	}
	for _, p := range []string{"PK", "P%4b", "%50K", "%50%4b"} {
		if q >= len(p) && bytes.EqualFold(b[q-len(p):q], []byte(p)) {
			return q - len(p)
		}
	}
	return -1
}

// escWindow is how much of an escaped signature's text the sniffer holds
// to judge it: enough for partSniff bytes in base64 wrapped with escaped
// line breaks, or in percent escapes.
const escWindow = 8 * partSniff

// sniffEscaped judges gzip and zip entries that are base64-encoded or
// percent-escaped anywhere in a large body (the first bytes too: only
// their raw compressed data was opened) as sniffSigs judges raw ones:
// refused if they go on past what is sniffed, searched if they end within.
func (s *partSniffer) sniffEscaped() (int, *bodyFail) {
	end := s.eof || s.err != nil
	for {
		q, sig := -1, -1
		for i, e := range escSigs {
			if j := bytes.Index(s.buf[s.escFrom:], e); j >= 0 && (q < 0 || s.escFrom+j < q) {
				q, sig = s.escFrom+j, i
			}
		}
		anchor := q
		if q >= 0 && sig >= 2 {
			p := pctSig(s.buf, q)
			if p < 0 && len(s.buf)-q < 9 && !end {
				s.escFrom = q
				return q, nil // "%1" may go on in the next read
			}
			if p < 0 {
				s.escFrom = q + 1
				continue
			}
			q = p
		}
		if q < 0 {
			// A signature may go on in the next read.
			s.escFrom = max(s.escFrom, len(s.buf)-len("%50%4B%03%04"))
			if end {
				s.escFrom = len(s.buf)
			}
			return s.escFrom, nil
		}
		if len(s.buf)-q < escWindow && !end {
			s.escFrom = q
			return q, nil
		}
		s.escFrom = anchor + 1
		// Each costs a window's decoding: by chance they are rare (one in
		// 16 million positions of base64), so many are refused.
		if s.nEsc++; s.nEsc > maxMembers {
			return 0, &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
				reason: fmt.Sprintf("a large body holds more than %d escaped gzip or zip signatures", maxMembers)}
		}
		w := s.buf[q:min(len(s.buf), q+escWindow)]
		var b []byte
		if sig < 2 {
			flat, _ := detect.Flattened(w)
			b, _ = io.ReadAll(b64Reader(b64Run(flat)))
		} else {
			b, _ = detect.Decoded(w, true)
		}
		if !plausibleHeader(b[:min(len(b), partSniff)]) {
			continue
		}
		if s.nJudged++; s.nJudged > maxMembers {
			return 0, &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
				reason: fmt.Sprintf("a large body holds more than %d gzip or zip headers", maxMembers)}
		}
		if f := s.judgeSig(b[:min(len(b), partSniff)]); f != nil {
			if f.hit != nil {
				f.hit.Encoding = "escaped " + f.hit.Encoding
			}
			return 0, f
		}
	}
}

// plausibleHeader reports whether b starts with a gzip header (reserved
// flags clear, extra flags 0, 2 or 4) or a zip local header (a version an
// archiver writes): a signature in binary data by chance rarely is one.
func plausibleHeader(b []byte) bool {
	if bytes.HasPrefix(b, gzipMagic) {
		return len(b) >= 10 && b[3]&0xe0 == 0 && (b[8] == 0 || b[8] == 2 || b[8] == 4)
	}
	return len(b) >= 30 && b[4] <= 63
}

// judgeSig refuses gzip or a zip entry that goes on past b (or that cannot
// be opened), and searches one that ends within it.
func (s *partSniffer) judgeSig(b []byte) *bodyFail {
	refuse := func(what string) *bodyFail {
		return &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
			reason: fmt.Sprintf("a body over the scanned size holds %s data past its first bytes, which cannot be scanned before it leaves", what)}
	}
	br := bufio.NewReaderSize(bytes.NewReader(b), 16)
	var z io.Reader
	var err error
	kind := "gzip"
	if bytes.HasPrefix(b, gzipMagic) {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(br); err == nil {
			zr.Multistream(false) // what follows is the body's, not another member
			z = zr
		}
	} else {
		z, kind, err = zipEntry(br)
	}
	switch {
	case errors.Is(err, errZip):
		return refuse("zip")
	case err != nil:
		return nil // no header after all
	}
	return s.judged(z, kind, refuse)
}

// judged reads the stream z, which cannot go on past what is sniffed:
// refused if it does, searched (what decoded of it) if it does not.
func (s *partSniffer) judged(z io.Reader, kind string, refuse func(string) *bodyFail) *bodyFail {
	out, err := io.ReadAll(io.LimitReader(z, 1<<20))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return refuse(kind)
	}
	if h, ok := s.det.Search(out); ok {
		h.Encoding = kind + "/" + h.Encoding
		return &bodyFail{hit: &h}
	}
	return nil
}

// sniffParts judges the parts that start in buf, and returns how much of
// buf may be passed on.
func (s *partSniffer) sniffParts() (int, *bodyFail) {
	end := s.eof || s.err != nil
	for {
		j := bytes.Index(s.buf[s.from:], s.delim)
		if j < 0 {
			ok := len(s.buf)
			if !end {
				ok = max(ok-len(s.delim), 0) // a delimiter may go on in the next read
			}
			s.from = ok
			return ok, nil
		}
		d := s.from + j
		s.from = d + 1
		if d > 0 && s.buf[d-1] != '\n' || d == 0 && s.base > 0 && s.last != '\n' {
			continue // not at a line's start: not a delimiter
		}
		h := headEnd(s.buf[d+len(s.delim):])
		if h < 0 && !end {
			if len(s.buf)-d > maxPartHead {
				return 0, &bodyFail{status: http.StatusBadRequest, decision: audit.Deny,
					reason: fmt.Sprintf("a part's head in a multipart body runs past %d bytes", maxPartHead)}
			}
			s.from = d
			return d, nil
		}
		if h < 0 {
			continue
		}
		c := d + len(s.delim) + h
		if len(s.buf)-c < partSniff && !end {
			s.from = d
			return d, nil
		}
		if s.base+int64(c) < s.skip {
			continue
		}
		if f := s.judge(s.buf[c:min(len(s.buf), c+partSniff)]); f != nil {
			return 0, f
		}
	}
}

// judge refuses a part that starts like compressed data that goes on, and
// searches one that ends within b.
func (s *partSniffer) judge(b []byte) *bodyFail {
	refuse := func(what string) *bodyFail {
		return &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
			reason: fmt.Sprintf("a part of a body over the scanned size starts with %s data, which cannot be scanned before it leaves", what)}
	}
	switch {
	case bytes.HasPrefix(b, gzipMagic):
		return refuse("gzip")
	case bytes.HasPrefix(b, zipMagic):
		return refuse("zip")
	}
	z, kind, err := startStream(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return nil
	}
	return s.judged(z, kind, refuse)
}
