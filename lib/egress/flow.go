package egress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// flow is one request's way through the proxy: what it asked for, where
// it goes, the routes it is judged by, and what of it has been scanned.
// Every answer that is not the upstream's is written by its refuse, which
// first scans what was not scanned yet: a request refused early cannot be
// logged as a plain denial while it carries a secret.
type flow struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	snap *snapshot // the whole request runs under these routes
	e    audit.Entry
	t    target
	tn   *tunnel // the intercepted tunnel it came through; nil for a plain proxy request

	rt  *routes.Route    // the route that allows it; nil: none does
	why string           // why no route allows it, for the 403
	det *detect.Detector // what it is scanned with: the route's (its placeholder is its own), or every secret
	ws  bool             // a WebSocket upgrade the route allows

	headScanned bool       // URL and headers searched, found clean
	bodyTaken   bool       // the body is being (or was) read by another: it is not read again to scan a refusal
	bodyNote    string     // why a refusal's body was not scanned, for the log
	bodyStalled bool       // reading the body ran out of time: the rest of it is never waited for
	tap         *canaryTap // a large body's watch for the canary, read on if its guard stops at another secret
}

type flowKey struct{}

// newFlow starts a request's flow. The flow rides in the request's
// context so that the refusals written by the git gate and the WebSocket
// relay (which take the request, not the flow) go through it too.
func (s *Server) newFlow(w http.ResponseWriter, r *http.Request, tn *tunnel) *flow {
	f := &flow{s: s, w: w, snap: s.state.Load(), tn: tn}
	f.e = newEntry(r, "", time.Now())
	f.det = f.snap.all
	f.r = r.WithContext(context.WithValue(r.Context(), flowKey{}, f))
	return f
}

// aim sets where the request goes, and so the route that judges it.
func (f *flow) aim(t target) {
	f.t = t
	f.e.Host = t.host
	f.rt, f.why = f.snap.table.Match(f.r.Method, t.host, t.port, f.r.URL.Path)
	f.det = f.snap.detectorFor(f.rt)
}

// flowFor is the flow of a request answered through the older signature
// (refuse, block), with the entry its caller built; a request without one
// (none should be) gets a flow of its own, scanned with every secret.
func (s *Server) flowFor(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry) *flow {
	f, ok := r.Context().Value(flowKey{}).(*flow)
	if !ok {
		f = &flow{s: s, r: r, det: snap.all, bodyTaken: true, bodyNote: "its body was not scanned: no flow"}
	}
	f.w, f.snap, f.e = w, snap, e
	return f
}

// refusal is a rule's verdict: the request is answered here, never sent.
// Only a flow writes it out (refuse), after its scan.
type refusal struct {
	status   int
	decision string // audit.Deny; audit.Block with hit, or for what the caller judged itself
	reason   string // for the log
	body     string // for the agent; empty: "bb-egress: " + reason
	hit      *detect.Hit
	where    string // where hit is
}

func deny(status int, reason string) *refusal {
	return &refusal{status: status, decision: audit.Deny, reason: reason}
}

