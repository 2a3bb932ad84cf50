package egress

// What the sidecar does with an upstream's answer (a WebSocket's aside):
// in a bottle whose routes inject a token, no answer hands the agent that
// token back, in any header, coding or file.
//
// Every answer in such a bottle is guarded, not only those of the route
// that injects: a token goes only to its route's host, but a host may be
// shared by routes, and what one host stores another may serve (an API
// that writes, a CDN that reads). A bottle that injects nothing pays
// nothing. The guard finds a token in its forms (raw, URL, base64, hex,
// JSON...) in any case and through the decoded and flattened views (HTML,
// JSON, percent or quoted-printable escapes, wrapped lines), holding back
// only what could still begin one in some view (detect.GuardTight), so an
// event stream is not held for its next event:
//   - it asks the upstream only for codings it can decode (gzip, deflate),
//     and passes the answer decoded: the agent gets identity, and the
//     guard sees the bytes the agent will. A coding it cannot decode (br,
//     zstd, compress, more than three, a range of a coded answer, a body
//     that does not decode) is refused with a 502, never passed;
//   - to a host a route sends a token to, it asks for no range (a file
//     holding the token would come out a few bytes at a time), and passes
//     no 206 from it; elsewhere a range is asked in identity;
//   - on a host a route sends a token to, it opens compressed data the
//     answer does not declare (a gzip or zlib signature, a zip archive: a
//     file made of what the upstream received): up to MaxScanBody it is
//     read whole and every layer of it (three deep; a zip's files, not
//     further) scanned before the original bytes pass; larger is refused,
//     but for text that merely starts like zlib. The coded bytes cannot
//     be held back token by token (a decoder holds output it has not
//     flushed), so it is all or nothing. Raw DEFLATE has no signature and
//     is not opened, nor a zlib stream with a preset dictionary;
//   - it replaces a header value that carries a token (drops a Location),
//     drops a header whose name does (in any case: HTTP/1 canonicalises
//     names, HTTP/2 lowers them), and logs which, naming the token, never
//     its value. Trailers and 1xx answers are never passed on, nor the
//     status line's reason (the agent hears the sidecar's own).
//
// A token split by the upstream itself across answers (an API that pages
// what it stored), and a piece of one that an answer holds or ends with
// (an error that quotes the first bytes of a key), are beyond the guard,
// which finds whole tokens: keep such routes from injecting.

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// maxCodings is how many codings an answer may stack, declared or found
// inside: more is no answer a client asks for.
const maxCodings = 3

// answer is an upstream's answer and what forward knows of its request.
type answer struct {
	resp    *http.Response
	t       target
	rt      *routes.Route
	upload  *guardBody // the request body's guard, nil when there was none
	dropped []string   // request headers dropped for the route's restrictions
}

// askCodings makes a request of a bottle that injects ask only for the
// codings the response guard decodes; the transport adds none of its own
// (DisableCompression). To a host a token goes to, it asks for no range:
// a file made of what the upstream received, asked for a few bytes at a
// time, would hand out a token in pieces no guard can tell. Elsewhere a
// range is asked in identity: a range of a compressed answer cannot be
// decoded.
func (s *Server) askCodings(snap *snapshot, rt *routes.Route, t target, h http.Header) {
	if snap.injected == nil {
		return
	}
	if s.tokenHost(snap, answer{rt: rt, t: t}) {
		// Request-Range is Range under the name old servers (Apache) read.
		h.Del("Range")
		h.Del("Request-Range")
		h.Del("If-Range")
	}
	if h.Get("Range") != "" {
		h.Set("Accept-Encoding", "identity")
		return
	}
	h.Set("Accept-Encoding", "gzip, deflate")
}

