package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// hopHeaders are a connection's own and never forwarded. They are in
// canonical form, so a map delete removes them (TestHopHeadersCanonical).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

// forward takes one request through the admission rules in order (see
// rules.go), the git gate, the scan of its body, the injection of its
// route's token, and only then upstream. Whatever refuses it on the way
// goes through f.refuse.
func (s *Server) forward(f *flow) {
	if !f.admit(admission) {
		return
	}
	w, r, snap, e, rt, det, t, ws := f.w, f.r, f.snap, f.e, f.rt, f.det, f.t, f.ws

	if rt.Git != nil {
		// The git gate judges the route's git paths (see git.go), and reads
		// a push's body itself.
		var done bool
		f.bodyTaken = true
		if e.Git, done = s.serveGit(w, r, snap, e, rt, t); done {
			return
		}
		f.bodyTaken, f.e = false, e
	}

	// A slot per body bounds the memory of buffered bodies server-wide;
	// it is given back once the body has been sent. Waiting for one, and
	// reading the body, are bounded in time: stalled uploads must not hold
	// every slot.
	release := func() {}
	rc := http.NewResponseController(w)
	if r.Body != nil && r.Body != http.NoBody {
		if !s.takeBodySlot(r.Context()) {
			f.bodyTaken, f.bodyNote = true, "its body was not scanned: no body slot was free"
			reason := fmt.Sprintf("no slot to scan the body within %v: %d bodies are being scanned", s.cfg.BodySlotWait, cap(s.bodySlots))
			f.refuse(refusal{status: http.StatusServiceUnavailable, decision: audit.Deny, reason: reason, body: "bb-egress: busy: " + reason + "; retry\n"})
			return
		}
		var once sync.Once
		release = func() {
			once.Do(func() {
				// A deadline left behind would fire while the response
				// streams, and the server would take it for the client
				// going away.
				rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not every connection has deadlines
				<-s.bodySlots
			})
		}
	}
	defer release()
	f.bodyTaken = true
	body, n, guard, fail := s.prepareBody(det, r, rc)
	if guard != nil {
		f.tap = guard.tap
	}
	if fail != nil {
		if fail.hit != nil {
			ref := refusal{status: http.StatusForbidden, decision: audit.Block, hit: fail.hit, where: "the request's body"}
			if fail.also != "" {
				ref.reason = "secret " + fail.hit.Secret + " (" + fail.hit.Encoding + ") in the request's body, and " + fail.also
			}
			f.refuse(ref)
			return
		}
		f.refuse(refusal{status: fail.status, decision: fail.decision, reason: fail.reason})
		return
	}

	hostport := t.hostport()
	out := &http.Request{
		Method:     r.Method,
		URL:        &url.URL{Scheme: t.scheme, Host: hostport, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery, User: r.URL.User},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header:        outHeader(r.Header, ws),
		Body:          body,
		ContentLength: n,
		Host:          hostport,
	}
	dropped := dropOverrides(out.Header, rt)
	if in := rt.Inject; in != nil {
		tok, ok := s.tokens[in.Token]
		if !ok || tok == "" {
			// Sending the request without its credential would fail
			// upstream in a confusing way, or worse succeed anonymously.
			f.refuse(*deny(http.StatusBadGateway, fmt.Sprintf("the route's token %s is not set on the sidecar (EGRESS_TOKEN_%s)", in.Token, in.Token)))
			return
		}
		out.Header.Set(in.Header, in.Value(tok))
	}
	s.askCodings(snap, rt, t, out.Header)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out = out.WithContext(ctx)
	e.Host = t.host

	tr := s.transport
	if ws || r.ProtoMajor < 2 {
		tr = s.h1Transport
	}
	resp, err := tr.RoundTrip(out)
	release()
	if hit := guard.found(); hit != nil {
		if resp != nil {
			resp.Body.Close()
		}
		e.BytesUp = guard.sent()
		s.block(w, r, snap, e, rt, *hit, "the request's body")
		return
	}
	if f := guard.refused(); f != nil { // views: a part it would not send
		if resp != nil {
			resp.Body.Close()
		}
		e.BytesUp = guard.sent()
		s.refuse(w, r, snap, e, f.status, f.decision, f.reason, "bb-egress: "+f.reason+"\n")
		return
	}
	e.BytesUp = n
	if guard != nil {
		e.BytesUp = guard.sent()
	}
	if err != nil {
		status, reason := upstreamError(err)
		decision := audit.Allow
		if isRefused(err) {
			status, decision = http.StatusForbidden, audit.Deny
		}
		s.refuse(w, r, snap, e, status, decision, reason, "bb-egress: "+reason+"\n")
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		s.relayWebSocket(w, r, resp, snap, det, e, rt)
		return
	}

	s.relayResponse(w, r, snap, e, answer{resp: resp, t: t, rt: rt, upload: guard, dropped: dropped})
}

