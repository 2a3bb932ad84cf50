package egress

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/canary"
)

// rawProxy sends raw to the proxy port and returns what it answered.
func (h *harness) rawProxy(t *testing.T, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ans := resp.Status + "\n" + string(b)
	h.mu.Lock()
	h.bodies = append(h.bodies, ans)
	h.mu.Unlock()
	return ans
}

// rawTunnel opens a CONNECT tunnel to host:port, completes TLS trusting the
// bottle's CA, sends raw inside it and returns the answer.
func (h *harness) rawTunnel(t *testing.T, host string, port int, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s:%d: %v %v", host, port, resp, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.srv.CA())
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, raw)
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("%q in a tunnel to %s: %v", raw, host, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ans := resp.Status + "\n" + string(b)
	h.mu.Lock()
	h.bodies = append(h.bodies, ans)
	h.mu.Unlock()
	return ans
}

// wantCanaryBlock waits for a block entry after the first n naming the
// canary, and fails if any entry after n logs the request as a plain
// denial.
func (h *harness) wantCanaryBlock(t *testing.T, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		es := h.entries()[n:]
		for _, e := range es {
			if e.Decision == audit.Block && e.Canary && e.Secret == canary.Name && e.Status == 403 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no block naming the canary; logged:\n%s", what, h.dumpFrom(n))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) dumpFrom(n int) string {
	var b strings.Builder
	for _, e := range h.entries()[n:] {
		fmt.Fprintf(&b, "%s %s %s %d %s canary=%v secret=%s: %s\n", e.Method, e.Host, e.Path, e.Status, e.Decision, e.Canary, e.Secret, e.Reason)
	}
	return b.String()
}

// TestEveryRefusalScans: whatever refuses a request, a canary in it (in
// the URL, a header, or the body where the refusal reads it) is logged as
// a block naming the canary, never as a plain denial; and its value is in
// no log line and no answer (checkLeaks).
func TestEveryRefusalScans(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	lport := portOf(t, ln.Addr())
	h := newHarness(t, defaultRoutes+fmt.Sprintf("- host: listed.test\n  ports: [%d]\n", lport))
	cn := h.canary
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}

	// Refusals of the proxy port itself and of CONNECT: HTTP/1.1 only.
	raw := []struct{ name, req string }{
		{"origin-form", "GET /x?c=" + cn + " HTTP/1.1\r\nHost: api.test\r\n\r\n"},
		{"origin-form, canary in a header", "GET /x HTTP/1.1\r\nHost: api.test\r\nX-Leak: " + cn + "\r\n\r\n"},
		{"origin-form, canary in the body", "POST /x HTTP/1.1\r\nHost: api.test\r\nContent-Length: " + fmt.Sprint(len(cn)) + "\r\n\r\n" + cn},
		{"ftp://", "GET ftp://files.test/" + cn + " HTTP/1.1\r\nHost: files.test\r\n\r\n"},
		{"ftp://, body", "PUT ftp://files.test/f HTTP/1.1\r\nHost: files.test\r\nContent-Length: " + fmt.Sprint(len(cn)+2) + "\r\n\r\nx=" + cn},
		{"bad host", "GET http://api.test:0/ HTTP/1.1\r\nHost: api.test\r\nCookie: s=" + cn + "\r\n\r\n"},
		{"bad CONNECT port", "CONNECT api.test:0 HTTP/1.1\r\nHost: api.test:0\r\nProxy-Authorization: Basic " + cn + "\r\n\r\n"},
		{"bad CONNECT port 99999", "CONNECT api.test:99999 HTTP/1.1\r\nHost: api.test\r\nX-Leak: " + cn + "\r\n\r\n"},
		{"CONNECT to the sidecar", "CONNECT " + h.addr + " HTTP/1.1\r\nHost: " + h.addr + "\r\nX-Leak: " + cn + "\r\n\r\n"},
		{"CONNECT to a denied host, non-TLS port", "CONNECT denied.test:22 HTTP/1.1\r\nHost: denied.test:22\r\nX-Leak: " + cn + "\r\n\r\n"},
		{"CONNECT target carries it", "CONNECT " + strings.ToLower(cn) + ".wild.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"denied CONNECT target carries it, 443", "CONNECT " + strings.ToLower(cn) + ".denied.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"plain denied host, gzip body", "POST http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\nContent-Encoding: gzip\r\nContent-Length: " +
			fmt.Sprint(len(gz([]byte(cn)))) + "\r\n\r\n" + string(gz([]byte(cn)))},
		{"agent channel, wrong method, body", "PUT http://bb.egress/_bb/routes HTTP/1.1\r\nHost: bb.egress\r\nContent-Length: " + fmt.Sprint(len(cn)) + "\r\n\r\n" + cn},
		{"agent channel, request too large", "POST http://bb.egress/_bb/requests HTTP/1.1\r\nHost: bb.egress\r\nContent-Length: 9000\r\n\r\n" +
			`{"why":"` + cn + strings.Repeat(" ", 9000-len(cn)-10) + `"}`},
	}
	for _, tc := range raw {
		n := len(h.entries())
		ans := h.rawProxy(t, tc.req)
		if !strings.HasPrefix(ans, "403") {
			t.Errorf("%s: answered %q; want 403", tc.name, ans)
		}
		h.wantCanaryBlock(t, n, tc.name)
	}

	// Inside a tunnel, raw: a CONNECT in it.
	n := len(h.entries())
	if ans := h.rawTunnel(t, "api.test", h.up.port, "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\nX-Leak: "+cn+"\r\n\r\n"); !strings.HasPrefix(ans, "403") {
		t.Errorf("CONNECT in a tunnel: %q", ans)
	}
	h.wantCanaryBlock(t, n, "CONNECT in a tunnel")
	n = len(h.entries())
	if ans := h.rawTunnel(t, "api.test", h.up.port, "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test\r\nX-Leak: "+cn+"\r\n\r\n"); !strings.HasPrefix(ans, "403") {
		t.Errorf("CONNECT in a tunnel: %q", ans)
	}
	h.wantCanaryBlock(t, n, "CONNECT in a tunnel, its Host the tunnel's")

	// Through clients, both HTTP versions.
	type reqCase struct {
		name string
		req  func() *http.Request
	}
	withHeader := func(r *http.Request, k, v string) *http.Request { r.Header.Set(k, v); return r }
	withHost := func(r *http.Request, host string) *http.Request { r.Host = host; return r }
	cases := []reqCase{
		{"Host not the tunnel's", func() *http.Request {
			return withHost(withHeader(mustReq("GET", h.tlsURL("other.test", "/x"), nil), "X-Leak", cn), "paths.test")
		}},
		{"Host not the tunnel's, body", func() *http.Request {
			return withHost(mustReq("POST", h.tlsURL("other.test", "/x"), strings.NewReader("k="+cn)), "paths.test")
		}},
		{"denied host over TLS", func() *http.Request { return mustReq("GET", h.tlsURL("denied.test", "/"+cn), nil) }},
		{"denied host over TLS, body", func() *http.Request {
			return mustReq("POST", h.tlsURL("denied.test", "/x"), strings.NewReader(`{"k":"`+cn+`"}`))
		}},
		{"denied host over TLS, port 443", func() *http.Request {
			return withHeader(mustReq("GET", "https://denied.test/x", nil), "Authorization", "Bearer "+cn)
		}},
		{"denied host over TLS, listed port", func() *http.Request {
			return withHeader(mustReq("GET", fmt.Sprintf("https://denied.test:%d/x", lport), nil), "X-Leak", cn)
		}},
		{"TRACE", func() *http.Request {
			return withHeader(mustReq("TRACE", h.tlsURL("other.test", "/x"), nil), "X-Leak", cn)
		}},
		{"TRACE, body", func() *http.Request { return mustReq("TRACE", h.tlsURL("other.test", "/x"), strings.NewReader(cn)) }},
		{"track, plain", func() *http.Request {
			return withHeader(mustReq("track", h.plainURL("other.test", "/x"), nil), "X-Leak", cn)
		}},
		{"no route for the path", func() *http.Request { return mustReq("GET", h.tlsURL("paths.test", "/admin/"+cn), nil) }},
		{"no route for the method, body", func() *http.Request {
			return mustReq("DELETE", h.tlsURL("paths.test", "/v1/x"), strings.NewReader("token="+cn))
		}},
		{"method case", func() *http.Request { return mustReq("get", h.tlsURL("paths.test", "/v1/x?q="+cn), nil) }},
		{"method case, body", func() *http.Request {
			return mustReq("post", h.tlsURL("paths.test", "/v1/x"), bytes.NewReader(gz([]byte("a="+cn))))
		}},
		{"token over plain http", func() *http.Request {
			return withHeader(mustReq("GET", h.plainURL("api.test", "/x"), nil), "X-Leak", cn)
		}},
		{"token over plain http, body", func() *http.Request {
			return mustReq("POST", h.plainURL("api.test", "/x"), strings.NewReader("k="+cn))
		}},
		{"path trick", func() *http.Request { return mustReq("GET", h.tlsURL("paths.test", "/v1/..;/x?c="+cn), nil) }},
		{"path trick, body", func() *http.Request {
			return mustReq("POST", h.tlsURL("paths.test", "/v1/a%2fb"), strings.NewReader(cn))
		}},
		{"denied host, plain", func() *http.Request {
			return withHeader(mustReq("GET", "http://denied.test/x", nil), "Cookie", "s="+cn)
		}},
		{"CONNECT inside a tunnel", func() *http.Request {
			r := withHeader(mustReq("CONNECT", h.tlsURL("other.test", ""), nil), "X-Leak", cn)
			r.URL.Opaque = "" // the request line is CONNECT other.test:port
			return r
		}},
		{"the method is the canary, denied host", func() *http.Request { return mustReq(cn, h.tlsURL("denied.test", "/x"), nil) }},
		{"the method is the canary, GET route", func() *http.Request { return mustReq(cn, h.tlsURL("paths.test", "/v1/x"), nil) }},
		{"the method is the canary, plain", func() *http.Request { return mustReq(cn, h.plainURL("other.test", "/x"), nil) }},
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, tc := range cases {
			n := len(h.entries())
			st, body, _ := h.do(c, tc.req())
			if st != 403 {
				t.Errorf("h2=%v %s: %d %q; want 403", h2, tc.name, st, body)
			}
			h.wantCanaryBlock(t, n, fmt.Sprintf("h2=%v %s", h2, tc.name))
		}
	}
	// Upgrades are HTTP/1.1.
	n = len(h.entries())
	if ans := h.rawTunnel(t, "other.test", h.up.port, "GET /x HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Leak: "+cn+"\r\n\r\n"); !strings.HasPrefix(ans, "403") {
		t.Errorf("WebSocket on a route without websocket: %q", ans)
	}
	h.wantCanaryBlock(t, n, "WebSocket upgrade refused")
	n = len(h.entries())
	if ans := h.rawTunnel(t, "other.test", h.up.port, "POST /x HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"+
		"Content-Length: "+fmt.Sprint(len(cn))+"\r\n\r\n"+cn); !strings.HasPrefix(ans, "403") {
		t.Errorf("h2c upgrade: %q", ans)
	}
	h.wantCanaryBlock(t, n, "h2c upgrade refused, canary in the body")

	if h.up.count() != 0 {
		t.Errorf("the upstream saw %d requests; want none:\n%s", h.up.count(), h.up.got())
	}
	if accepted.Load() != 0 {
		t.Errorf("the listener of a denied port was connected to %d times", accepted.Load())
	}
	if h.lookedUp("denied.test") || h.lookedUp("files.test") {
		t.Error("a denied host was resolved")
	}
}

