package egress

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/state"
)

func TestAllowedHTTPSAndHTTP(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	for _, u := range []string{h.tlsURL("other.test", "/hello"), h.plainURL("other.test", "/hello")} {
		st, body := h.get(c, u)
		if st != 200 || body != "ok /hello 0" {
			t.Fatalf("GET %s = %d %q", u, st, body)
		}
	}
	e := h.waitEntry("allow other.test", func(e audit.Entry) bool {
		return e.Decision == audit.Allow && e.Host == "other.test" && e.Method == "GET" && e.Status == 200
	})
	if e.Route != "other.test" || e.Path != "/hello" || e.BytesDown != int64(len("ok /hello 0")) || e.Client == "" {
		t.Errorf("allow entry = %+v", e)
	}
}

func TestDeniedHost(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	for _, u := range []string{"http://evil.example/x", "https://evil.example/x", "http://evil.example:8080/x"} {
		resp, err := c.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h.bodies = append(h.bodies, string(b))
			if resp.StatusCode != 403 || !strings.Contains(string(b), "host evil.example") || !strings.Contains(string(b), "/_bb/requests") {
				t.Errorf("GET %s = %d %q", u, resp.StatusCode, b)
			}
			continue
		}
		// A refused CONNECT reaches the Go client as an error carrying the status.
		if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("GET %s: %v", u, err)
		}
	}
	// A CONNECT to a port that is not taken for HTTPS is refused itself;
	// its body, read raw.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT evil.example:22 HTTP/1.1\r\nHost: evil.example:22\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	h.bodies = append(h.bodies, string(raw))
	if !strings.HasPrefix(string(raw), "HTTP/1.1 403") || !strings.Contains(string(raw), "host evil.example:22 is not in this bottle's routes") {
		t.Errorf("CONNECT evil.example:22: %q", raw)
	}
	h.waitEntry("deny CONNECT", func(e audit.Entry) bool {
		return e.Method == "CONNECT" && e.Host == "evil.example" && e.Decision == audit.Deny && e.Status == 403
	})
	h.waitEntry("deny GET", func(e audit.Entry) bool {
		return e.Method == "GET" && e.Host == "evil.example" && e.Decision == audit.Deny && e.Status == 403
	})
	if h.lookedUp("evil.example") {
		t.Error("a denied host was resolved")
	}
	// The recorder works: an allowed host is looked up.
	h.get(c, h.plainURL("other.test", "/"))
	if !h.lookedUp("other.test") {
		t.Error("an allowed host was not resolved through the hook")
	}
	if n := h.up.count(); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

func TestPathsMethodsAndEncodedSeparators(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/things", 200},
		{"POST", "/v1/things", 200},
		{"DELETE", "/v1/things", 403},
		{"GET", "/v2/things", 403},
		{"GET", "/v1x", 403},
		{"GET", "/v1/../admin", 403},
		{"GET", "/v1/..%2fadmin", 403},
		{"GET", "/v1/%2e%2e/admin", 403},
		{"GET", "/v1/..%5cadmin", 403},
	}
	for _, tt := range tests {
		for _, base := range []string{h.tlsURL("paths.test", ""), h.plainURL("paths.test", "")} {
			req, err := http.NewRequest(tt.method, base+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = "" // keep the raw path exactly as written
			u, _ := url.Parse(base + tt.path)
			req.URL = u
			st, body, _ := h.do(c, req)
			if st != tt.want {
				t.Errorf("%s %s%s = %d %q, want %d", tt.method, base, tt.path, st, body, tt.want)
			}
		}
	}
}

func TestDomainFronting(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	req, _ := http.NewRequest("GET", h.tlsURL("other.test", "/x"), nil)
	req.Host = "api.test"
	st, body, _ := h.do(c, req)
	if st != 403 || !strings.Contains(body, "domain fronting") {
		t.Errorf("fronted request = %d %q", st, body)
	}
	if h.up.count() != 0 {
		t.Error("the fronted request reached the upstream")
	}
}

// canaryCase is a way to smuggle the canary out; each must be blocked.
type canaryCase struct {
	name string
	req  func(h *harness, base string) *http.Request
}

