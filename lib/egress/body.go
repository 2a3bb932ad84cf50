package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// takeBodySlot waits up to BodySlotWait for a body slot.
func (s *Server) takeBodySlot(ctx context.Context) bool {
	select {
	case s.bodySlots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.BodySlotWait)
	defer t.Stop()
	select {
	case s.bodySlots <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// pacedBody is a large body's reader: each read from the client must
// bring something within timeout.
type pacedBody struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (p *pacedBody) Read(b []byte) (int, error) {
	p.rc.SetReadDeadline(time.Now().Add(p.timeout)) //nolint:errcheck
	n, err := p.r.Read(b)
	if err != nil {
		p.rc.SetReadDeadline(time.Time{}) //nolint:errcheck
	}
	return n, err
}

// bodyFail is why a body is not sent.
type bodyFail struct {
	hit      *detect.Hit
	status   int
	decision string
	reason   string
	also     string // another secret the body carries besides hit
}

// prepareBody scans the request body. A body up to MaxScanBody is read
// whole and searched (with its decoded and flattened views, decompressed
// too) before anything is sent; a larger one streams through the
// detector's flat guard, which holds back every byte that could be the
// start of a secret in the stream or in its flattened form.
func (s *Server) prepareBody(det *detect.Detector, r *http.Request, rc *http.ResponseController) (io.ReadCloser, int64, *guardBody, *bodyFail) {
	if r.Body == nil || r.Body == http.NoBody {
		return http.NoBody, 0, nil, nil
	}
	encs, err := contentEncodings(r.Header)
	if err != nil {
		return nil, 0, nil, &bodyFail{status: http.StatusUnsupportedMediaType, decision: audit.Block, reason: err.Error()}
	}
	limit := s.cfg.MaxScanBody
	var src io.Reader = r.Body
	if det != nil {
		src = &trailerBody{r: r, det: det}
	}
	rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) //nolint:errcheck
	buf, err := io.ReadAll(io.LimitReader(src, limit+1))
	if int64(len(buf)) <= limit {
		rc.SetReadDeadline(time.Time{}) //nolint:errcheck
	}
	if hit, ok := detect.IsHit(err); ok {
		return nil, 0, nil, &bodyFail{hit: &hit}
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, os.ErrDeadlineExceeded) {
			status = http.StatusRequestTimeout
		}
		return nil, 0, nil, &bodyFail{status: status, decision: audit.Deny, reason: "reading the request body: " + err.Error()}
	}
	if int64(len(buf)) <= limit {
		if det != nil {
			if hit, ok := det.Search(buf); ok {
				f := &bodyFail{hit: &hit}
				if cd := s.canaryDetector(); !isCanary(hit.Secret) && cd != nil {
					if ch, ok := s.findIn(cd, buf, r.Header.Get("Content-Type")); ok {
						// The log names the canary when the body carries it
						// (see flow.preferCanary).
						f.hit, f.also = &ch, "secret "+hit.Secret+" ("+hit.Encoding+")"
					}
				}
				return nil, 0, nil, f
			}
			if len(encs) > 0 {
				if f := s.scanDecoded(det, buf, encs); f != nil {
					return nil, 0, nil, f
				}
			}
			// Compressed data the request does not declare: the upstream
			// may well decompress it, or keep it for someone who will.
			o := s.newOpener(det, len(buf), true)
			if f := o.openBody(buf, r.Header.Get("Content-Type")); f != nil {
				return nil, 0, nil, f
			}
			// And when escaped: a compressed file in a form, in JSON, in a
			// part with Content-Transfer-Encoding: base64.
			if f := o.openEscaped(buf, r.Header.Get("Content-Type")); f != nil {
				return nil, 0, nil, f
			}
		}
		if len(buf) == 0 {
			return http.NoBody, 0, nil, nil
		}
		return io.NopCloser(bytes.NewReader(buf)), int64(len(buf)), nil, nil
	}
	if len(encs) > 0 {
		reason := fmt.Sprintf("a %s-encoded body over %d bytes cannot be scanned before it leaves", strings.Join(encs, ","), limit)
		return nil, 0, nil, &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block, reason: reason}
	}
	if isGzip(buf) {
		reason := fmt.Sprintf("a body of gzip data over %d bytes cannot be scanned before it leaves", limit)
		return nil, 0, nil, &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block, reason: reason}
	}
	if det != nil {
		// What compressed data the first MaxScanBody bytes hold is opened
		// if it ends there, refused if it goes on.
		if f := s.newOpener(det, len(buf), false).openBody(buf, r.Header.Get("Content-Type")); f != nil {
			return nil, 0, nil, f
		}
	}
	paced := &pacedBody{r: src, rc: rc, timeout: s.cfg.BodyReadTimeout}
	var rest io.Reader = io.MultiReader(bytes.NewReader(buf), paced)
	if det == nil {
		return io.NopCloser(rest), r.ContentLength, nil, nil
	}
	var tap *canaryTap
	if cd := s.canaryDetector(); cd != nil {
		tap = &canaryTap{r: rest, paced: paced, sc: cd.NewScanner()}
		rest = tap
	}
	rest, f := sniffParts(det, rest, r.Header.Get("Content-Type"), len(buf)-partSniff)
	if f != nil {
		return nil, 0, nil, f
	}
	// The flattened stream too: padding a body past MaxScanBody must not
	// be a way around what the whole-body scan finds in wrapped base64.
	g := &guardBody{r: det.GuardFlat(rest), tap: tap}
	return g, r.ContentLength, g, nil
}