// refuse is the one way a request is answered without being forwarded.
// Unless the refusal is a block already, the request is first searched for
// every known secret where that was not done yet (request line, Host,
// headers, and a body up to MaxScanBody that nothing has read); a secret
// found makes it a block naming the secret, Canary set for the canary.
// Every string that reaches the log or the agent passes the detector.
func (f *flow) refuse(ref refusal) {
	s, snap, e := f.s, f.snap, f.e
	if ref.decision != audit.Block {
		if hit, where, ok := f.scan(); ok {
			ref = refusal{status: http.StatusForbidden, decision: audit.Block, hit: &hit, where: where,
				reason: fmt.Sprintf("secret %s (%s) in %s; refused anyway: %s", hit.Secret, hit.Encoding, where, ref.reason)}
		}
	}
	if ref.hit != nil && !isCanary(ref.hit.Secret) {
		f.preferCanary(&ref)
	}
	if ref.hit != nil {
		e = blockEntry(e, *ref.hit)
		if f.rt != nil && e.Route == "" {
			e.Route = f.rt.String()
		}
		if ref.reason == "" {
			ref.reason = "secret " + ref.hit.Secret + " (" + ref.hit.Encoding + ") in " + ref.where
		}
		if ref.body == "" {
			ref.body = blockBody(ref.where, *ref.hit)
		}
	} else if f.bodyNote != "" {
		ref.reason += "; " + f.bodyNote
	}
	if ref.body == "" {
		ref.body = "bb-egress: " + ref.reason + "\n"
	}
	e.Method = s.redact(snap, e.Method) // a method is any token: the canary is one
	e.Host = s.redact(snap, e.Host)
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.Status, e.Decision, e.Reason = ref.status, ref.decision, s.redact(snap, ref.reason)
	e.DurationMS = ms(time.Since(e.Time))
	body := s.redact(snap, ref.body)
	h := f.w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	f.w.WriteHeader(ref.status)
	io.WriteString(f.w, body)
	s.audit(e) // before the answer leaves: whoever reads it can find its line
	// Before it sends the answer, Go's HTTP/1 server reads what is left of
	// an unread body (up to 256 KiB), without a deadline: a client that
	// stopped sending would hold the connection and its goroutine for
	// ever, unanswered. It gets refusedBodyWait, none when its body already
	// stalled; the flush makes the server do it now, before a caller
	// resets the deadline.
	deadline := time.Now().Add(refusedBodyWait)
	if f.bodyStalled || ref.status == http.StatusRequestTimeout {
		deadline = time.Unix(1, 0)
	}
	rc := http.NewResponseController(f.w)
	rc.SetReadDeadline(deadline) //nolint:errcheck // not every connection has deadlines
	rc.Flush()                   //nolint:errcheck
}

// scan searches what of the request was not searched yet, once.
func (f *flow) scan() (detect.Hit, string, bool) {
	det := f.det
	if det == nil {
		det = f.snap.all
	}
	if det == nil {
		return detect.Hit{}, "", false
	}
	if !f.headScanned {
		f.headScanned = true
		if hit, ok := scanHead(det, f.r); ok {
			return hit, "the request's URL or headers", true
		}
	}
	if !f.bodyTaken {
		f.bodyTaken = true
		if hit, ok := f.scanRefusedBody(det); ok {
			return hit, "the request's body", true
		}
		// Trailers are known once the body is read. (They are never
		// forwarded: an outgoing request carries none.)
		var b []byte
		for k, vs := range f.r.Trailer {
			for _, v := range vs {
				b = append(append(append(append(b, k...), ": "...), v...), '\n')
			}
		}
		if len(b) > 0 {
			if hit, ok := det.Search(b); ok {
				return hit, "the request's trailers", true
			}
		}
	}
	return detect.Hit{}, "", false
}

// preferCanary makes a block that names another secret name the canary
// when the request carries it too. A request can hold several secrets (a
// dump of the agent's environment holds its placeholders and the canary),
// the scan stops at the first, and a line naming another would have
// bb-canary check say the canary was never seen. The rest of the request
// is searched for the canary alone: the head, and a body nothing read yet
// or the rest of a large one, within the bounds a refusal reads a body in.
func (f *flow) preferCanary(ref *refusal) {
	cd := f.s.canaryDetector()
	if cd == nil {
		return
	}
	hit, where, ok := detect.Hit{}, "", false
	if hit, ok = scanHead(cd, f.r); ok {
		where = "the request's URL or headers"
	} else if !f.bodyTaken {
		f.bodyTaken = true
		hit, ok = f.scanRefusedBody(cd)
		where = "the request's body"
	} else if f.tap != nil {
		hit, ok = f.tap.drain(refusedBodyWait, refusedBodyMax)
		f.bodyStalled = f.bodyStalled || !f.tap.ended
		where = "the request's body"
	}
	if !ok {
		return
	}
	prev := ref.reason // what was said of the other, kept
	if prev == "" {
		prev = "secret " + ref.hit.Secret + " (" + ref.hit.Encoding + ")"
		if ref.where != "" {
			prev += " in " + ref.where
		}
	}
	ref.hit, ref.where, ref.body = &hit, where, ""
	ref.reason = "secret " + hit.Secret + " (" + hit.Encoding + ") in " + where + "; and " + prev
}

