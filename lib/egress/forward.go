package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// forward takes one request through the rules in order: route, scan of
// URL and headers, scan of the body, injection, and only then upstream.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, t target) {
	start := time.Now()
	snap := s.state.Load() // the whole request runs under these routes
	e := newEntry(r, t.host, start)

	if r.Method == http.MethodConnect {
		// A CONNECT inside an intercepted tunnel (or HTTP/2's extended
		// CONNECT) would open a second, unscanned tunnel.
		s.refuse(w, r, snap, e, http.StatusMethodNotAllowed, audit.Deny, "CONNECT inside a tunnel is refused",
			"bb-egress: CONNECT inside a tunnel is refused\n")
		return
	}
	if strings.EqualFold(r.Method, "TRACE") || strings.EqualFold(r.Method, "TRACK") {
		// The upstream answers with the request as it received it: with
		// the token the sidecar injected.
		reason := r.Method + " is refused: its answer echoes the request, injected credentials included"
		s.refuse(w, r, snap, e, http.StatusMethodNotAllowed, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return
	}
	rt, reason := snap.table.Match(r.Method, t.host, t.port, r.URL.Path)
	det := snap.detectorFor(rt)
	if hit, ok := scanHead(det, r); ok {
		s.block(w, r, snap, e, rt, hit, "the request's URL or headers")
		return
	}
	if rt == nil {
		body := "bb-egress: " + reason + "\n"
		if snap.table.HostAllowed(t.host, t.port) == nil {
			body = denyHostBody(t.host, t.port)
		} else {
			body += fmt.Sprintf("ask for it: POST http://%s/_bb/requests {\"host\":%q,\"methods\":[%q],\"paths\":[...],\"why\":\"...\"}\n", Hostname, t.host, r.Method)
		}
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, body)
		return
	}
	e.Route = rt.String()
	if rt.Inject != nil && t.scheme != "https" {
		// The credential would cross the network in clear text.
		reason := fmt.Sprintf("route %s injects the token %s, which is never sent over plain http: use https://", rt, rt.Inject.Token)
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return
	}
	if len(rt.Paths) > 0 {
		if trick := pathTrick(r.URL.EscapedPath(), r.URL.Path); trick != "" {
			reason := "the path has " + trick + ", which the route's path rules cannot judge"
			s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
			return
		}
	}
	ws := isWebSocket(r.Header)
	if ws && !rt.Websocket {
		reason := "WebSocket upgrade refused: the route does not say websocket: true"
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return
	}
	if !ws && r.Header.Get("Upgrade") != "" {
		reason := "protocol upgrade to " + r.Header.Get("Upgrade") + " refused"
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return
	}

	if rt.Git != nil {
		// The git gate judges the route's git paths (see git.go).
		var done bool
		if e.Git, done = s.serveGit(w, r, snap, e, rt, t); done {
			return
		}
	}

	// A slot per body bounds the memory of buffered bodies server-wide;
	// it is given back once the body has been sent. Waiting for one, and
	// reading the body, are bounded in time: stalled uploads must not hold
	// every slot.
	release := func() {}
	rc := http.NewResponseController(w)
	if r.Body != nil && r.Body != http.NoBody {
		if !s.takeBodySlot(r.Context()) {
			reason := fmt.Sprintf("no slot to scan the body within %v: %d bodies are being scanned", s.cfg.BodySlotWait, cap(s.bodySlots))
			s.refuse(w, r, snap, e, http.StatusServiceUnavailable, audit.Deny, reason, "bb-egress: busy: "+reason+"; retry\n")
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
	body, n, guard, fail := s.prepareBody(det, r, rc)
	if fail != nil {
		if fail.hit != nil {
			s.block(w, r, snap, e, rt, *fail.hit, "the request's body")
			return
		}
		s.refuse(w, r, snap, e, fail.status, fail.decision, fail.reason, "bb-egress: "+fail.reason+"\n")
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
	var dropped []string
	if len(rt.Methods) > 0 || len(rt.Paths) > 0 {
		for _, k := range overrideHeaders {
			if _, ok := out.Header[k]; ok {
				delete(out.Header, k)
				dropped = append(dropped, k)
			}
		}
	}
	if in := rt.Inject; in != nil {
		tok, ok := s.tokens[in.Token]
		if !ok || tok == "" {
			// Sending the request without its credential would fail
			// upstream in a confusing way, or worse succeed anonymously.
			reason := fmt.Sprintf("the route's token %s is not set on the sidecar (EGRESS_TOKEN_%s)", in.Token, in.Token)
			s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Deny, reason, "bb-egress: "+reason+"\n")
			return
		}
		out.Header.Set(in.Header, in.Value(tok))
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out = out.WithContext(ctx)
	e.Host = t.host

	tr := s.transport
	if ws {
		tr = s.wsTransport
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

	redacted := redactHeader(snap.injected, resp.Header)
	var down io.Reader = resp.Body
	var rg *detect.Guard
	if snap.injected != nil {
		rg = snap.responseGuard(resp.Body)
		defer snap.putGuard(rg)
		down = rg
	}
	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var pre []byte
	var preErr error
	if rg != nil && !flush {
		// A response that is not a stream is held until its first bytes
		// are known clean, so an echoed token is answered with a 502
		// rather than a cut connection.
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		n, err := rg.Read(*bp)
		pre, preErr = (*bp)[:n], err
		if hit, ok := detect.IsHit(err); ok {
			s.responseBlock(w, r, snap, e, hit, false)
			return
		}
	}

	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, k := range connectionHeaders(resp.Header) {
		h.Del(k)
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	w.WriteHeader(resp.StatusCode)
	sent, copyErr := copyBody(w, down, flush, pre, preErr)
	e.BytesDown = sent
	e.Status, e.Decision = resp.StatusCode, audit.Allow
	e.Reason = "allowed by route " + e.Route
	if dropped != nil {
		e.Reason += "; dropped " + strings.Join(dropped, ", ") + " (the route restricts methods or paths)"
	}
	if redacted != "" {
		e.Reason += "; response headers redacted: " + redacted
	}
	if hit, ok := detect.IsHit(copyErr); ok {
		s.responseBlock(w, r, snap, e, hit, true)
		return
	}
	if copyErr != nil {
		e.Reason += "; response cut short: " + copyErr.Error()
	}
	if hit := guard.found(); hit != nil { // the upstream answered before reading it all
		e.Decision, e.Secret, e.Encoding, e.Canary = audit.Block, hit.Secret, hit.Encoding, isCanary(hit.Secret)
		e.Reason = "secret " + hit.Secret + " in the request's body: upload cut short"
	}
	if f := guard.refused(); f != nil { // views: a part it would not send
		e.Decision, e.Reason = f.decision, f.reason+": upload cut short"
	}
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.DurationMS = ms(time.Since(start))
	s.audit(e)
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

// redactHeader replaces every value of h that carries an injected token
// with a note naming it, and returns the names of the headers it changed.
func redactHeader(det *detect.Detector, h http.Header) string {
	if det == nil {
		return ""
	}
	var out []string
	for k, vs := range h {
		for i, v := range vs {
			if hit, ok := det.FindString(v); ok {
				vs[i] = "[redacted by bb-egress: carries token " + hit.Secret + "]"
				out = append(out, k)
			}
		}
	}
	return strings.Join(out, ", ")
}

// block answers 403 for a request that carries a secret.
func (s *Server) block(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, rt *routes.Route, hit detect.Hit, where string) {
	if rt != nil {
		e.Route = rt.String()
	}
	e = blockEntry(e, hit)
	s.refuse(w, r, snap, e, http.StatusForbidden, audit.Block,
		"secret "+hit.Secret+" ("+hit.Encoding+") in "+where, blockBody(where, hit))
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

// overrideHeaders tell some frameworks to take another method or path
// than the request line's; on a route that restricts methods or paths
// they would undo the restriction, so there they are dropped. (Elsewhere
// they are harmless: any method and path are allowed anyway.)
var overrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Url", "X-Rewrite-Url"}

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
