package egress

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// reply is what an echo upstream answers, made from the Authorization
// header it received.
type reply struct {
	header  http.Header
	body    []byte
	chunked bool        // written in two flushed pieces, no Content-Length
	trailer http.Header // sent after the body
	status  int
	// pieces, if any, are the body instead, each flushed; after the first
	// the upstream waits for gate to close.
	pieces [][]byte
	gate   chan struct{}
	early  http.Header // sent first in a 103 Early Hints
	cut    bool        // the upstream goes away after half the body
}

// echoUp is a TLS upstream, over HTTP/2 and over HTTP/1.1 only, that
// answers each path with the reply its case makes of the credential the
// sidecar injected.
type echoUp struct {
	mu    sync.Mutex
	cases map[string]func(auth string) reply
	h2    *httptest.Server
	h1    *httptest.Server
}

func newEchoUp(t testing.TB, ca *CA) *echoUp {
	u := &echoUp{cases: map[string]func(string) reply{}}
	start := func(h2 bool) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
		s.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf(hi.ServerName) }}
		s.EnableHTTP2 = h2
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	u.h2, u.h1 = start(true), start(false)
	return u
}

func (u *echoUp) add(path string, f func(auth string) reply) {
	u.mu.Lock()
	u.cases[path] = f
	u.mu.Unlock()
}

func (u *echoUp) serve(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	f := u.cases[r.URL.Path]
	u.mu.Unlock()
	if f == nil {
		http.NotFound(w, r)
		return
	}
	rep := f(r.Header.Get("Authorization"))
	if rep.early != nil {
		for k, vs := range rep.early {
			w.Header()[k] = vs
		}
		w.WriteHeader(http.StatusEarlyHints)
		for k := range rep.early {
			w.Header().Del(k)
		}
	}
	for k, vs := range rep.header {
		w.Header()[k] = vs
	}
	for k := range rep.trailer {
		w.Header().Add("Trailer", k)
	}
	if !rep.chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(rep.body)))
	}
	if rep.status == 0 {
		rep.status = 200
	}
	w.WriteHeader(rep.status)
	if rep.pieces != nil {
		for i, p := range rep.pieces {
			w.Write(p)
			w.(http.Flusher).Flush()
			if i == 0 {
				<-rep.gate
			}
		}
		return
	}
	half := len(rep.body) / 2
	w.Write(rep.body[:half])
	if rep.chunked || rep.cut {
		w.(http.Flusher).Flush()
	}
	if rep.cut {
		panic(http.ErrAbortHandler)
	}
	w.Write(rep.body[half:])
	for k, vs := range rep.trailer {
		w.Header()[k] = vs
	}
}

// echoRoutes: the same upstream as a host the token goes to (over
// HTTP/2 and HTTP/1.1) and as a host it does not go to.
func echoRoutes(u *echoUp) string {
	return fmt.Sprintf(`
- host: echo.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
- host: echo1.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
- host: free.test
  ports: [%d]
`, tlsPort(u.h2), tlsPort(u.h1), tlsPort(u.h2))
}

// url is host's URL for path: echo1.test is the HTTP/1.1 upstream.
func (u *echoUp) url(host, path string) string {
	s := u.h2
	if host == "echo1.test" {
		s = u.h1
	}
	return fmt.Sprintf("https://%s:%d%s", host, tlsPort(s), path)
}

// roomyLog lifts the log's per-client budget for a test that makes
// hundreds of blocks on purpose and looks for each one's line: past the
// budget, blocks are thinned to one a second (see limit.go).
func roomyLog(c *Config) { c.LogBudget = LogBudget{Lines: 1 << 20, Bytes: 1 << 40} }

func tlsPort(s *httptest.Server) int { return s.Listener.Addr().(*net.TCPAddr).Port }

func newEchoHarness(t *testing.T) (*harness, *echoUp) {
	// The harness's own upstream CA signs the echo upstream too.
	var u *echoUp
	h := newHarness(t, defaultRoutes, roomyLog)
	u = newEchoUp(t, h.up.ca)
	h.writeRoutes(echoRoutes(u))
	h.waitRoutes("echo.test")
	return h, u
}