// canaryDetector finds the canary alone (nil when the sidecar has none),
// for a block and for each large body's tap. It is built once, on first
// use: a sidecar's secrets are its configuration's, for its whole life.
func (s *Server) canaryDetector() *detect.Detector {
	s.canaryOnce.Do(func() {
		for _, sec := range s.cfg.Secrets {
			if isCanary(sec.Name) {
				s.canaryDet, _ = detect.NewFolded([]detect.Secret{sec}) // nil on error: none
				return
			}
		}
	})
	return s.canaryDet
}

// A refusal reads the body it scans within refusedBodyWait and up to
// refusedBodyMax, taking a body slot within that time too: a request
// refused anyway must not hold a slot as long as one that is sent may.
const (
	refusedBodyWait = 2 * time.Second
	refusedBodyMax  = 16 << 20
)

// scanRefusedBody reads a refused request's body as prepareBody reads any
// (whole up to MaxScanBody, through every view it has; streamed through the
// guard beyond), only to name a secret in it in the log. What is not read
// within the bounds is not scanned, and the log says so.
func (f *flow) scanRefusedBody(det *detect.Detector) (detect.Hit, bool) {
	r, s := f.r, f.s
	if r.Body == nil || r.Body == http.NoBody {
		return detect.Hit{}, false
	}
	wait := min(refusedBodyWait, s.cfg.BodyReadTimeout)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.bodySlots <- struct{}{}:
	case <-t.C:
		f.bodyNote = "its body was not scanned: no body slot was free"
		return detect.Hit{}, false
	case <-r.Context().Done():
		return detect.Hit{}, false
	}
	defer func() { <-s.bodySlots }()
	rc := http.NewResponseController(f.w)
	hb := &hurriedBody{ReadCloser: r.Body, rc: rc, deadline: time.Now().Add(wait)}
	short := *r
	short.Body = hb
	body, _, guard, fail := s.prepareBody(det, &short, rc)
	defer rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not every connection has deadlines
	switch {
	case fail != nil && fail.hit != nil:
		return *fail.hit, true
	case fail != nil && fail.status == http.StatusRequestTimeout:
		f.bodyStalled, f.bodyNote = true, fmt.Sprintf("its body was not scanned: not read within %v", wait)
	case guard != nil:
		n, err := io.Copy(io.Discard, io.LimitReader(body, refusedBodyMax))
		if hit := guard.found(); hit != nil {
			return *hit, true
		}
		if err != nil || n == refusedBodyMax {
			f.bodyStalled = err != nil
			f.bodyNote = fmt.Sprintf("its body was scanned only in its first %d bytes", s.cfg.MaxScanBody+n)
		}
	}
	return detect.Hit{}, false
}

// hurriedBody holds every read of a refused request's body to its own
// deadline, over the longer ones prepareBody sets (BodyReadTimeout).
type hurriedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	deadline time.Time
}

func (b *hurriedBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(b.deadline) //nolint:errcheck // not every connection has deadlines
	return b.ReadCloser.Read(p)
}

// admit runs the admission rules in order; the first that refuses answers.
func (f *flow) admit(rules []rule) bool {
	for _, rl := range rules {
		if ref := rl.check(f); ref != nil {
			f.refuse(*ref)
			return false
		}
	}
	return true
}

// connectWriter takes a CONNECT refusal the way refuse writes any other,
// for goproxy to send as the CONNECT's answer.
type connectWriter struct {
	h      http.Header
	status int
	body   strings.Builder
}

func (c *connectWriter) Header() http.Header {
	if c.h == nil {
		c.h = http.Header{}
	}
	return c.h
}

func (c *connectWriter) WriteHeader(status int)      { c.status = status }
func (c *connectWriter) Write(b []byte) (int, error) { return c.body.Write(b) }

func (c *connectWriter) response(req *http.Request) *http.Response {
	h := c.Header().Clone()
	h.Set("Connection", "close")
	body := c.body.String()
	return &http.Response{
		StatusCode: c.status, Status: fmt.Sprintf("%d %s", c.status, http.StatusText(c.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Close: true,
		Request: req,
	}
}