// TestMethodCase: on a route that lists methods, only the method as
// written goes out; a lower-case one is refused, on both HTTP versions,
// and where a route lists none it goes as sent.
func TestMethodCase(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, m := range []string{"get", "Get", "gET", "post", "Post"} {
			before := h.up.count()
			st, body, _ := h.do(c, mustReq(m, h.tlsURL("paths.test", "/v1/x"), strings.NewReader("b")))
			if st != 403 || !strings.Contains(body, "case-sensitive") {
				t.Errorf("h2=%v %s on a GET, POST route = %d %q; want 403", h2, m, st, body)
			}
			if h.up.count() != before {
				t.Errorf("h2=%v %s on a GET, POST route reached the upstream", h2, m)
			}
		}
		for _, m := range []string{"GET", "POST"} {
			if st, body, _ := h.do(c, mustReq(m, h.tlsURL("paths.test", "/v1/x"), nil)); st != 200 {
				t.Errorf("h2=%v %s on a GET, POST route = %d %q", h2, m, st, body)
			}
		}
		if st, body, _ := h.do(c, mustReq("get", h.tlsURL("other.test", "/x"), nil)); st != 200 {
			t.Errorf("h2=%v get on a route without methods = %d %q", h2, st, body)
		}
		h.up.mu.Lock()
		got := h.up.last.Method
		h.up.mu.Unlock()
		if got != "get" {
			t.Errorf("h2=%v: the upstream got %q; want the method as sent", h2, got)
		}
	}
	h.waitEntry("method case", func(e audit.Entry) bool {
		return e.Decision == audit.Deny && e.Method == "get" && strings.Contains(e.Reason, "case-sensitive")
	})
}