func canaryCases() []canaryCase {
	post := func(base, ctype string, body []byte) *http.Request {
		r, _ := http.NewRequest("POST", base+"/upload", bytes.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		return r
	}
	return []canaryCase{
		{"query", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/search?q=x"+h.canary+"y", nil)
			return r
		}},
		{"path", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/files/"+h.canary, nil)
			return r
		}},
		{"header", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/", nil)
			r.Header.Set("X-Debug", "token="+h.canary)
			return r
		}},
		{"header name", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/", nil)
			r.Header.Set("X-"+h.canary, "1")
			return r
		}},
		{"cookie", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/", nil)
			r.AddCookie(&http.Cookie{Name: "s", Value: h.canary})
			return r
		}},
		{"json body", func(h *harness, base string) *http.Request {
			return post(base, "application/json", []byte(`{"note":"`+h.canary+`"}`))
		}},
		{"multipart body", func(h *harness, base string) *http.Request {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			fw, _ := mw.CreateFormFile("file", "env.txt")
			fmt.Fprintf(fw, "HOME=/root\nBOT_BOTTLE_CANARY=%s\n", h.canary)
			mw.Close()
			return post(base, mw.FormDataContentType(), b.Bytes())
		}},
		{"gzip body", func(h *harness, base string) *http.Request {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			fmt.Fprintf(zw, "%s", strings.Repeat("padding ", 100)+h.canary)
			zw.Close()
			r := post(base, "text/plain", b.Bytes())
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}},
		{"base64 body", func(h *harness, base string) *http.Request {
			return post(base, "text/plain", []byte("data="+base64.StdEncoding.EncodeToString([]byte("x:"+h.canary))))
		}},
		{"hex query", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/?d="+hex.EncodeToString([]byte(h.canary)), nil)
			return r
		}},
		{"percent-encoded body", func(h *harness, base string) *http.Request {
			var pe strings.Builder
			for _, c := range []byte(h.canary) {
				fmt.Fprintf(&pe, "%%%02X", c)
			}
			return post(base, "application/x-www-form-urlencoded", []byte("a=1&b="+pe.String()))
		}},
		{"double percent-encoded query", func(h *harness, base string) *http.Request {
			var pe strings.Builder
			for _, c := range []byte(h.canary) {
				fmt.Fprintf(&pe, "%%25%02X", c)
			}
			r, _ := http.NewRequest("GET", base+"/?d="+pe.String(), nil)
			return r
		}},
		{"base64 header", func(h *harness, base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/", nil)
			r.SetBasicAuth("agent", h.canary)
			return r
		}},
	}
}

func TestCanaryBlocked(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, tc := range canaryCases() {
			for _, base := range []string{h.tlsURL("other.test", ""), h.plainURL("other.test", "")} {
				t.Run(fmt.Sprintf("%s/%s/h2=%v", tc.name, base[:5], h2), func(t *testing.T) {
					before := h.up.count()
					n := len(h.entries())
					st, body, _ := h.do(c, tc.req(h, base))
					if st != 403 || !strings.Contains(body, "CANARY") {
						t.Fatalf("status %d %q, want 403 naming CANARY", st, body)
					}
					if h.up.count() != before {
						t.Fatal("the upstream received the request")
					}
					e := h.waitEntry("block", func(e audit.Entry) bool { return e.Seq > uint64(n) && e.Decision == audit.Block })
					if e.Secret != "CANARY" || !e.Canary || e.Status != 403 || e.Host != "other.test" {
						t.Errorf("log entry = %+v", e)
					}
				})
			}
		}
	}
	if hit, ok := h.det.Find(h.up.got()); ok {
		t.Errorf("the upstream received secret %s (%s)", hit.Secret, hit.Encoding)
	}
}