// relayResponse passes the upstream's answer to the agent, through the
// guard of injected tokens where the bottle has any, and logs it.
func (s *Server) relayResponse(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, a answer) {
	resp := a.resp
	var notes []string
	var down io.Reader = resp.Body
	var rg *detect.Guard
	decoded := "" // the codings undone, for the log
	if snap.injected != nil {
		if note := screenHeader(snap, resp.Header); note != "" {
			notes = append(notes, note)
		}
		body, codings, release, f := s.openBody(r, snap, a)
		defer release()
		if f != nil {
			s.responseRefused(w, r, snap, e, f)
			return
		}
		if codings != "" {
			decoded = codings + "/"
			notes = append(notes, "response decoded from "+codings)
		}
		rg = snap.responseGuard(body)
		defer snap.putGuard(rg)
		down = rg
	}
	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var pre []byte
	var preErr error
	if rg != nil && !flush {
		// A response that is not a stream is held until its first 32 KiB
		// (however many reads they take) are known clean, so an echoed
		// token is answered with a 502 rather than a cut connection.
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		n, err := io.ReadFull(rg, *bp)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		pre, preErr = (*bp)[:n], err
		if hit, ok := detect.IsHit(err); ok {
			hit.Encoding = decoded + hit.Encoding
			s.responseBlock(w, r, snap, e, hit, false)
			return
		}
		if decoded != "" && n == 0 && err != nil && err != io.EOF {
			s.responseRefused(w, r, snap, e, &responseFail{reason: "the upstream's answer does not decode: " + err.Error()})
			return
		}
	}

	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	sent, copyErr := copyBody(w, down, flush, pre, preErr)
	e.BytesDown = sent
	e.Status, e.Decision = resp.StatusCode, audit.Allow
	e.Reason = "allowed by route " + e.Route
	if a.dropped != nil {
		e.Reason += "; dropped " + strings.Join(a.dropped, ", ") + " (they would override the method, path or host the route judged)"
	}
	for _, n := range notes {
		e.Reason += "; " + n
	}
	if hit, ok := detect.IsHit(copyErr); ok {
		hit.Encoding = decoded + hit.Encoding
		s.responseBlock(w, r, snap, e, hit, true)
		return
	}
	if copyErr != nil {
		// The error may quote what the upstream sent.
		e.Reason += "; response cut short: " + s.redact(snap, copyErr.Error())
	}
	if len(resp.Trailer) > 0 {
		e.Reason += fmt.Sprintf("; %d response trailers not passed on", len(resp.Trailer))
	}
	if hit := a.upload.found(); hit != nil { // the upstream answered before reading it all
		e.Decision, e.Secret, e.Encoding, e.Canary = audit.Block, hit.Secret, hit.Encoding, isCanary(hit.Secret)
		e.Reason = "secret " + hit.Secret + " in the request's body: upload cut short"
	}
	if f := a.upload.refused(); f != nil { // a part of the body it would not send (see decode.go)
		e.Decision, e.Reason = f.decision, f.reason+": upload cut short"
	}
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
	if copyErr != nil {
		// A decoded answer has no length to fall short of: only a cut
		// stream tells the agent it did not get it all.
		panic(http.ErrAbortHandler)
	}
}