// TestOverrideFamilies: the headers that tell a framework or a proxy to
// take another method, path, URL, prefix or host never reach the upstream
// of a route that restricts what they override; host overrides never reach
// any upstream. Names are matched case-blind and with '_' for '-'.
func TestOverrideFamilies(t *testing.T) {
	h := newHarness(t, "")
	methodPath := []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-Method", "X-Forwarded-Method",
		"X-Original-URL", "X_Original_URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Prefix", "X-Forwarded-Path",
		"X-Forwarded-Uri", "X-Envoy-Original-Path", "X-Envoy-Original-URL", "X-Script-Name", "X-Original-Anything", "x-http-method-override2"}
	hosts := []string{"X-Forwarded-Host", "X_Forwarded_Host", "X-Forwarded-Server", "X-Host", "X-Original-Host", "X-HTTP-Host-Override",
		"Forwarded", "X-Envoy-Original-Dst-Host"}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, host := range []string{"paths.test", "other.test"} {
			req := mustReq("POST", h.tlsURL(host, "/v1/things"), strings.NewReader("x"))
			for _, k := range append(append([]string{}, methodPath...), hosts...) {
				req.Header[k] = []string{"/admin"}
			}
			req.Header.Set("X-Forwarded-For", "10.0.0.1") // not an override: it goes
			if st, body, _ := h.do(c, req); st != 200 {
				t.Fatalf("h2=%v POST %s: %d %q", h2, host, st, body)
			}
			h.up.mu.Lock()
			got := h.up.last.Header
			h.up.mu.Unlock()
			restricted := host == "paths.test"
			has := func(k string) bool {
				for gk := range got {
					if strings.EqualFold(gk, k) {
						return true
					}
				}
				return false
			}
			for _, k := range methodPath {
				if has(k) == restricted {
					t.Errorf("h2=%v %s: upstream has %s: %v; want it only where the route restricts nothing", h2, host, k, has(k))
				}
			}
			for _, k := range hosts {
				if has(k) {
					t.Errorf("h2=%v %s: upstream got the host override %s", h2, host, k)
				}
			}
			if !has("X-Forwarded-For") {
				t.Errorf("h2=%v %s: X-Forwarded-For was dropped", h2, host)
			}
		}
	}
	h.waitEntry("dropped", func(e audit.Entry) bool {
		return strings.Contains(e.Reason, "dropped ") && strings.Contains(e.Reason, "X-Envoy-Original-Path") && strings.Contains(e.Reason, "Forwarded")
	})
}