// block answers 403 for a request that carries a secret.
func (s *Server) block(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, rt *routes.Route, hit detect.Hit, where string) {
	if rt != nil {
		e.Route = rt.String()
	}
	s.flowFor(w, r, snap, e).refuse(refusal{status: http.StatusForbidden, decision: audit.Block, hit: &hit, where: where})
}

func blockEntry(e audit.Entry, hit detect.Hit) audit.Entry {
	e.Secret, e.Encoding, e.Canary = hit.Secret, hit.Encoding, isCanary(hit.Secret)
	return e
}

func blockBody(where string, hit detect.Hit) string {
	return fmt.Sprintf("bb-egress: request blocked: %s carries the secret %s (%s); nothing was sent\n", where, hit.Secret, hit.Encoding)
}

func isCanary(name string) bool { return name == canary.Name }

// scanHead scans everything in the request but its body: the URL raw and
// decoded, and every header line, as one text, in any case and through its
// decoded and flattened views (det.Search). One text is one scan, not a
// scan per header; it does not find a secret split between two headers
// (they are apart in the text, in no fixed order): splitting is one of the
// transformations a scanner cannot undo (see the package comment).
func scanHead(det *detect.Detector, r *http.Request) (detect.Hit, bool) {
	if det == nil {
		return detect.Hit{}, false
	}
	bp := headBufs.Get().(*[]byte)
	b := appendHead((*bp)[:0], r)
	hit, ok := det.Search(b)
	if cap(b) <= maxPooledHead {
		clear(b) // the next request's head is none of its business
		*bp = b[:0]
		headBufs.Put(bp)
	}
	return hit, ok
}

// headBufs recycles scanHead's text: building it from string
// concatenations was a dozen allocations per request.
var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

// maxPooledHead keeps an outsized head's buffer out of the pool.
const maxPooledHead = 64 << 10

// appendHead appends the text scanHead scans to b: the request line, the
// hosts, the path raw and decoded, the query, their unescapings, the user
// info, the fragment, and every header line.
func appendHead(b []byte, r *http.Request) []byte {
	line := func(parts ...string) {
		for _, p := range parts {
			b = append(b, p...)
		}
		b = append(b, '\n')
	}
	escaped := r.URL.EscapedPath()
	line(r.Method, " ", r.RequestURI)
	line(r.Host)
	line(r.URL.Host)
	line(escaped)
	line(r.URL.Path)
	line(r.URL.RawQuery)
	// Unescape again while it changes: an upstream may decode twice.
	for _, raw := range [2]string{r.URL.RawQuery, escaped} {
		for i := 0; i < 3; i++ {
			q, err := url.QueryUnescape(raw)
			if err != nil {
				if q, err = url.PathUnescape(raw); err != nil {
					break
				}
			}
			if q == raw {
				break
			}
			line(q)
			raw = q
		}
	}
	if r.URL.User != nil {
		line(r.URL.User.String())
	}
	line(r.URL.Fragment)
	for k, vs := range r.Header {
		for _, v := range vs {
			line(k, ": ", v)
		}
	}
	return b
}

// pathTrick names what in a path could make an upstream see another path
// than the one a route's prefixes judged, or returns "": the prefix is
// matched on the decoded, cleaned path, and servers differ from that and
// from each other — a second decoding (%25), an encoded separator,
// ";" parameters (Tomcat, Spring and Jetty read /..;/ as /../), a
// backslash (IIS and some routers take it for a slash), overlong or
// invalid UTF-8 (%c0%ae is a dot to a lenient decoder).
func pathTrick(raw, decoded string) string {
	l := strings.ToLower(raw)
	switch {
	case strings.Contains(l, "%2f") || strings.Contains(l, "%2e") || strings.Contains(l, "%5c"):
		return "an encoded slash, dot or backslash"
	case strings.Contains(l, "%25"):
		return "an escaped %"
	case strings.ContainsRune(raw, ';') || strings.ContainsRune(decoded, ';'):
		return "a ';'"
	case strings.ContainsRune(decoded, '\\'):
		return "a backslash"
	case strings.Contains(l, "%c0") || strings.Contains(l, "%c1") || !utf8.ValidString(decoded):
		return "an overlong or invalid UTF-8 sequence"
	}
	return ""
}

func isWebSocket(h http.Header) bool {
	return headerHas(h, "Connection", "upgrade") && strings.EqualFold(strings.TrimSpace(h.Get("Upgrade")), "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func connectionHeaders(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// outHeader copies the agent's headers without the hop-by-hop ones. A
// WebSocket upgrade keeps its Upgrade, but not its extensions: a
// compressed frame cannot be scanned.
func outHeader(in http.Header, ws bool) http.Header {
	h := in.Clone()
	for _, k := range connectionHeaders(in) {
		h.Del(k)
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	if ws {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Del("Sec-Websocket-Extensions")
	}
	return h
}

func upstreamError(err error) (int, string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the URL
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "upstream timed out: " + err.Error()
	}
	if isRefused(err) {
		return http.StatusForbidden, "destination refused: " + err.Error()
	}
	return http.StatusBadGateway, "upstream failed: " + err.Error()
}