func TestCanaryInHostName(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	for _, u := range []string{h.plainURL(h.canary+".wild.test", "/"), h.tlsURL(h.canary+".wild.test", "/"),
		h.plainURL(strings.ToLower(h.canary)+".wild.test", "/")} {
		resp, err := c.Get(u)
		if err != nil {
			if !strings.Contains(err.Error(), "Forbidden") {
				t.Errorf("GET %s: %v", u, err)
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.bodies = append(h.bodies, string(b))
		if resp.StatusCode != 403 {
			t.Errorf("GET %s = %d %q", u, resp.StatusCode, b)
		}
	}
	if h.lookedUp(strings.ToLower(h.canary) + ".wild.test") {
		t.Error("a host name carrying the canary was resolved")
	}
	h.waitEntry("CONNECT block", func(e audit.Entry) bool {
		return e.Method == "CONNECT" && e.Decision == audit.Block && e.Canary
	})
	// The wildcard does work for honest names.
	if st, _ := h.get(c, h.plainURL("a.wild.test", "/")); st != 200 {
		t.Errorf("a.wild.test = %d", st)
	}
}

// chunks is a body that is read in the given pieces: the client sends one
// chunk per piece.
type chunks struct{ parts [][]byte }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	c.parts[0] = c.parts[0][n:]
	if len(c.parts[0]) == 0 {
		c.parts = c.parts[1:]
	}
	return n, nil
}

func TestCanaryChunkedEveryOffset(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	body := []byte(`{"k":"` + h.canary + `"}`)
	start := bytes.Index(body, []byte(h.canary))
	for cut := start; cut <= start+len(h.canary); cut++ {
		req, _ := http.NewRequest("POST", h.tlsURL("other.test", "/chunked"), &chunks{[][]byte{body[:cut], body[cut:]}})
		req.ContentLength = -1
		st, _, _ := h.do(c, req)
		if st != 403 {
			t.Fatalf("split at %d: status %d", cut, st)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
	blocks := 0
	for _, e := range h.entries() {
		if e.Decision == audit.Block && e.Canary {
			blocks++
		}
	}
	if blocks != len(h.canary)+1 {
		t.Errorf("%d block entries, want %d", blocks, len(h.canary)+1)
	}
}

func TestLargeBody(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	const size = 3 << 20
	clean := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	st, body, _ := h.do(c, mustReq("POST", h.tlsURL("other.test", "/big"), bytes.NewReader(clean)))
	if st != 200 || body != fmt.Sprintf("ok /big %d", size) {
		t.Fatalf("clean large upload = %d %q", st, body)
	}

	dirty := bytes.Clone(clean)
	at := 2<<20 + 5
	copy(dirty[at:], h.canary)
	before := len(h.up.got())
	st, body, _ = h.do(c, mustReq("POST", h.tlsURL("other.test", "/big"), bytes.NewReader(dirty)))
	if st != 403 || !strings.Contains(body, "CANARY") {
		t.Fatalf("large upload with the canary = %d %q", st, body)
	}
	got := h.up.got()[before:]
	if hit, ok := h.det.Find(got); ok {
		t.Fatalf("the upstream received secret %s", hit.Secret)
	}
	if len(got) >= at+len(h.canary) {
		t.Errorf("the upstream read %d bytes, past the secret at %d", len(got), at)
	}
	e := h.waitEntry("block large", func(e audit.Entry) bool { return e.Decision == audit.Block })
	if !e.Canary || e.Secret != "CANARY" || e.BytesUp > int64(at) {
		t.Errorf("entry = %+v", e)
	}
}

func mustReq(method, u string, body io.Reader) *http.Request {
	r, err := http.NewRequest(method, u, body)
	if err != nil {
		panic(err)
	}
	return r
}

func TestCompressedBodies(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxDecompressed = 1 << 20 })
	c := h.client(false)
	gz := func(data []byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		return b.Bytes()
	}
	tests := []struct {
		name string
		enc  string
		body []byte
		want int
	}{
		{"clean gzip", "gzip", gz([]byte("hello")), 200},
		{"zip bomb", "gzip", gz(make([]byte, 8<<20)), 413},
		{"not gzip", "gzip", []byte("this is not gzip"), 403},
		{"truncated gzip", "gzip", gz([]byte(strings.Repeat("x", 1000)))[:20], 403},
		{"brotli", "br", []byte("whatever"), 415},
		{"gzip in gzip", "gzip, gzip", gz(gz([]byte(h.canary))), 403},
	}
	for _, tt := range tests {
		before := h.up.count()
		req := mustReq("POST", h.tlsURL("other.test", "/z"), bytes.NewReader(tt.body))
		req.Header.Set("Content-Encoding", tt.enc)
		st, body, _ := h.do(c, req)
		if st != tt.want {
			t.Errorf("%s: status %d %q, want %d", tt.name, st, body, tt.want)
		}
		if tt.want != 200 && h.up.count() != before {
			t.Errorf("%s: the upstream received it", tt.name)
		}
	}
}

func TestPlaceholderAndInjection(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		// The placeholder on its own route is replaced by the real token.
		req := mustReq("GET", h.tlsURL("api.test", "/me"), nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		st, body, _ := h.do(c, req)
		if st != 200 || h.up.lastAuth() != "Bearer "+apiToken {
			t.Fatalf("placeholder on its route: %d %q, upstream saw %q", st, body, h.up.lastAuth())
		}
		// Injection overwrites what the agent sent.
		req = mustReq("GET", h.tlsURL("api.test", "/me"), nil)
		req.Header.Set("Authorization", "Bearer something-else")
		if h.do(c, req); h.up.lastAuth() != "Bearer "+apiToken {
			t.Errorf("injection did not overwrite: upstream saw %q", h.up.lastAuth())
		}
		// With no header at all, it is added.
		if h.do(c, mustReq("GET", h.tlsURL("api.test", "/none"), nil)); h.up.lastAuth() != "Bearer "+apiToken {
			t.Errorf("injection missing: upstream saw %q", h.up.lastAuth())
		}
	}
	c := h.client(false)
	before := h.up.count()
	for _, tc := range []struct{ name, value, secret string }{
		{"placeholder", placeholder, "PLACEHOLDER_API"},
		{"real token", apiToken, "API"},
	} {
		req := mustReq("GET", h.tlsURL("other.test", "/me"), nil)
		req.Header.Set("Authorization", "Bearer "+tc.value)
		st, body, _ := h.do(c, req)
		if st != 403 || !strings.Contains(body, tc.secret) {
			t.Errorf("%s to the wrong host: %d %q", tc.name, st, body)
		}
		// The real token is blocked on its own route too: the agent never holds it.
		if tc.secret == "API" {
			req := mustReq("POST", h.tlsURL("api.test", "/me"), strings.NewReader("k="+tc.value))
			if st, _, _ := h.do(c, req); st != 403 {
				t.Errorf("real token on its own route: %d", st)
			}
		}
	}
	if h.up.count() != before {
		t.Error("a blocked request reached the upstream")
	}
	h.waitEntry("placeholder block", func(e audit.Entry) bool {
		return e.Decision == audit.Block && e.Secret == "PLACEHOLDER_API" && !e.Canary
	})
}

func TestMissingToken(t *testing.T) {
	h := newHarness(t, "")
	st, body := h.get(h.client(false), h.tlsURL("missing.test", "/"))
	if st != 502 || !strings.Contains(body, "EGRESS_TOKEN_MISSING") {
		t.Errorf("missing token: %d %q", st, body)
	}
	if h.up.count() != 0 {
		t.Error("the request went out without its credential")
	}
}

func TestLoopbackAndMetadataRefused(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.AllowLoopback = false })
	c := h.client(false)
	for _, u := range []string{
		"http://metadata.test/latest/meta-data/", // resolves to 169.254.169.254
		h.plainURL("local.test", "/"),            // resolves to 127.0.0.1
		h.tlsURL("local.test", "/"),
		"http://169.254.169.254/latest/", // not in the routes at all
		fmt.Sprintf("http://127.0.0.1:%d/", h.up.pport),
	} {
		st, body := h.get(c, u)
		if st != 403 {
			t.Errorf("GET %s = %d %q, want 403", u, st, body)
		}
	}
	h.mu.Lock()
	dials := append([]string(nil), h.dials...)
	h.mu.Unlock()
	if len(dials) != 0 {
		t.Errorf("dialled %v", dials)
	}
	if h.up.count() != 0 {
		t.Error("the upstream was reached")
	}
	h.waitEntry("refused metadata", func(e audit.Entry) bool {
		return e.Host == "metadata.test" && e.Status == 403 && strings.Contains(e.Reason, "169.254.169.254")
	})

	// A route that names the IP literally is allowed.
	h.writeRoutes("- host: 127.0.0.1\n  ports: [{{PLAIN}}]\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if st, body := h.get(c, fmt.Sprintf("http://127.0.0.1:%d/lit", h.up.pport)); st != 200 {
		t.Errorf("literal IP route: %d %q", st, body)
	}
}