// copyHeader copies an upstream's header to the agent's, without the
// connection's own: Trailer among them, so no trailer is announced (and
// none is passed on).
func copyHeader(h, from http.Header) {
	for k, vs := range from {
		h[k] = vs
	}
	for _, k := range connectionHeaders(from) {
		h.Del(k)
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// responseFail is why an answer is not passed on.
type responseFail struct {
	hit    *detect.Hit // a token in it
	reason string      // else: what cannot be judged
}

func (s *Server) responseRefused(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, f *responseFail) {
	if f.hit != nil {
		s.responseBlock(w, r, snap, e, *f.hit, false)
		return
	}
	s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Block, f.reason+": not passed on",
		"bb-egress: "+f.reason+"; it was not passed on, since it could carry a token the sidecar sent\n")
}

// openBody returns the content of a guarded answer as the agent will get
// it: decoded from the codings its Content-Encoding names (those named,
// "" for none), and, on a host a token goes to, with the compressed data
// it does not declare opened and scanned. Call release when the answer is
// sent.
func (s *Server) openBody(r *http.Request, snap *snapshot, a answer) (io.Reader, string, func(), *responseFail) {
	resp := a.resp
	none := func() {}
	hasBody := r.Method != http.MethodHead && resp.StatusCode >= 200 &&
		resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified
	codings, err := responseCodings(resp.Header)
	if err != nil {
		if !hasBody {
			return http.NoBody, "", none, nil // nothing to carry a token
		}
		return nil, "", none, &responseFail{reason: err.Error()}
	}
	if resp.StatusCode == http.StatusPartialContent && s.tokenHost(snap, a) {
		// The sidecar asked no range of it (askCodings): a piece of a
		// file, however it was asked for, could be a piece of a token.
		return nil, "", none, &responseFail{reason: "a partial answer (206) from a host the sidecar sends a token to, which asked for no range"}
	}
	var body io.Reader = resp.Body
	if len(codings) > 0 {
		// The agent gets identity: the coded length is not its length.
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		if !hasBody {
			return http.NoBody, strings.Join(codings, ","), none, nil
		}
		if resp.StatusCode == http.StatusPartialContent {
			return nil, "", none, &responseFail{reason: "a range of a " + strings.Join(codings, ",") + "-coded answer cannot be decoded to be scanned"}
		}
		// An empty body labelled with a coding (some servers do that) is
		// empty, not a coding gone wrong.
		p := &prefixed{r: body}
		if p.n, err = io.ReadFull(body, p.head[:1]); p.n == 0 && err == io.EOF {
			return http.NoBody, strings.Join(codings, ","), none, nil
		}
		if body, err = decodeStream(p, codings); err != nil {
			return nil, "", none, &responseFail{reason: fmt.Sprintf("the upstream's answer does not decode as %s: %v", strings.Join(codings, ","), err)}
		}
	}
	if !hasBody {
		return body, strings.Join(codings, ","), none, nil
	}
	body, release, f := s.openUndeclared(r, snap, a, body)
	return body, strings.Join(codings, ","), release, f
}

// tokenHost reports whether a route sends a token to the answer's host,
// on any port (one server often listens on several): only such a host can
// make a file of one.
func (s *Server) tokenHost(snap *snapshot, a answer) bool {
	if a.rt != nil && a.rt.Inject != nil {
		return true
	}
	for _, rt := range snap.table.Routes() {
		if rt.Inject != nil && rt.MatchHost(a.t.host) {
			return true
		}
	}
	return false
}

// openUndeclared looks at the start of body for compressed data. If it
// finds some on a host a token goes to, it reads the body whole (up to
// MaxScanBody, in one of the body slots that bound such buffers) and scans
// every layer of it for the injected tokens before any of it is passed on.
func (s *Server) openUndeclared(r *http.Request, snap *snapshot, a answer, body io.Reader) (io.Reader, func(), *responseFail) {
	none := func() {}
	p := &prefixed{r: body}
	n, err := io.ReadFull(body, p.head[:])
	p.n = n
	if err != nil || !packed(p.head[:n]) || !s.tokenHost(snap, a) {
		return p, none, nil // too short to be compressed, or not, or from elsewhere
	}
	body = p
	if !s.takeBodySlot(r.Context()) {
		return nil, none, &responseFail{reason: "no slot to scan compressed data in the answer: too many are being scanned"}
	}
	release := func() { <-s.bodySlots }
	// A stalled upstream must not keep the slot.
	stall := time.AfterFunc(s.cfg.BodyReadTimeout, func() { a.resp.Body.Close() })
	buf, err := io.ReadAll(io.LimitReader(body, s.cfg.MaxScanBody+1))
	stall.Stop()
	if err != nil {
		release()
		return nil, none, &responseFail{reason: "reading the upstream's answer: " + err.Error()}
	}
	if int64(len(buf)) > s.cfg.MaxScanBody {
		if f := s.scanOversized(snap, buf[:s.cfg.MaxScanBody]); f != nil {
			release()
			return nil, none, f
		}
		return io.MultiReader(bytes.NewReader(buf), body), release, nil
	}
	if f := s.scanLayers(snap, buf); f != nil {
		release()
		return nil, none, f
	}
	return bytes.NewReader(buf), release, nil
}

// scanOversized judges data that starts like compressed data and is
// larger than MaxScanBody from its first MaxScanBody bytes, head. It is
// refused (after a scan of what head decodes to, to name a token in it)
// unless it is no zlib stream after all: one that does not open, or stops
// decoding within head where no token could begin, so that no decoder gets
// further than the guard has seen.
func (s *Server) scanOversized(snap *snapshot, head []byte) *responseFail {
	over := &responseFail{reason: fmt.Sprintf("the answer holds compressed data over %d bytes from a host the sidecar sends a token to, which cannot be scanned before it is passed on", s.cfg.MaxScanBody)}
	enc := sniffCompressed(head)
	if enc == "" { // a zip archive: it opens from its end
		return over
	}
	src, err := decodeStream(bytes.NewReader(head), []string{enc})
	if err != nil {
		if enc == "gzip" {
			return over
		}
		return nil
	}
	in := &countReader{r: io.LimitReader(src, s.cfg.MaxDecompressed+1)}
	g := snap.responseGuard(in)
	defer snap.putGuard(g)
	out, err := io.Copy(io.Discard, g)
	if hit, ok := detect.IsHit(err); ok {
		hit.Encoding = enc + "/" + hit.Encoding
		return &responseFail{hit: &hit}
	}
	if enc == "gzip" || err == nil || errors.Is(err, io.ErrUnexpectedEOF) || in.n > s.cfg.MaxDecompressed || out < in.n {
		return over
	}
	return nil
}

// scanLayers opens the compressed data b holds, and the compressed data
// that holds, up to maxCodings deep, and scans each layer as it streams
// out of its decoder for the injected tokens (see scanLayer).
func (s *Server) scanLayers(snap *snapshot, b []byte) *responseFail {
	if isZip(b) {
		return s.scanZip(snap, b)
	}
	var layers []string
	for {
		src, err := decodeStream(bytes.NewReader(b), layers)
		if err != nil {
			return nil // a zlib layer that did not open: scanned as it is
		}
		head := make([]byte, 3)
		n, _ := io.ReadFull(src, head)
		enc := sniffCompressed(head[:n])
		if enc == "" {
			return nil
		}
		if len(layers) == maxCodings {
			return &responseFail{reason: fmt.Sprintf("the answer holds compressed data nested more than %d deep", maxCodings)}
		}
		layers = append(layers, enc)
		if f := s.scanLayer(snap, b, layers); f != nil {
			return f
		}
	}
}

// packed reports whether head starts data a client can unpack: gzip,
// zlib or a zip archive.
func packed(head []byte) bool { return sniffCompressed(head) != "" || isZip(head) }

func isZip(b []byte) bool { return len(b) >= 3 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 }

// scanZip scans every file of a zip archive, decompressed, for the
// injected tokens, MaxDecompressed bytes at most in all; a file it cannot
// open (encrypted, an unknown method) is refused, not passed unseen. The
// files are not opened further (a .gz inside is scanned as it is).
func (s *Server) scanZip(snap *snapshot, b []byte) *responseFail {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return &responseFail{reason: "the answer holds a zip archive that does not open: " + err.Error()}
	}
	left := s.cfg.MaxDecompressed
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return &responseFail{reason: "the answer holds a zip archive with a file that does not open: " + err.Error()}
		}
		in := &countReader{r: io.LimitReader(rc, left+1)}
		g := snap.responseGuard(in)
		out, err := io.Copy(io.Discard, g)
		snap.putGuard(g)
		rc.Close()
		if hit, ok := detect.IsHit(err); ok {
			hit.Encoding = "zip/" + hit.Encoding
			return &responseFail{hit: &hit}
		}
		if left -= in.n; left < 0 {
			return &responseFail{reason: fmt.Sprintf("the answer holds a zip archive that decompresses to more than %d bytes", s.cfg.MaxDecompressed)}
		}
		if err != nil && out < in.n {
			return &responseFail{reason: "the answer holds a zip archive with a file that stops decoding where a token could begin"}
		}
	}
	return nil
}