// TestDeniedHTTPSShowsReason: a client that trusts the bottle's CA reads
// the sidecar's 403 for a denied HTTPS host — the reason, how to ask, the
// bottle's slug — over both HTTP versions, and nothing is resolved or
// dialled: a listener on the port sees no connection, also after a reload
// allows the host while the tunnel is open.
func TestDeniedHTTPSShowsReason(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	lport := portOf(t, ln.Addr())
	routes := defaultRoutes + fmt.Sprintf("- host: listed.test\n  ports: [%d]\n", lport)
	h := newHarness(t, routes, func(c *Config) { c.Slug = "calm-otter" })
	u := fmt.Sprintf("https://denied.test:%d/some/path", lport)
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, target := range []string{u, "https://denied.test/"} {
			req := mustReq("GET", target, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("h2=%v GET %s: %v", h2, target, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h.bodies = append(h.bodies, string(b))
			want := []string{"host denied.test", "is not in this bottle's routes", "POST http://bb.egress/_bb/requests", `"host":"denied.test"`,
				"bb-egress allow calm-otter denied.test"}
			for _, w := range want {
				if resp.StatusCode != 403 || !strings.Contains(string(b), w) {
					t.Errorf("h2=%v GET %s = %d %q; want 403 saying %q", h2, target, resp.StatusCode, b, w)
				}
			}
			if (resp.ProtoMajor == 2) != h2 {
				t.Errorf("h2=%v: answered over %s", h2, resp.Proto)
			}
		}
		// Whatever the request says inside, it goes nowhere.
		for _, r := range []*http.Request{
			mustReq("POST", u, strings.NewReader("data")),
			func() *http.Request { r := mustReq("GET", u, nil); r.Host = "other.test"; return r }(),
			mustReq("OPTIONS", u, nil),
		} {
			if st, body, _ := h.do(c, r); st != 403 {
				t.Errorf("h2=%v %s %s in a denied tunnel = %d %q", h2, r.Method, r.Host, st, body)
			}
		}
	}
	// A tunnel opened while the host was denied stays denied.
	c := h.client(false)
	if st, _, _ := h.do(c, mustReq("GET", u, nil)); st != 403 {
		t.Fatalf("before the reload: %d", st)
	}
	h.writeRoutes(routes + fmt.Sprintf("- host: denied.test\n  ports: [%d]\n", lport))
	h.waitEntry("reload", func(e audit.Entry) bool { return e.Method == "RELOAD" && e.Decision == audit.Allow })
	if st, body, _ := h.do(c, mustReq("GET", u, nil)); st != 403 {
		t.Errorf("in a tunnel opened before the reload: %d %q; want 403", st, body)
	}
	connects := 0
	for _, e := range h.entries() {
		if e.Method == "CONNECT" {
			connects++
			if e.Decision != audit.Deny || e.Status != 200 || !strings.Contains(e.Reason, "not in the bottle's routes") {
				t.Errorf("CONNECT entry = %+v", e)
			}
		}
	}
	if connects == 0 {
		t.Error("no CONNECT was logged")
	}
	if accepted.Load() != 0 || h.lookedUp("denied.test") {
		t.Errorf("the denied host was dialled (%d) or resolved (%v)", accepted.Load(), h.lookedUp("denied.test"))
	}
	h.mu.Lock()
	dials := append([]string(nil), h.dials...)
	h.mu.Unlock()
	if len(dials) != 0 {
		t.Errorf("dialled %v", dials)
	}
	if h.up.count() != 0 {
		t.Errorf("the upstream saw %d requests", h.up.count())
	}
}

// TestRefusedBodyBounds: a refused request's body is scanned around every
// limit (MaxScanBody-1, MaxScanBody, MaxScanBody+1, 10x; declared or
// chunked), the canary at its end; a body that trickles is answered within
// refusedBodyWait and logged as not scanned, not held for BodyReadTimeout.
func TestRefusedBodyBounds(t *testing.T) {
	const limit = 64 << 10
	h := newHarness(t, "", func(c *Config) { c.MaxScanBody = limit })
	cn := h.canary
	for _, size := range []int{limit - 1, limit, limit + 1, 10 * limit} {
		for _, chunked := range []bool{false, true} {
			for _, h2 := range []bool{false, true} {
				body := append(bytes.Repeat([]byte("a"), size-len(cn)-1), ' ')
				body = append(body, cn...)
				var rd io.Reader = bytes.NewReader(body)
				if chunked {
					rd = io.MultiReader(rd) // no length known
				}
				n := len(h.entries())
				req := mustReq("POST", h.tlsURL("denied.test", "/up"), rd)
				if st, b, _ := h.do(h.client(h2), req); st != 403 {
					t.Errorf("size %d chunked=%v h2=%v: %d %q", size, chunked, h2, st, b)
				}
				h.wantCanaryBlock(t, n, fmt.Sprintf("size %d chunked=%v h2=%v", size, chunked, h2))
			}
		}
	}
	// A trickle: the refusal does not wait for it.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\nContent-Length: 1000\r\n\r\nab")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != 403 || took > refusedBodyWait+time.Second {
		t.Errorf("a trickling refused body: %d after %v; want 403 within %v", resp.StatusCode, took, refusedBodyWait)
	}
	h.waitEntry("not read in time", func(e audit.Entry) bool {
		return e.Decision == audit.Deny && strings.Contains(e.Reason, "not read within")
	})
}