func TestSelfIsRefused(t *testing.T) {
	h := newHarness(t, "")
	_, port, _ := net.SplitHostPort(h.addr)
	// A route whose name resolves to the proxy itself: the dial is refused.
	h.writeRoutes("- host: self.test\n  ports: [" + port + "]\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	c := h.client(false)
	if st, body := h.get(c, "http://self.test:"+port+"/x"); st != 403 || !strings.Contains(body, "sidecar itself") {
		t.Errorf("request looping into the proxy: %d %q", st, body)
	}
	// CONNECT to the proxy's own address is refused.
	if _, err := c.Get("https://" + h.addr + "/"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("CONNECT to the proxy itself: %v", err)
	}
	// A proxied request to its own address is the agent channel.
	if st, body := h.get(c, "http://"+h.addr+"/_bb/routes"); st != 200 || !strings.Contains(body, "self.test") {
		t.Errorf("agent channel by address: %d %q", st, body)
	}
}

func TestAgentChannel(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	direct := &http.Client{Timeout: 5 * time.Second}
	for _, cl := range []*http.Client{c, direct} {
		base := "http://" + Hostname
		if cl == direct {
			base = "http://" + h.addr
		}
		st, body := h.get(cl, base+"/_bb/routes")
		if st != 200 || !strings.Contains(body, `"api.test"`) || !strings.Contains(body, `"token": "API"`) {
			t.Errorf("GET %s/_bb/routes = %d %q", base, st, body)
		}
		if strings.Contains(body, placeholder) || strings.Contains(body, apiToken) {
			t.Errorf("routes listing carries a placeholder or token: %s", body)
		}
		req := mustReq("POST", base+"/_bb/requests", strings.NewReader(`{"host":"PyPI.org","methods":["GET"],"paths":["/simple/"],"why":"install deps"}`))
		if st, body, _ := h.do(cl, req); st != 202 {
			t.Errorf("POST requests = %d %q", st, body)
		}
		for _, bad := range []string{`{"host":"pypi.org"}`, `{"host":"*.com","why":"x"}`, `{"host":"a.b","why":"x","extra":1}`, `not json`} {
			if st, body, _ := h.do(cl, mustReq("POST", base+"/_bb/requests", strings.NewReader(bad))); st != 400 {
				t.Errorf("POST %s = %d %q, want 400", bad, st, body)
			}
		}
		req = mustReq("POST", base+"/_bb/requests", strings.NewReader(`{"host":"x.org","why":"`+h.canary+`"}`))
		if st, _, _ := h.do(cl, req); st != 403 {
			t.Errorf("request carrying the canary = %d", st)
		}
		if st, _ := h.get(cl, base+"/_bb/other"); st != 404 {
			t.Errorf("GET /_bb/other = %d", st)
		}
	}
	if st, _ := h.get(direct, "http://"+h.addr+"/"); st != 400 {
		t.Errorf("origin-form outside /_bb/ = %d", st)
	}
	data, err := os.ReadFile(filepath.Join(h.dir, state.RequestsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"host":"pypi.org"`) || !strings.Contains(lines[0], `"client":"127.0.0.1:`) {
		t.Errorf("requests.jsonl = %s", data)
	}
}

func TestRequestsFileCapped(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxRequestsFile = 400 })
	direct := &http.Client{Timeout: 5 * time.Second}
	var statuses []int
	for i := 0; i < 5; i++ {
		req := mustReq("POST", "http://"+h.addr+"/_bb/requests", strings.NewReader(`{"host":"x.org","why":"`+strings.Repeat("w", 100)+`"}`))
		st, _, _ := h.do(direct, req)
		statuses = append(statuses, st)
	}
	if statuses[0] != 202 || statuses[4] != 507 {
		t.Errorf("statuses = %v", statuses)
	}
	fi, err := os.Stat(filepath.Join(h.dir, state.RequestsFile))
	if err != nil || fi.Size() > 400 {
		t.Errorf("requests file: %v %v", fi.Size(), err)
	}
}