// waitRoutes waits until the sidecar has loaded routes naming host.
func (h *harness) waitRoutes(host string) {
	h.t.Helper()
	for i := 0; i < 200; i++ {
		for _, r := range h.srv.state.Load().table.Routes() {
			if r.Host == host {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("routes naming %s were not loaded", host)
}

// agent is a client as the agent's tools are: it asks for every coding
// curl --compressed asks for, and sees the bytes as they arrive.
func (h *harness) agent(h2 bool) *http.Client {
	c := h.client(h2)
	c.Transport.(*http.Transport).DisableCompression = true
	return c
}

// fetch asks through the sidecar, and records what the agent got for the
// leak check.
func (h *harness) fetch(c *http.Client, method, u string) (*http.Response, []byte, error) {
	h.t.Helper()
	req := mustReq(method, u, nil)
	req.Header.Set("Accept-Encoding", "deflate, gzip, br, zstd")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, string(got))
	for k, vs := range resp.Header {
		h.bodies = append(h.bodies, k+": "+strings.Join(vs, ", "))
	}
	for k, vs := range resp.Trailer {
		h.bodies = append(h.bodies, k+": "+strings.Join(vs, ", "))
	}
	h.mu.Unlock()
	return resp, got, err
}

// tokenBytes are the bytes of the token; filler holds none of them, so a
// single one in what the agent got (decoded) is a byte of the token.
var tokenBytes = func() [256]bool {
	var set [256]bool
	for i := 0; i < len(apiToken); i++ {
		set[apiToken[i]] = true
	}
	return set
}()

const fillerChars = "ghjmqsuvwxyzGHJMQSUVWXYZ \n"

func filler(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = fillerChars[r.IntN(len(fillerChars))]
	}
	return b
}

// views are what an agent can make of bytes it got: them, and whatever
// they decompress to (as far as they do).
func views(b []byte) [][]byte {
	out := [][]byte{b}
	open := []func(io.Reader) (io.Reader, error){
		func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) },
		func(r io.Reader) (io.Reader, error) { return flate.NewReader(r), nil },
	}
	for _, o := range open {
		if r, err := o(bytes.NewReader(b)); err == nil {
			d, _ := io.ReadAll(io.LimitReader(r, 64<<20))
			if len(d) > 0 {
				out = append(out, d)
			}
		}
	}
	return out
}