// scanLayer scans the data of b decoded by layers. Data with gzip's
// signature that does not decode to its end is refused: other decoders
// are more lenient than Go's (a name or comment over 512 bytes, a member
// after one Go cannot read) and would get what the guard did not see. A
// zlib header is two bytes that text can start with too: a stream that
// does not open is taken for what it is, and one that stops decoding is
// scanned up to there, and refused only if it stops where a token could
// begin (a decoder hands out that much). A layer that decodes to more
// than MaxDecompressed is refused, not scanned in part.
func (s *Server) scanLayer(snap *snapshot, b []byte, layers []string) *responseFail {
	what := strings.Join(layers, " in ")
	strict := layers[len(layers)-1] == "gzip"
	src, err := decodeStream(bytes.NewReader(b), layers)
	if err != nil {
		if strict {
			return &responseFail{reason: fmt.Sprintf("the answer holds %s data that does not decode: %v", what, err)}
		}
		return nil
	}
	in := &countReader{r: io.LimitReader(src, s.cfg.MaxDecompressed+1)}
	g := snap.responseGuard(in)
	defer snap.putGuard(g)
	out, err := io.Copy(io.Discard, g)
	if hit, ok := detect.IsHit(err); ok {
		hit.Encoding = what + "/" + hit.Encoding
		return &responseFail{hit: &hit}
	}
	switch {
	case in.n > s.cfg.MaxDecompressed:
		return &responseFail{reason: fmt.Sprintf("the answer holds %s data that decompresses to more than %d bytes", what, s.cfg.MaxDecompressed)}
	case err != nil && strict:
		return &responseFail{reason: fmt.Sprintf("the answer holds %s data that does not decode to its end: %v", what, err)}
	case err != nil && out < in.n:
		return &responseFail{reason: fmt.Sprintf("the answer holds %s data that stops decoding where a token could begin", what)}
	}
	return nil
}