func TestHTTP2Client(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(true)
	resp, err := c.Get(h.tlsURL("other.test", "/h2"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Errorf("status %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}
}

func TestSlowAndFailingUpstream(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.ResponseHeaderTimeout = 200 * time.Millisecond })
	c := h.client(false)
	if st, body := h.get(c, h.tlsURL("other.test", "/slow")); st != 504 {
		t.Errorf("slow upstream = %d %q", st, body)
	}
	h.waitEntry("504", func(e audit.Entry) bool { return e.Status == 504 && e.Path == "/slow" })
	if st, body := h.get(c, h.tlsURL("other.test", "/hangup")); st != 502 {
		t.Errorf("upstream hanging up = %d %q", st, body)
	}
	h.waitEntry("502", func(e audit.Entry) bool { return e.Status == 502 && e.Path == "/hangup" })

	// Nothing listens on the port: the dial fails.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	h.writeRoutes("- host: down.test\n  ports: [" + port + "]\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if st, body := h.get(c, "http://down.test:"+port+"/"); st != 502 {
		t.Errorf("upstream down = %d %q", st, body)
	}
	h.waitEntry("502 down", func(e audit.Entry) bool { return e.Status == 502 && e.Host == "down.test" })
}

func TestReloadInvalidUnderLoad(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	var failures, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(h.tlsURL("other.test", "/load"))
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	for _, bad := range []string{"- host: Not A Host\n", "- host: [unclosed\n", "- host: x.test\n  bogus: 1\n"} {
		time.Sleep(30 * time.Millisecond)
		h.writeRoutes(bad)
		if err := h.srv.Reload(); err == nil {
			t.Errorf("reload of %q succeeded", bad)
		}
	}
	time.Sleep(100 * time.Millisecond) // the watcher sees the bad file too
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || done.Load() == 0 {
		t.Errorf("%d of %d requests failed during bad reloads", failures.Load(), done.Load())
	}
	if st, _ := h.get(c, h.tlsURL("other.test", "/after")); st != 200 {
		t.Errorf("old routes not in force: %d", st)
	}
	h.waitEntry("refused reload", func(e audit.Entry) bool {
		return e.Method == "RELOAD" && e.Decision == audit.Deny && strings.Contains(e.Reason, "old routes stay")
	})
}

func TestReloadByRename(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	if st, _ := h.get(c, h.plainURL("new.test", "/")); st != 403 {
		t.Fatalf("new.test allowed before the change: %d", st)
	}
	// Replace by rename, as bb-egress apply does; no SIGHUP, no Reload.
	h.writeRoutes(defaultRoutes + "- host: new.test\n  ports: [{{PLAIN}}]\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := h.get(c, h.plainURL("new.test", "/"))
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renamed routes file was not picked up: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.waitEntry("reload", func(e audit.Entry) bool { return e.Method == "RELOAD" && e.Decision == audit.Allow })
}

func TestRequestInFlightKeepsItsRoutes(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	res := make(chan int, 1)
	go func() {
		st, _ := h.get(c, h.plainURL("other.test", "/slow"))
		res <- st
	}()
	time.Sleep(200 * time.Millisecond)
	h.writeRoutes("- host: api.test\n  ports: [{{PLAIN}}]\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := <-res; st != 200 {
		t.Errorf("request in flight = %d", st)
	}
	if st, _ := h.get(c, h.plainURL("other.test", "/")); st != 403 {
		t.Errorf("other.test after it was removed = %d", st)
	}
}

func TestManyConnections(t *testing.T) {
	const n, limit = 1000, 100
	h := newHarness(t, "", func(c *Config) { c.MaxConns = limit; c.ConnWait = 20 * time.Second })
	u := h.plainURL("other.test", "/sleep")
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n", u)
			b, _ := io.ReadAll(conn)
			if !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d connections failed", f, n)
	}
	h.up.mu.Lock()
	peak := h.up.peak
	h.up.mu.Unlock()
	if peak > limit {
		t.Errorf("%d requests at once upstream, over the cap of %d", peak, limit)
	}
	t.Logf("%d connections in %v, peak %d", n, time.Since(start), peak)
}

func TestConnectionCapRefuses(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxConns = 2; c.ConnWait = 50 * time.Millisecond })
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 503")) {
		t.Errorf("connection over the cap got %q", b)
	}
	held[0].Close()
	time.Sleep(50 * time.Millisecond)
	if st, _ := h.get(h.client(false), h.plainURL("other.test", "/")); st != 200 {
		t.Errorf("after a slot freed: %d", st)
	}
}

func TestHeaderTimeout(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.HandshakeTimeout = 200 * time.Millisecond
	})
	for _, first := range []string{"GET http://other.test/ HTTP/1.1\r\n", "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test\r\n\r\n"} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, first) // then nothing: a slowloris, or a client that never starts TLS
		c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		io.ReadAll(c)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q: connection held %v", first, d)
		}
		c.Close()
	}
}