// noToken fails the test if what the agent got carries the token, or (in
// a 200's body, made of filler and the token) any byte of it. Only for
// bodies of filler and the token alone.
func (h *harness) noToken(t *testing.T, what string, resp *http.Response, got []byte) {
	t.Helper()
	if resp != nil {
		for k, vs := range resp.Header {
			if line := k + ": " + strings.Join(vs, ", "); strings.Contains(strings.ToLower(line), "real-api") {
				t.Errorf("%s: the agent got the token in a header: %q", what, line)
			}
		}
		for k, vs := range resp.Trailer {
			t.Errorf("%s: the agent got a trailer %s: %q", what, k, vs)
		}
	}
	for i, v := range views(got) {
		if hit, ok := h.det.Find(v); ok {
			t.Errorf("%s: the agent got the token (%s, view %d)", what, hit.Encoding, i)
		}
		if bytes.Contains(bytes.ToLower(v), []byte("real-api")) {
			t.Errorf("%s: the agent got the token's start (view %d)", what, i)
		}
		// A 200's body is filler around where the token was: the bytes
		// as they came (a decompressor makes any bytes of garbage).
		if resp != nil && resp.StatusCode == 200 && i == 0 {
			for j, c := range v {
				if tokenBytes[c] {
					t.Errorf("%s: byte %d of view %d is %q, a byte of the token", what, j, i, c)
					break
				}
			}
		}
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zl(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func rawDeflate(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// codings: how an upstream can hand back what it was sent.
var codings = []struct {
	name   string
	label  string // Content-Encoding
	encode func([]byte) []byte
	// decoded: the agent gets the content decoded (else the bytes as sent)
	decoded bool
	// want is what the agent gets of the content, if neither
	want func([]byte) []byte
	// refused: never passed on, token or not
	refused bool
	// opened: compressed data the answer does not declare
	opened bool
}{
	{name: "plain", encode: func(b []byte) []byte { return b }},
	{name: "upper-cased", encode: bytes.ToUpper},
	{name: "upper-cased gzip", label: "gzip", encode: func(b []byte) []byte { return gz(bytes.ToUpper(b)) }, want: bytes.ToUpper},
	{name: "gzip", label: "gzip", encode: gz, decoded: true},
	{name: "x-gzip", label: "x-gzip", encode: gz, decoded: true},
	{name: "deflate-zlib", label: "deflate", encode: zl, decoded: true},
	{name: "deflate-raw", label: "deflate", encode: rawDeflate, decoded: true},
	{name: "gzip-of-gzip", label: "gzip, gzip", encode: func(b []byte) []byte { return gz(gz(b)) }, decoded: true},
	{name: "GZIP-identity", label: "identity, GZIP", encode: gz, decoded: true},
	{name: "gzip-in-gzip-undeclared", label: "gzip", encode: func(b []byte) []byte { return gz(gz(b)) }, opened: true, want: gz},
	{name: "br-labelled", label: "br", encode: gz, refused: true},
	{name: "gzip-labelled-plain", label: "gzip", encode: func(b []byte) []byte { return b }, refused: true},
	{name: "zstd-labelled", label: "zstd", encode: zl, refused: true},
	{name: "gzip-x4", label: "gzip, gzip, gzip, gzip", encode: func(b []byte) []byte { return gz(gz(gz(gz(b)))) }, refused: true},
	{name: "identity-labelled-gzip", label: "identity", encode: gz, opened: true},
	{name: "unlabelled-gzip", encode: gz, opened: true},
	{name: "unlabelled-zlib", encode: zl, opened: true},
}

// TestResponseEchoCodings: an upstream that echoes the injected
// Authorization header into its body, in every coding an agent can ask
// for or an upstream can send unasked, at sizes around the guard's 32 KiB
// reads and the 1 MiB hold, over both HTTP versions on both legs, with a
// Content-Length and chunked: the agent never gets a byte of the token,
// and the log names the token. The same answers without the token pass,
// decoded where they were declared.
func TestResponseEchoCodings(t *testing.T) {
	h, u := newEchoHarness(t)
	legs := []struct {
		agentH2 bool
		host    string // echo.test is HTTP/2 upstream, echo1.test HTTP/1.1
		chunked bool
	}{{false, "echo1.test", false}, {true, "echo.test", true}, {false, "echo.test", true}, {true, "echo1.test", false}}
	pads := []int{10, 32<<10 - 20, 32<<10 - 1, 1<<20 - 1, 1 << 20, 1<<20 + 1}
	id := 0
	for _, cd := range codings {
		ps := pads
		if cd.name == "plain" || cd.name == "gzip" || cd.name == "unlabelled-gzip" {
			ps = append(ps, 20<<20)
		}
		for _, pad := range ps {
			for li, leg := range legs {
				if pad >= 1<<20 && (li%2 == 1 || !(cd.opened || cd.name == "plain" || cd.name == "gzip")) {
					continue // the large sizes once per HTTP version, where a limit is near
				}
				for _, clean := range []bool{false, true} {
					id++
					path := fmt.Sprintf("/c%d", id)
					what := fmt.Sprintf("%s pad=%d agentH2=%v %s chunked=%v clean=%v", cd.name, pad, leg.agentH2, leg.host, leg.chunked, clean)
					content := filler(pad+64, uint64(id))
					c := append([]byte(nil), content[:pad]...)
					if !clean {
						c = append(c, apiToken...) // "Bearer " is no part of it
					}
					c = append(c, content[pad:]...)
					coded := cd.encode(c)
					hd := http.Header{"Content-Type": {"application/octet-stream"}}
					if cd.label != "" {
						hd.Set("Content-Encoding", cd.label)
					}
					u.add(path, func(string) reply { return reply{header: hd, body: coded, chunked: leg.chunked} })
					resp, got, err := h.fetch(h.agent(leg.agentH2), "GET", u.url(leg.host, path))
					if clean {
						want := coded
						switch {
						case cd.decoded:
							want = content
						case cd.want != nil:
							want = cd.want(content)
						}
						checkClean(t, what, cd.refused, cd.opened, resp, got, err, want, coded, h.srv.cfg.MaxScanBody)
						continue
					}
					h.noToken(t, what, resp, got)
					e := h.waitEntry(what, func(e audit.Entry) bool { return e.Path == path })
					if e.Decision != audit.Block {
						t.Errorf("%s: logged %s %d %q, want block", what, e.Decision, e.Status, e.Reason)
					}
					undeclaredBig := cd.opened && len(coded) > int(h.srv.cfg.MaxScanBody)
					if !cd.refused && !undeclaredBig && e.Secret != "API" {
						t.Errorf("%s: logged secret %q, want API: %q", what, e.Secret, e.Reason)
					}
				}
			}
		}
	}
}

func checkClean(t *testing.T, what string, refused, opened bool, resp *http.Response, got []byte, err error, want, coded []byte, limit int64) {
	t.Helper()
	switch {
	case refused || (opened && int64(len(coded)) > limit):
		if err != nil || resp.StatusCode != 502 {
			t.Errorf("%s: %v %v, want a 502", what, status(resp), err)
		}
	case err != nil || resp.StatusCode != 200:
		t.Errorf("%s: %v %v %.200q, want a 200", what, status(resp), err, got)
	case !bytes.Equal(got, want):
		t.Errorf("%s: got %d bytes, want %d", what, len(got), len(want))
	case !bytes.Equal(want, coded) && resp.Header.Get("Content-Encoding") != "":
		t.Errorf("%s: passed decoded, but says Content-Encoding %q", what, resp.Header.Get("Content-Encoding"))
	}
}

func status(r *http.Response) string {
	if r == nil {
		return "no response"
	}
	return r.Status
}

// TestUndeclaredCompressedLimit: compressed data an answer from a token's
// host does not declare is opened up to MaxScanBody bytes exactly, and
// refused beyond, with the token or without.
func TestUndeclaredCompressedLimit(t *testing.T) {
	h, u := newEchoHarness(t)
	limit := int(h.srv.cfg.MaxScanBody)
	// Incompressible filler: the coded size follows the padding.
	noise := func(n int) []byte {
		r := rand.New(rand.NewPCG(1, 2))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	}
	const auth = "Bearer " + apiToken
	// sized is gzip of exactly size bytes: its extra field makes up the
	// difference.
	sized := func(size int, token bool) []byte {
		// The token among letters, so it is compressed, not stored.
		tail := filler(16<<10, 3)
		if token {
			tail = append(tail, auth...)
			tail = append(tail, filler(16<<10, 4)...)
		}
		content := append(noise(size-16<<10), tail...)
		for len(gz(content)) > size-10 {
			content = content[len(gz(content))-(size-10):]
		}
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Extra = bytes.Repeat([]byte("c"), size-len(gz(content))-2)
		w.Write(content)
		w.Close()
		if buf.Len() != size {
			t.Fatalf("gzip of %d bytes, want %d", buf.Len(), size)
		}
		return buf.Bytes()
	}
	for _, size := range []int{limit - 1, limit, limit + 1, 10 * limit} {
		for _, token := range []bool{true, false} {
			coded := sized(size, token)
			if bytes.Contains(coded, []byte(apiToken[:8])) {
				t.Fatalf("size=%d: the token is stored raw in the gzip: no test of opening it", size)
			}
			path := fmt.Sprintf("/limit-%d-%v", size, token)
			u.add(path, func(string) reply { return reply{body: coded} })
			for _, h2 := range []bool{false, true} {
				what := fmt.Sprintf("size=%d token=%v h2=%v", size, token, h2)
				resp, got, err := h.fetch(h.agent(h2), "GET", u.url("echo.test", path))
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				want := 200
				if token || size > limit {
					want = 502
				}
				if resp.StatusCode != want {
					t.Errorf("%s: %d %.100q, want %d", what, resp.StatusCode, got, want)
				}
				if want == 200 && !bytes.Equal(got, coded) {
					t.Errorf("%s: the gzip file was changed on its way", what)
				}
				h.noToken(t, what, nil, got)
			}
			// A host no token goes to: passed as it is, whatever it holds.
			if size == 10*limit && !token {
				resp, got, err := h.fetch(h.agent(false), "GET", u.url("free.test", path))
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, coded) {
					t.Errorf("free.test size=%d: %v %v %d/%d", size, status(resp), err, len(got), len(coded))
					for _, e := range h.entries() {
						if e.Host == "free.test" {
							t.Logf("%+v", e)
						}
					}
				}
			}
		}
	}
}

// TestUndeclaredOversizedNotCompressed: an answer over MaxScanBody from a
// token's host that only starts like zlib (text) is passed as it is, since
// a decoder stops within what the guard has seen; gzip over the limit is
// refused, followed by text or not, naming the token if it decoded there.
func TestUndeclaredOversizedNotCompressed(t *testing.T) {
	h, u := newEchoHarness(t)
	big := filler(3<<20, 11)
	zlibText := append([]byte("8O items\n"), big...)
	if sniffCompressed(zlibText) == "" {
		t.Fatal("the text does not start like zlib")
	}
	cases := []struct {
		name string
		body []byte
		want int
	}{
		{"text that starts like zlib", zlibText, 200},
		{"gzip then text", append(gz([]byte("hello\n")), big...), 502},
		{"gzip of the token then text", append(gz([]byte("Bearer "+apiToken)), big...), 502},
		{"gzip truncated past the hold", gz(append(bytes.Clone(big), apiToken...)), 502},
		// Go's reader refuses a name over 512 bytes; gunzip reads it.
		{"small gzip with a long name", gzipNamed(strings.Repeat("n", 600), []byte(apiToken)), 502},
		{"small gzip, then a member with a long name", append(gz([]byte("hi\n")), gzipNamed(strings.Repeat("n", 600), []byte(apiToken))...), 502},
	}
	for _, tc := range cases {
		path := "/over-" + strings.ReplaceAll(tc.name, " ", "-")
		u.add(path, func(string) reply { return reply{body: tc.body} })
		for _, h2 := range []bool{false, true} {
			resp, got, err := h.fetch(h.agent(h2), "GET", u.url("echo.test", path))
			if err != nil || resp.StatusCode != tc.want {
				t.Errorf("%s h2=%v: %v %v %.100q, want %d", tc.name, h2, status(resp), err, got, tc.want)
				continue
			}
			if tc.want == 200 && !bytes.Equal(got, tc.body) {
				t.Errorf("%s h2=%v: the body was changed on its way", tc.name, h2)
			}
			h.noToken(t, tc.name, nil, got)
		}
	}
}

// TestResponseEchoHeaders: the token echoed as a header's name, in its
// value, as a trailer, a redirect, a cookie, on HEAD and 304, never
// reaches the agent; the log says what was done and names the token only.
func TestResponseEchoHeaders(t *testing.T) {
	h, u := newEchoHarness(t)
	tokenName := func(auth string) string { return strings.TrimPrefix(auth, "Bearer ") }
	cases := map[string]func(auth string) reply{
		"/name": func(a string) reply {
			return reply{header: http.Header{tokenName(a): {"x"}, "X-Fine": {"y"}}, body: []byte("yy")}
		},
		"/value": func(a string) reply {
			return reply{header: http.Header{"X-Echo": {a}, "X-Fine": {"y"}}, body: []byte("yy")}
		},
		"/value-upper": func(a string) reply {
			return reply{header: http.Header{"X-Echo": {strings.ToUpper(a)}}, body: []byte("yy")}
		},
		"/location": func(a string) reply {
			return reply{status: 302, header: http.Header{"Location": {"https://other.test/?t=" + tokenName(a)}}, body: []byte("yy")}
		},
		"/cookie": func(a string) reply {
			return reply{header: http.Header{"Set-Cookie": {"s=" + tokenName(a) + "; Secure"}}, body: []byte("yy")}
		},
		"/trailer": func(a string) reply {
			return reply{body: []byte("yy"), chunked: true, trailer: http.Header{"X-Echo": {a}}}
		},
		"/trailer-name": func(a string) reply {
			return reply{body: []byte("yy"), chunked: true, trailer: http.Header{tokenName(a): {"x"}}}
		},
		"/early": func(a string) reply {
			return reply{early: http.Header{"Link": {"</" + tokenName(a) + ">; rel=preload"}, tokenName(a): {"x"}}, body: []byte("yy")}
		},
		"/head-gzip": func(a string) reply {
			return reply{header: http.Header{"Content-Encoding": {"gzip"}}, body: gz([]byte(a))}
		},
		"/not-modified": func(a string) reply {
			return reply{status: 304, header: http.Header{"Etag": {`"` + tokenName(a) + `"`}, "Content-Encoding": {"br"}}}
		},
	}
	for p, f := range cases {
		u.add(p, f)
	}
	for _, host := range []string{"echo.test", "echo1.test"} {
		for _, h2 := range []bool{false, true} {
			for p := range cases {
				method := "GET"
				if p == "/head-gzip" {
					method = "HEAD"
				}
				what := fmt.Sprintf("%s %s%s agentH2=%v", method, host, p, h2)
				resp, got, err := h.fetch(h.agent(h2), method, u.url(host, p))
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				h.noToken(t, what, resp, got)
				if resp.Header.Get("X-Fine") == "" && (p == "/name" || p == "/value") {
					t.Errorf("%s: the clean header was lost", what)
				}
				if p == "/early" {
					// The Go client hides 1xx answers: look for them.
					var got1xx []string
					req := mustReq("GET", u.url(host, p), nil)
					req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
						Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
							got1xx = append(got1xx, fmt.Sprint(code, h))
							return nil
						}}))
					if resp, err := h.agent(h2).Do(req); err == nil {
						resp.Body.Close()
					}
					if len(got1xx) > 0 {
						t.Errorf("%s: the agent got 1xx answers: %q", what, got1xx)
					}
				}
				if p == "/head-gzip" && resp.Header.Get("Content-Encoding") != "" {
					t.Errorf("%s: a HEAD says Content-Encoding %q, but a GET is passed decoded", what, resp.Header.Get("Content-Encoding"))
				}
			}
		}
	}
	for _, want := range []string{"a header whose name carries API (dropped)", "X-Echo (carries API)", "Location (carries API; dropped)", "Set-Cookie (carries API)", "trailers not passed on"} {
		h.waitEntry(want, func(e audit.Entry) bool { return strings.Contains(e.Reason, want) })
	}
}