// TestStalledBodyAnswered: an upload that stops mid-body is answered 408
// once BodyReadTimeout is up, over both HTTP versions, instead of holding
// its connection unanswered while the server waits for the rest.
func TestStalledBodyAnswered(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.BodyReadTimeout = 500 * time.Millisecond })
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST http://other.test:%d/x HTTP/1.1\r\nHost: other.test\r\nContent-Length: 1000\r\n\r\nab", h.up.pport)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("HTTP/1.1: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("HTTP/1.1: %d; want 408", resp.StatusCode)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("ab"))
	req := mustReq("POST", h.tlsURL("other.test", "/x"), pr)
	req.ContentLength = 1000
	done := make(chan int, 1)
	go func() {
		resp, err := h.client(true).Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case st := <-done:
		if st != http.StatusRequestTimeout {
			t.Errorf("HTTP/2: %d; want 408", st)
		}
	case <-time.After(5 * time.Second):
		t.Error("HTTP/2: no answer")
	}
	if h.up.count() != 0 {
		t.Errorf("the upstream saw %d requests", h.up.count())
	}
}

func TestOverrideKindAllocs(t *testing.T) {
	for _, k := range []string{"X-Forwarded-Host", "Accept", "X-Original-Url", "Forwarded", "X-Request-Id"} {
		if n := testing.AllocsPerRun(100, func() { overrideKind(k) }); n != 0 {
			t.Errorf("overrideKind(%q) allocates %v times", k, n)
		}
	}
	if overrideKind("X-Original-"+strings.Repeat("a", 200)) == overridesNone {
		t.Error("a long X-Original- header is not an override")
	}
}