func TestDrainOnShutdown(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	res := make(chan int, 1)
	go func() {
		st, _ := h.get(c, h.tlsURL("other.test", "/slow"))
		res <- st
	}()
	time.Sleep(300 * time.Millisecond)
	h.cancel()
	if st := <-res; st != 200 {
		t.Errorf("request in flight at shutdown = %d", st)
	}
	if err := <-h.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	h.done <- nil // for cleanup
	if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestCAFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca1, err := LoadOrCreateCA(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{state.CACertFile: 0o644, state.CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	ca2, err := LoadOrCreateCA(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !ca1.Certificate().Equal(ca2.Certificate()) {
		t.Error("the CA was not reused")
	}
	for _, host := range []string{"a.test", "b.test", "c.test", "127.0.0.1"} {
		leaf, err := ca2.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.Leaf.VerifyHostname(host); err != nil {
			t.Error(err)
		}
		if leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore) > 26*time.Hour {
			t.Errorf("leaf for %s lives %v", host, leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore))
		}
	}
	if n := ca2.cached(); n != 2 {
		t.Errorf("leaf cache holds %d, want its cap 2", n)
	}
	// One file without the other is refused, not silently replaced.
	os.Remove(filepath.Join(dir, state.CAKeyFile))
	if _, err := LoadOrCreateCA(dir, 2); err == nil {
		t.Error("a CA without its key was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, state.CACertFile)); err != nil {
		t.Error("the CA certificate was replaced")
	}
}

func TestNewRefusesBadRoutes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "routes.yaml")
	os.WriteFile(p, []byte("- host: UPPER.test\n"), 0o644)
	_, err := New(Config{RoutesFile: p, CADir: dir})
	if err == nil || !strings.Contains(err.Error(), "routes.yaml") {
		t.Errorf("New with a bad routes file: %v", err)
	}
}

// TestInjectOnWildcardRefused: a wildcard route would inject the token for
// any subdomain the agent names (a user-content host, a bucket).
func TestInjectOnWildcardRefused(t *testing.T) {
	h := newHarness(t, "")
	h.writeRoutes("- host: \"*.wild.test\"\n  ports: [{{TLS}}]\n  inject: {header: Authorization, token: API, format: \"Bearer {token}\"}\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "wildcard route cannot inject") {
		t.Fatalf("reload with inject on a wildcard: %v", err)
	}
	h.get(h.client(false), h.tlsURL("attacker-bucket.wild.test", "/"))
	h.up.mu.Lock()
	defer h.up.mu.Unlock()
	if h.up.last != nil && strings.Contains(h.up.last.Header.Get("Authorization"), apiToken) {
		t.Errorf("the token was injected for an agent-chosen subdomain %s", h.up.last.Host)
	}
}

// TestAuditLogEscapesC1: a C1 control from the agent's path (U+009B is CSI
// to some terminals) reaches the audit log escaped, never raw.
func TestAuditLogEscapesC1(t *testing.T) {
	h := newHarness(t, "")
	h.get(h.client(false), "http://evil.example/%C2%9B2J%C2%9B31mALL-CLEAR%7F")
	h.waitEntry("deny evil.example", func(e audit.Entry) bool { return e.Host == "evil.example" })
	for _, r := range h.dump() {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Fatalf("the audit log carries a raw %U from the agent's path", r)
		}
	}
}