// prefixed is r after the bytes read from it to sniff it.
type prefixed struct {
	head [3]byte
	off  int
	n    int
	r    io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) {
	if p.off < p.n {
		m := copy(b, p.head[p.off:p.n])
		p.off += m
		return m, nil
	}
	return p.r.Read(b)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// responseCodings lists an answer's content codings in the order they
// were applied, identity dropped; one the guard cannot decode, or more
// than maxCodings, is an error.
func responseCodings(h http.Header) ([]string, error) {
	out, unknown := parseCodings(h)
	switch {
	case unknown != "":
		return nil, fmt.Errorf("the upstream answered in the content-coding %q, which the sidecar cannot decode to scan (it asked for gzip or deflate)", unknown)
	case len(out) > maxCodings:
		return nil, fmt.Errorf("the upstream's answer has %d content-codings; at most %d are decoded", len(out), maxCodings)
	}
	return out, nil
}

// decodeStream undoes codings (in the order they were applied) as r is
// read, in bounded memory.
func decodeStream(r io.Reader, codings []string) (io.Reader, error) {
	for i := len(codings) - 1; i >= 0; i-- {
		var err error
		switch codings[i] {
		case "gzip", "x-gzip":
			r, err = gzip.NewReader(r)
		case "deflate":
			r, err = newDeflateReader(r)
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// screenHeader keeps an upstream's header from handing the agent a
// secret: a header whose name carries one is dropped, a value that
// carries one is replaced by a note. The header is searched as one text,
// in any case and through the decoded views, and header by header only
// when that finds something. It returns what it did, for the log, naming
// secrets and never their values.
func screenHeader(snap *snapshot, h http.Header) string {
	if snap.all == nil {
		return ""
	}
	bp := headBufs.Get().(*[]byte)
	b := (*bp)[:0]
	for k, vs := range h {
		for _, v := range vs {
			b = append(append(append(append(b, k...), ": "...), v...), '\n')
		}
	}
	_, found := snap.all.Search(b)
	if cap(b) <= maxPooledHead {
		clear(b)
		*bp = b[:0]
		headBufs.Put(bp)
	}
	if !found {
		return ""
	}
	var out []string
	for k, vs := range h {
		if hit, ok := snap.all.SearchString(k); ok {
			delete(h, k)
			out = append(out, "a header whose name carries "+hit.Secret+" (dropped)")
			continue
		}
		for i, v := range vs {
			hit, ok := snap.all.SearchString(v)
			if !ok {
				continue
			}
			if k == "Location" || k == "Content-Location" {
				// A note is no URL: clients fail on it. A redirect
				// without its target is still an answer.
				delete(h, k)
				out = append(out, k+" (carries "+hit.Secret+"; dropped)")
				break
			}
			vs[i] = "[redacted by bb-egress: carries token " + hit.Secret + "]"
			out = append(out, k+" (carries "+hit.Secret+")")
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "response headers redacted: " + strings.Join(out, ", ")
}

// responseBlock logs a response that carries an injected token, and
// answers 502 if nothing of the response was sent yet, or else cuts it:
// the guard released no byte of the token either way.
func (s *Server) responseBlock(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, hit detect.Hit, sent bool) {
	e.Secret, e.Encoding = hit.Secret, hit.Encoding
	reason := "response carries token " + hit.Secret + " (" + hit.Encoding + "), which the sidecar injected"
	if !sent {
		s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Block, reason+": not passed on",
			"bb-egress: the upstream's answer carries the token "+hit.Secret+" the sidecar sent it; it was not passed on\n")
		return
	}
	e.Decision, e.Reason = audit.Block, reason+": response cut after "+fmt.Sprint(e.BytesDown)+" bytes"
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
	panic(http.ErrAbortHandler) // the status is sent: only cutting the stream is left
}

// copyBody copies a response body, after pre and preErr (what a first
// Read returned, if the caller made one); a streamed one (server-sent
// events, long polls, chunked) is flushed as data arrives so it is not
// held back.
func copyBody(w http.ResponseWriter, r io.Reader, flush bool, pre []byte, preErr error) (int64, error) {
	var n int64
	if len(pre) > 0 {
		m, err := w.Write(pre)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	if preErr == io.EOF {
		return n, nil
	}
	if preErr != nil {
		return n, preErr
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			if flush {
				if rc == nil {
					rc = http.NewResponseController(w)
				}
				rc.Flush()
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// copyBufs recycles copyBody's buffers: a fresh 32 KiB per response was
// three quarters of the bytes the sidecar allocated under small requests,
// and the garbage collector's work with them.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