// rawUp is an HTTP/1.1 upstream over TLS that answers every request with
// a script, the credential it received in place of {AUTH} and {TOKEN}:
// for what a well-behaved server library cannot send.
func rawUp(t *testing.T, ca *CA, script func(path string) string) int {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf("raw.test") }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					auth := req.Header.Get("Authorization")
					out := strings.NewReplacer("{AUTH}", auth, "{TOKEN}", strings.TrimPrefix(auth, "Bearer ")).Replace(script(req.URL.Path))
					if strings.HasPrefix(out, "GZ:") { // the rest after a blank line, gzipped
						head, body, _ := strings.Cut(out[3:], "\r\n\r\n")
						z := gz([]byte(body))
						out = head + "\r\nContent-Length: " + strconv.Itoa(len(z)) + "\r\n\r\n" + string(z)
					}
					if strings.HasPrefix(out, "CUT:") { // gzip of the rest, half of it, then the connection closes
						z := gz([]byte(out[4:]))
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", len(z))
						c.Write(z[:len(z)-12])
						return
					}
					io.WriteString(c, out)
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestResponseEchoRaw: what only a raw upstream sends — the token as a
// header name in its own case, in the status line's reason, in chunked
// trailers, in an Early Hints answer, in a malformed status or header
// line (the transport's error quotes it), a coded transfer, an answer cut
// mid-token — never reaches the agent, nor the log.
func TestResponseEchoRaw(t *testing.T) {
	h := newHarness(t, defaultRoutes)
	scripts := map[string]string{
		"/name":       "HTTP/1.1 200 OK\r\n{TOKEN}: x\r\nX-Fine: y\r\nContent-Length: 2\r\n\r\nyy",
		"/name-upper": "HTTP/1.1 200 OK\r\nREAL-API-TOKEN-0123456789ABCDEF: x\r\nContent-Length: 2\r\n\r\nyy",
		"/reason":     "HTTP/1.1 200 {AUTH}\r\nContent-Length: 2\r\n\r\nyy",
		"/trailer":    "HTTP/1.1 200 OK\r\nTrailer: X-Echo\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nyy\r\n0\r\nX-Echo: {AUTH}\r\n{TOKEN}: x\r\n\r\n",
		"/early":      "HTTP/1.1 103 Early Hints\r\nLink: </{TOKEN}>; rel=preload\r\n{TOKEN}: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nyy",
		"/badstatus":  "HTTP/1.1 {TOKEN} OK\r\nContent-Length: 2\r\n\r\nyy",
		"/badheader":  "HTTP/1.1 200 OK\r\n{AUTH}\r\nContent-Length: 2\r\n\r\nyy",
		"/te-gzip":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\n{TOKEN}\r\n0\r\n\r\n",
		"/gzip":       "GZ:HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nyou sent {AUTH}",
		"/cut":        "CUT:" + strings.Repeat("x", 100) + "{AUTH}",
	}
	port := rawUp(t, h.up.ca, func(p string) string { return scripts[p] })
	h.writeRoutes(defaultRoutes + fmt.Sprintf(`
- host: raw.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`, port))
	h.waitRoutes("raw.test")
	for _, h2 := range []bool{false, true} {
		for p := range scripts {
			what := fmt.Sprintf("%s agentH2=%v", p, h2)
			resp, got, err := h.fetch(h.agent(h2), "GET", fmt.Sprintf("https://raw.test:%d%s", port, p))
			if err != nil && p != "/cut" {
				t.Fatalf("%s: %v", what, err)
			}
			h.noToken(t, what, resp, got)
			if resp != nil && strings.Contains(strings.ToLower(resp.Status), "real-api") {
				t.Errorf("%s: the status line carries the token: %q", what, resp.Status)
			}
		}
	}
	h.waitEntry("header name dropped", func(e audit.Entry) bool {
		return e.Path == "/name-upper" && strings.Contains(e.Reason, "a header whose name carries API (dropped)")
	})
	h.waitEntry("gzip echo blocked", func(e audit.Entry) bool {
		return e.Path == "/gzip" && e.Decision == audit.Block && e.Secret == "API" && e.Encoding == "gzip/raw"
	})
}