// TestResponseNeverCarriesInjectedToken: an upstream that echoes the
// request (TRACE, a debugging endpoint, an error page, a WebSocket bot)
// must not hand the agent the token the sidecar injected: TRACE is
// refused, response headers carrying it are redacted, and a body or frame
// carrying it is stopped before any byte of the token.
func TestResponseNeverCarriesInjectedToken(t *testing.T) {
	h := newHarness(t, defaultRoutes+`
- host: wsapi.test
  ports: [{{TLS}}, {{PLAIN}}]
  websocket: true
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`)
	c := h.client(false)
	for _, m := range []string{"TRACE", "TRACK", "trace"} {
		before := h.up.count()
		if st, _, _ := h.do(c, mustReq(m, h.tlsURL("api.test", "/echo"), nil)); st != 405 || h.up.count() != before {
			t.Errorf("%s: %d, reached the upstream: %v", m, st, h.up.count() != before)
		}
	}
	// A header echo: redacted, and the request itself goes through.
	st, _, hdr := h.do(c, mustReq("GET", h.tlsURL("api.test", "/echo"), nil))
	if st != 200 || strings.Contains(hdr.Get("X-Upstream-Auth"), apiToken) || !strings.Contains(hdr.Get("X-Upstream-Auth"), "redacted") {
		t.Errorf("header echo: %d, X-Upstream-Auth %q", st, hdr.Get("X-Upstream-Auth"))
	}
	if h.up.lastAuth() != "Bearer "+apiToken {
		t.Errorf("the upstream saw %q, want the token", h.up.lastAuth())
	}
	h.waitEntry("redaction", func(e audit.Entry) bool {
		return e.Decision == audit.Allow && strings.Contains(e.Reason, "response headers redacted: X-Upstream-Auth")
	})
	// A body echo: 502, nothing of it passed on.
	for _, h2 := range []bool{false, true} {
		st, body, _ := h.do(h.client(h2), mustReq("GET", h.tlsURL("api.test", "/echo-body"), nil))
		if st != 502 || !strings.Contains(body, "token API") {
			t.Errorf("h2=%v body echo: %d %q", h2, st, body)
		}
	}
	h.waitEntry("response block", func(e audit.Entry) bool {
		return e.Decision == audit.Block && e.Secret == "API" && strings.Contains(e.Reason, "response carries token API") && !e.Canary
	})
	// A stream: what came before the token arrives, the token never does.
	for _, h2 := range []bool{false, true} {
		resp, err := h.client(h2).Get(h.tlsURL("api.test", "/echo-stream"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.bodies = append(h.bodies, string(got))
		if err == nil || !strings.Contains(string(got), "data: hello") || strings.Contains(string(got), apiToken[:8]) {
			t.Errorf("h2=%v stream with the token: %q, %v; want hello, then the stream cut", h2, got, err)
		}
	}
	// A WebSocket: its 101 headers redacted, a frame with the token stopped
	// (over TLS: an injecting route refuses ws://).
	for _, overTLS := range []bool{true} {
		wc, br, status := h.wsDial(t, "wsapi.test", overTLS)
		if !strings.HasPrefix(status, "101") {
			t.Fatalf("upgrade: %s", status)
		}
		wc.Write(wsFrameBytes(true, opText, []byte("whoami")))
		rest, _ := io.ReadAll(br)
		h.bodies = append(h.bodies, string(rest))
		if bytes.Contains(rest, []byte(apiToken[:8])) {
			t.Errorf("tls=%v: the client got the token in a frame: %q", overTLS, rest)
		}
	}
	h.waitEntry("ws block", func(e audit.Entry) bool {
		return e.Decision == audit.Block && e.Host == "wsapi.test" && strings.Contains(e.Reason, "WebSocket closed")
	})
}

// TestNoInjectionOverPlainHTTP: a route that injects a token answers
// plain http with a 403 saying why, and sends nothing.
func TestNoInjectionOverPlainHTTP(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	st, body := h.get(c, h.plainURL("api.test", "/clear"))
	if st != 403 || !strings.Contains(body, "never sent over plain http") {
		t.Errorf("plain http to an injecting route: %d %q", st, body)
	}
	if h.up.count() != 0 {
		t.Errorf("the upstream was reached over plain http, Authorization %q", h.up.lastAuth())
	}
	h.waitEntry("deny plain", func(e audit.Entry) bool {
		return e.Decision == audit.Deny && e.Host == "api.test" && strings.Contains(e.Reason, "plain http")
	})
	_, _, status := h.wsDial(t, "api.test", false)
	if !strings.HasPrefix(status, "403") {
		t.Errorf("ws:// to an injecting route: %s", status)
	}
}

type resolverFunc func(host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return f(host)
}

// TestPrivateAndMetadataAddressesRefused: after resolving, private,
// carrier-grade NAT and unique local addresses are refused like loopback
// (the Docker host, other containers, AWS's IPv6 metadata, Alibaba's), and
// so are IPv6 addresses embedding a refused IPv4 one; --allow-private lets
// the private ones through, not the loopback ones.
func TestPrivateAndMetadataAddressesRefused(t *testing.T) {
	private := map[string]string{
		"imds6.test":  "fd00:ec2::254",
		"docker.test": "172.17.0.1",
		"priv.test":   "10.0.0.1",
		"home.test":   "192.168.1.1",
		"aliyun.test": "100.100.100.200",
		"bench.test":  "198.18.0.1",
		"6to4.test":   "2002:0a00:0001::1",
		"nat64p.test": "64:ff9b::10.1.2.3",
		"teredo.test": "2001:0:4136:e378:8000:63bf:f5ff:fffe", // client 10.0.0.1
	}
	loop := map[string]string{
		"nat64.test":  "64:ff9b::a9fe:a9fe",
		"compat.test": "::127.0.0.1",
	}
	for _, allowPrivate := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-private=%v", allowPrivate), func(t *testing.T) {
			var mu sync.Mutex
			var dialled []string
			h := newHarness(t, "", func(c *Config) {
				c.AllowLoopback, c.AllowPrivate = false, allowPrivate
				c.Resolver = resolverFunc(func(host string) ([]netip.Addr, error) {
					if ip, ok := private[host]; ok {
						return []netip.Addr{netip.MustParseAddr(ip)}, nil
					}
					if ip, ok := loop[host]; ok {
						return []netip.Addr{netip.MustParseAddr(ip)}, nil
					}
					if host == "public.test" {
						return []netip.Addr{netip.MustParseAddr("2002:0808:0808::1")}, nil
					}
					return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
				})
				c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					mu.Lock()
					dialled = append(dialled, addr)
					mu.Unlock()
					return nil, fmt.Errorf("not really dialling %s", addr)
				}
			})
			var yaml strings.Builder
			for host := range private {
				fmt.Fprintf(&yaml, "- host: %s\n  ports: [80]\n", host)
			}
			for host := range loop {
				fmt.Fprintf(&yaml, "- host: %s\n  ports: [80]\n", host)
			}
			yaml.WriteString("- host: public.test\n  ports: [80]\n- host: 10.9.9.9\n  ports: [80]\n")
			h.writeRoutes(yaml.String())
			if err := h.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			c := h.client(false)
			for host := range private {
				st, body := h.get(c, "http://"+host+"/latest/meta-data/")
				if !allowPrivate && (st != 403 || !strings.Contains(body, "private")) {
					t.Errorf("%s: %d %q", host, st, body)
				}
			}
			for host := range loop {
				if st, body := h.get(c, "http://"+host+"/latest/meta-data/"); st != 403 || !strings.Contains(body, "loopback") {
					t.Errorf("%s: %d %q", host, st, body)
				}
			}
			h.get(c, "http://public.test/") // 6to4 of a public address: dialled
			h.get(c, "http://10.9.9.9/")    // a private address a route names: dialled
			mu.Lock()
			defer mu.Unlock()
			want := 2
			if allowPrivate {
				want += len(private)
			}
			if len(dialled) != want {
				t.Errorf("dialled %v, want %d dials", dialled, want)
			}
		})
	}
}