// trailerBody is a request's body that ends in a hit when the trailers
// that follow it carry a secret. They are never forwarded (an outgoing
// request carries none), but the agent sent the secret, and the log says
// so: a large body is cut short of its end, a small one is not sent.
type trailerBody struct {
	r   *http.Request
	det *detect.Detector
}

func (t *trailerBody) Read(p []byte) (int, error) {
	n, err := t.r.Body.Read(p)
	if err == io.EOF && len(t.r.Trailer) > 0 {
		var b []byte
		for k, vs := range t.r.Trailer {
			for _, v := range vs {
				b = append(append(append(append(b, k...), ": "...), v...), '\n')
			}
		}
		if hit, ok := t.det.Search(b); ok {
			return n, &detect.HitError{Hit: hit}
		}
	}
	return n, err
}

// findIn searches a whole body for det's secrets as prepareBody does:
// raw, through its views, and in the compressed data it holds.
func (s *Server) findIn(det *detect.Detector, buf []byte, ctype string) (detect.Hit, bool) {
	if h, ok := det.Search(buf); ok {
		return h, true
	}
	o := s.newOpener(det, len(buf), true)
	f := o.openBody(buf, ctype)
	if f == nil {
		f = o.openEscaped(buf, ctype)
	}
	if f != nil && f.hit != nil {
		return *f.hit, true
	}
	return detect.Hit{}, false
}

// canaryTap watches a large body's bytes for the canary as its guard reads
// them from the client. When the guard stops at another secret, the flow
// reads on through the tap, a while, to name the canary if it follows
// (flow.preferCanary). It looks for the canary's forms, not through the
// decoded views: the request is blocked either way, this only names it.
type canaryTap struct {
	mu    sync.Mutex // the transport's reads, then the flow's
	r     io.Reader
	paced *pacedBody
	sc    *detect.Scanner
	ended bool // the body was read to its end
}

func (t *canaryTap) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.read(p)
}

func (t *canaryTap) read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.sc.Write(p[:n]) //nolint:errcheck // never fails
	t.ended = t.ended || err == io.EOF
	return n, err
}

// drain reads on, up to max bytes and for wait at most, until the canary
// is found or the body ends.
func (t *canaryTap) drain(wait time.Duration, max int64) (detect.Hit, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	deadline := time.Now().Add(wait)
	buf := make([]byte, 32<<10)
	var n int64
	for !t.sc.Found() && n < max {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t.paced.timeout = left
		k, err := t.read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	if !t.sc.Found() {
		return detect.Hit{}, false
	}
	return t.sc.Hits()[0], true
}

// guardBody is the upload reader of a large body; it remembers a hit so
// the request can be answered 403 after the transport gives up.
type guardBody struct {
	r    io.Reader
	mu   sync.Mutex
	hit  *detect.Hit
	fail *bodyFail // a part it would not send
	n    int64
	tap  *canaryTap
}

func (g *guardBody) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.mu.Lock()
	g.n += int64(n)
	var he *detect.HitError
	var se *sniffError
	switch {
	case g.hit != nil || g.fail != nil:
	case errors.As(err, &he):
		h := he.Hit
		g.hit = &h
	case errors.As(err, &se) && se.fail.hit != nil:
		g.hit = se.fail.hit
	case errors.As(err, &se):
		g.fail = se.fail
	}
	g.mu.Unlock()
	return n, err
}

func (g *guardBody) Close() error { return nil }

func (g *guardBody) found() *detect.Hit {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hit
}

// refused returns why the guard stopped the body short of a secret.
func (g *guardBody) refused() *bodyFail {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fail
}

func (g *guardBody) sent() int64 {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}