// gzipPieces gzips events, flushing after each: the pieces a streaming
// server sends.
func gzipPieces(events ...string) [][]byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	var out [][]byte
	for i, e := range events {
		w.Write([]byte(e))
		if i == len(events)-1 {
			w.Close()
		} else {
			w.Flush()
		}
		out = append(out, bytes.Clone(buf.Bytes()))
		buf.Reset()
	}
	return out
}

// TestResponseCodedStreamsAndEmpties: a gzip event stream is passed
// decoded as it comes (the first event before the upstream sends the
// next), and cut before a token that comes later; an empty body labelled
// gzip is an empty answer, not a refusal.
func TestResponseCodedStreamsAndEmpties(t *testing.T) {
	h, u := newEchoHarness(t)
	for _, h2 := range []bool{false, true} {
		for _, token := range []bool{false, true} {
			gate := make(chan struct{})
			last := "data: bye\n\n"
			if token {
				last = "data: " + apiToken + "\n\n"
			}
			path := fmt.Sprintf("/stream-%v-%v", h2, token)
			u.add(path, func(string) reply {
				return reply{chunked: true, gate: gate, pieces: gzipPieces("data: hello\n\n", last),
					header: http.Header{"Content-Type": {"text/event-stream"}, "Content-Encoding": {"gzip"}}}
			})
			req := mustReq("GET", u.url("echo.test", path), nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := h.agent(h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, len("data: hello\n\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: hello\n\n" {
				t.Errorf("h2=%v token=%v: the first event: %q %v", h2, token, first, err)
			}
			close(gate)
			rest, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			h.noToken(t, path, nil, append(first, rest...))
			switch {
			case token && err == nil:
				t.Errorf("h2=%v: a stream carrying the token was not cut: %q", h2, rest)
			case !token && (err != nil || string(rest) != "data: bye\n\n"):
				t.Errorf("h2=%v: the rest of a clean stream: %q %v", h2, rest, err)
			}
		}
		for _, chunked := range []bool{false, true} {
			for _, label := range []string{"gzip", "deflate", "gzip, deflate"} {
				path := fmt.Sprintf("/empty-%v-%v-%s", h2, chunked, label)
				u.add(path, func(string) reply {
					return reply{chunked: chunked, header: http.Header{"Content-Encoding": {label}}}
				})
				resp, got, err := h.fetch(h.agent(h2), "GET", u.url("echo1.test", path))
				if err != nil || resp.StatusCode != 200 || len(got) != 0 {
					t.Errorf("%s: %v %v %q, want an empty 200", path, status(resp), err, got)
				}
			}
		}
	}
}

func zipOf(t *testing.T, method uint16, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		if method != zip.Deflate && method != zip.Store {
			w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: method, CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return buf.Bytes()
}

// TestZipFromTokenHost: a zip archive from a host a token goes to has its
// files opened and scanned: the token deflated in one is not passed on,
// nor a file the sidecar cannot open; a clean archive passes untouched,
// and an archive from elsewhere is not opened.
func TestZipFromTokenHost(t *testing.T) {
	h, u := newEchoHarness(t)
	text := filler(64<<10, 9)
	withToken := append(append(bytes.Clone(text[:1000]), apiToken...), text[1000:]...)
	cases := []struct {
		name string
		zip  []byte
		want int
	}{
		{"clean", zipOf(t, zip.Deflate, map[string][]byte{"a.txt": text, "b.txt": text[:10]}), 200},
		{"token deflated", zipOf(t, zip.Deflate, map[string][]byte{"a.txt": text, "log.txt": withToken}), 502},
		{"unknown method", zipOf(t, 99, map[string][]byte{"a.bin": text}), 502},
	}
	for _, tc := range cases {
		if bytes.Contains(tc.zip, []byte(apiToken[:8])) {
			t.Fatalf("%s: the token is stored raw", tc.name)
		}
		path := "/zip-" + strings.ReplaceAll(tc.name, " ", "-")
		u.add(path, func(string) reply {
			return reply{body: tc.zip, header: http.Header{"Content-Type": {"application/zip"}}}
		})
		for _, h2 := range []bool{false, true} {
			resp, got, err := h.fetch(h.agent(h2), "GET", u.url("echo.test", path))
			if err != nil || resp.StatusCode != tc.want {
				t.Errorf("%s h2=%v: %v %v %.100q, want %d", tc.name, h2, status(resp), err, got, tc.want)
				continue
			}
			if tc.want == 200 && !bytes.Equal(got, tc.zip) {
				t.Errorf("%s: the archive was changed on its way", tc.name)
			}
		}
		resp, got, err := h.fetch(h.agent(false), "GET", u.url("free.test", path))
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, tc.zip) {
			t.Errorf("%s from free.test: %v %v", tc.name, status(resp), err)
		}
	}
	h.waitEntry("zip block", func(e audit.Entry) bool {
		return e.Path == "/zip-token-deflated" && e.Decision == audit.Block && e.Secret == "API" && strings.HasPrefix(e.Encoding, "zip/")
	})
}

// TestGitGateCodedAnswer: the git gate's own requests ask for no coding;
// an answer coded anyway, which would hide an echoed token from the
// guard, is refused.
func TestGitGateCodedAnswer(t *testing.T) {
	h, u := newEchoHarness(t)
	h.writeRoutes(echoRoutes(u) + fmt.Sprintf(`
- host: forge.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
  git: {repos: [o/r], push: ["refs/heads/agent/*"]}
`, tlsPort(u.h2)))
	h.waitRoutes("forge.test")
	u.add("/o/r.git/info/refs", func(auth string) reply {
		return reply{header: http.Header{"Content-Encoding": {"gzip"}, "Content-Type": {"text/plain"}}, body: gz([]byte("you sent " + auth))}
	})
	for _, h2 := range []bool{false, true} {
		resp, got, err := h.fetch(h.agent(h2), "GET", u.url("forge.test", "/o/r.git/info/refs?service=git-receive-pack"))
		if err != nil || resp.StatusCode != 502 {
			t.Errorf("h2=%v: %v %v %.100q, want a 502", h2, status(resp), err, got)
		}
		h.noToken(t, "git gate", resp, got)
	}
}

// BenchmarkDownloadGuarded times an 8 MiB answer from a host a token goes
// to, as it is and gzip-coded (decoded by the sidecar), through the
// response guard.
func BenchmarkDownloadGuarded(b *testing.B) {
	for _, coding := range []string{"identity", "gzip"} {
		b.Run(coding, func(b *testing.B) {
			h := newHarness(b, defaultRoutes)
			u := newEchoUp(b, h.up.ca)
			h.writeRoutes(echoRoutes(u))
			h.waitRoutes("echo.test")
			content := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. 0123456789\n"), (8<<20)/56)
			rep := reply{body: content}
			if coding == "gzip" {
				rep = reply{body: gz(content), header: http.Header{"Content-Encoding": {"gzip"}}}
			}
			u.add("/big", func(string) reply { return rep })
			c := h.agent(false)
			b.SetBytes(int64(len(content)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := c.Get(u.url("echo.test", "/big"))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(content)) {
					b.Fatalf("%d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}

func gzipNamed(name string, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Name = name
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestRangeOfAnEcho: a file an upstream made of the token, asked for a
// few bytes at a time, would hand it out in pieces: to a host a token goes
// to, the sidecar asks for no range, so the whole file meets the guard.
// Elsewhere a range is a range.
func TestRangeOfAnEcho(t *testing.T) {
	h := newHarness(t, defaultRoutes)
	content := append(append(filler(1000, 5), apiToken...), filler(1000, 6)...)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f.txt", time.Time{}, bytes.NewReader(content))
	}))
	srv.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return h.up.ca.Leaf(hi.ServerName) }}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := tlsPort(srv)
	h.writeRoutes(defaultRoutes + fmt.Sprintf(`
- host: files.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
- host: plainfiles.test
  ports: [%d]
`, port, port))
	h.waitRoutes("files.test")
	for _, h2 := range []bool{false, true} {
		var pieces []byte
		for off := 1000; off < 1000+len(apiToken); off += 6 {
			req := mustReq("GET", fmt.Sprintf("https://files.test:%d/f.txt", port), nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+5))
			st, body, _ := h.do(h.agent(h2), req)
			if st == 206 {
				pieces = append(pieces, body...)
			}
			if st != 502 {
				t.Errorf("h2=%v range %d: %d, want the whole file asked for and refused", h2, off, st)
			}
		}
		if bytes.Contains(pieces, []byte(apiToken[:12])) {
			t.Errorf("h2=%v: the token came back in ranges: %q", h2, pieces)
		}
		req := mustReq("GET", fmt.Sprintf("https://plainfiles.test:%d/f.txt", port), nil)
		req.Header.Set("Range", "bytes=0-5")
		if st, body, _ := h.do(h.agent(h2), req); st != 206 || body != string(content[:6]) {
			t.Errorf("h2=%v: a range from a host no token goes to: %d %q", h2, st, body)
		}
	}
}

// TestCodedBombStreams: an answer coded to expand a thousandfold is
// decoded as the agent reads it, in bounded memory, from a token's host
// (declared) or not; undeclared on a token's host it is refused once it
// decodes past MaxDecompressed.
func TestCodedBombStreams(t *testing.T) {
	h, u := newEchoHarness(t)
	const size = 128 << 20
	bomb := gz(make([]byte, size))
	u.add("/bomb", func(string) reply {
		return reply{body: bomb, header: http.Header{"Content-Encoding": {"gzip"}}}
	})
	u.add("/bomb-file", func(string) reply { return reply{body: bomb} })
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	resp, err := h.agent(false).Get(u.url("echo.test", "/bomb"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || resp.StatusCode != 200 {
		t.Errorf("the bomb: %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	st, _ := h.get(h.agent(false), u.url("echo.test", "/bomb-file"))
	close(done)
	if st != 502 {
		t.Errorf("the bomb as a file from a token's host: %d, want 502", st)
	}
	if grew := int64(peak.Load()) - int64(base); grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB decoding a %d KiB bomb", grew>>20, len(bomb)>>10)
	}
	t.Logf("heap grew by at most %d KiB for %d MiB out of %d KiB", (int64(peak.Load())-int64(base))>>10, size>>20, len(bomb)>>10)
}

// TestDecodedAnswerCutIsCut: an upstream that goes away in the middle of
// a coded answer leaves the agent with a cut stream, not a shorter answer
// that looks whole (a decoded answer has no length to fall short of).
func TestDecodedAnswerCutIsCut(t *testing.T) {
	h, u := newEchoHarness(t)
	content := filler(256<<10, 21)
	for _, chunked := range []bool{false, true} {
		path := fmt.Sprintf("/cut-%v", chunked)
		u.add(path, func(string) reply {
			return reply{body: gz(content), chunked: chunked, cut: true, header: http.Header{"Content-Encoding": {"gzip"}}}
		})
		for _, h2 := range []bool{false, true} {
			for _, host := range []string{"echo.test", "echo1.test"} {
				resp, got, err := h.fetch(h.agent(h2), "GET", u.url(host, path))
				if err == nil {
					t.Errorf("%s%s h2=%v: %v, %d of %d bytes and no error", host, path, h2, status(resp), len(got), len(content))
				}
			}
		}
	}
}