// TestStalledUploadsDoNotHoldBodySlots: an upload that stops sending is
// cut after BodyReadTimeout, giving its slot back, and a request that
// finds every slot taken waits BodySlotWait at most, then gets a 503.
func TestStalledUploadsDoNotHoldBodySlots(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.MaxBufferedBodies = 2
		c.BodyReadTimeout = 300 * time.Millisecond
		c.BodySlotWait = 100 * time.Millisecond
	})
	stall := func() net.Conn {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: other.test\r\nContent-Length: 1000\r\n\r\nab", h.plainURL("other.test", "/stall"))
		return conn
	}
	c := h.client(false)
	stall()
	stall()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	st, body, _ := h.do(c, mustReq("POST", h.plainURL("other.test", "/busy"), strings.NewReader("hello")))
	if st != 503 || !strings.Contains(body, "busy") || time.Since(start) > 2*time.Second {
		t.Errorf("with every slot stalled: %d %q after %v", st, body, time.Since(start))
	}
	time.Sleep(500 * time.Millisecond) // past BodyReadTimeout: the stalled uploads are cut
	if st, body, _ := h.do(c, mustReq("POST", h.plainURL("other.test", "/legit"), strings.NewReader("hello"))); st != 200 {
		t.Errorf("after the stalled uploads timed out: %d %q", st, body)
	}
	h.waitEntry("timeout", func(e audit.Entry) bool {
		return e.Path == "/stall" && e.Status == http.StatusRequestTimeout
	})
	// A large body that pauses too long mid-stream is cut too.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: other.test\r\nContent-Length: %d\r\n\r\n", h.plainURL("other.test", "/bigstall"), 4<<20)
	conn.Write(bytes.Repeat([]byte("x"), 2<<20))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a large body paused mid-stream held on for %v", time.Since(start))
	}
	if st, _, _ := h.do(c, mustReq("POST", h.plainURL("other.test", "/after"), strings.NewReader("hello"))); st != 200 {
		t.Errorf("after a large stalled upload: %d", st)
	}
}

// TestPathPrefixTricks: on a route with path prefixes, a path some server
// would read as another one is refused: ";" parameters, a backslash, an
// escaped "%", overlong UTF-8.
func TestPathPrefixTricks(t *testing.T) {
	h := newHarness(t, "")
	for _, p := range []string{"/v1/..;/admin", "/v1/;x/../../admin", `/v1/..\admin`, "/v1/%c0%ae%c0%ae/admin",
		"/v1/%C1%9C/admin", "/v1/%252e%252e/admin", "/v1/%e0%80%ae/x"} {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET http://paths.test:%d%s HTTP/1.1\r\nHost: paths.test\r\nConnection: close\r\n\r\n", h.up.pport, p)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.bodies = append(h.bodies, string(b))
		if resp.StatusCode != 403 && resp.StatusCode != 400 {
			t.Errorf("GET %s on a /v1/ route: %d %q", p, resp.StatusCode, b)
		}
	}
	if h.up.count() != 0 {
		t.Errorf("the upstream saw %q", h.up.got())
	}
	// On a route without paths the same paths are nobody's business.
	if st, _ := h.get(h.client(false), h.plainURL("other.test", "/a;b")); st != 200 {
		t.Errorf("a ';' on a route without paths: %d", st)
	}
}

// TestOverrideHeadersDropped: on a route that restricts methods or paths,
// the headers that make frameworks take another method or URL are not
// forwarded.
func TestOverrideHeadersDropped(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	for _, u := range []string{h.tlsURL("paths.test", "/v1/things"), h.tlsURL("other.test", "/v1/things")} {
		req := mustReq("POST", u, strings.NewReader("x"))
		req.Header.Set("X-HTTP-Method-Override", "DELETE")
		req.Header.Set("X-HTTP-Method", "DELETE")
		req.Header.Set("X-Method-Override", "DELETE")
		req.Header.Set("X-Original-URL", "/admin/delete-everything")
		req.Header.Set("X-Rewrite-URL", "/admin/delete-everything")
		if st, _, _ := h.do(c, req); st != 200 {
			t.Fatalf("POST %s: %d", u, st)
		}
		h.up.mu.Lock()
		got := h.up.last.Header
		h.up.mu.Unlock()
		restricted := strings.Contains(u, "paths.test")
		for _, k := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-URL", "X-Rewrite-URL"} {
			if (got.Get(k) != "") == restricted {
				t.Errorf("%s: upstream got %s: %q", u, k, got.Get(k))
			}
		}
	}
	h.waitEntry("dropped", func(e audit.Entry) bool {
		return strings.Contains(e.Reason, "dropped ") && strings.Contains(e.Reason, "X-Http-Method-Override")
	})
}