// TestMethodCaseLaterRoute: a lower-case method refused by a route that
// lists methods is still let through by a later route of the host that
// allows any; a host name that cannot be in a certificate gets its CONNECT
// refused rather than intercepted.
func TestMethodCaseLaterRoute(t *testing.T) {
	h := newHarness(t, `
- host: two.test
  ports: [{{TLS}}]
  methods: [GET]
  paths: [/v1/]
- host: two.test
  ports: [{{TLS}}]
`)
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		if st, body, _ := h.do(c, mustReq("get", h.tlsURL("two.test", "/v1/x"), nil)); st != 200 {
			t.Errorf("h2=%v get on two.test = %d %q", h2, st, body)
		}
	}
	e := h.waitEntry("allowed by the second route", func(e audit.Entry) bool { return e.Method == "get" && e.Decision == audit.Allow })
	if e.Route != "two.test" {
		t.Errorf("route = %q", e.Route)
	}
	ans := h.rawProxy(t, "CONNECT *.wild.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(ans, "403") {
		t.Errorf("CONNECT *.wild.test: %q", ans)
	}
}

// TestRefusedTrailers: a canary in the trailers of a refused chunked
// request is named, over both HTTP versions.
func TestRefusedTrailers(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		n := len(h.entries())
		req := mustReq("POST", h.tlsURL("denied.test", "/x"), io.MultiReader(strings.NewReader("hello")))
		req.Trailer = http.Header{"X-Sum": {h.canary}}
		if st, body, _ := h.do(h.client(h2), req); st != 403 {
			t.Errorf("h2=%v: %d %q", h2, st, body)
		}
		h.wantCanaryBlock(t, n, fmt.Sprintf("h2=%v trailers", h2))
	}
}

// TestQueryMethodOverride: on a route that lists methods, a query asking
// for another method (_method, X-HTTP-Method-Override) is refused; on a
// route without methods it goes as sent.
func TestQueryMethodOverride(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, q := range []string{"_method=DELETE", "a=1&_METHOD=PUT", "x-http-method-override=DELETE", "%5fmethod=DELETE", "a=1;_method=PATCH"} {
			if st, body, _ := h.do(c, mustReq("POST", h.tlsURL("paths.test", "/v1/x?"+q), strings.NewReader("x"))); st != 403 {
				t.Errorf("h2=%v POST paths.test ?%s = %d %q; want 403", h2, q, st, body)
			}
			if st, body, _ := h.do(c, mustReq("POST", h.tlsURL("other.test", "/v1/x?"+q), strings.NewReader("x"))); st != 200 {
				t.Errorf("h2=%v POST other.test ?%s = %d %q; want 200", h2, q, st, body)
			}
		}
		if st, body, _ := h.do(c, mustReq("GET", h.tlsURL("paths.test", "/v1/x?method=x&my_method=y"), nil)); st != 200 {
			t.Errorf("h2=%v an ordinary query = %d %q", h2, st, body)
		}
	}
	if n := h.up.count(); n != 12 {
		t.Errorf("the upstream saw %d requests, want 12", n)
	}
}

// TestStalledStreamAnswered: a large upload that stalls after its first
// MaxScanBody bytes (streamed to the upstream, refused or cut by a
// refusal) is answered, not left waiting on the rest of a body that never
// comes; the same for a refused one.
func TestStalledStreamAnswered(t *testing.T) {
	const limit = 64 << 10
	h := newHarness(t, "", func(c *Config) { c.BodyReadTimeout = 500 * time.Millisecond; c.MaxScanBody = limit })
	for _, host := range []string{"other.test", "denied.test"} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST http://%s:%d/x HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", host, h.up.pport, host, 3*limit+1000)
		c.Write(bytes.Repeat([]byte("a"), 3*limit))
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%s: no answer: %v", host, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: %d", host, resp.StatusCode)
		}
	}
}
