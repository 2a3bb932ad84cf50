package egress

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// escapes writes every byte of s as an escape of one kind, or wraps it.
func escapeForms(tok string) map[string]string {
	all := func(f string) string {
		var b strings.Builder
		for i := 0; i < len(tok); i++ {
			fmt.Fprintf(&b, f, tok[i])
		}
		return b.String()
	}
	return map[string]string{
		"html one":  tok[:6] + fmt.Sprintf("&#%d;", tok[6]) + tok[7:],
		"html all":  all("&#%d;"),
		"hex ent":   all("&#x%x;"),
		"json one":  tok[:6] + fmt.Sprintf("\\u%04x", tok[6]) + tok[7:],
		"json all":  all("\\u%04X"),
		"pct all":   all("%%%02x"),
		"pct twice": strings.ReplaceAll(all("%%%02x"), "%", "%25"),
		"qp":        all("=%02X"),
		"wrapped":   tok[:10] + "\n" + tok[10:20] + "\r\n" + tok[20:],
		"json wrap": tok[:10] + "\\n" + tok[10:],
		"xml wrap":  tok[:10] + "&#10;" + tok[10:],
		"qp soft":   tok[:10] + "=\r\n" + tok[10:],
		"entity":    strings.ReplaceAll(tok, "-", "&#45;"),
	}
}

// TestAttackRespEscapedEcho: an upstream that hands back the injected
// token escaped or wrapped (HTML, JSON, percent, quoted-printable, line
// breaks), in a small answer, a large one (the token past the first 32
// KiB, which is streamed) and a chunked one, over HTTP/2 and HTTP/1.1,
// gives the agent no byte of it.
func TestAttackRespEscapedEcho(t *testing.T) {
	h, u := newEchoHarness(t)
	n := 0
	for name := range escapeForms(apiToken) {
		for _, size := range []int{0, 32<<10 - 5, 32 << 10, 100 << 10} {
			for _, chunked := range []bool{false, true} {
				path := fmt.Sprintf("/esc%d", n)
				n++
				pre := filler(size, uint64(n))
				u.add(path, func(auth string) reply {
					body := append(bytes.Clone(pre), escapeForms(strings.TrimPrefix(auth, "Bearer "))[name]...)
					body = append(body, filler(64, 1)...)
					return reply{body: body, chunked: chunked, header: http.Header{"Content-Type": {"text/html"}}}
				})
				for _, host := range []string{"echo.test", "echo1.test"} {
					for _, h2 := range []bool{true, false} {
						what := fmt.Sprintf("%s size %d chunked %v %s h2 %v", name, size, chunked, host, h2)
						resp, got, err := h.fetch(h.agent(h2), "GET", u.url(host, path))
						if err == nil && resp.StatusCode == 200 {
							t.Errorf("%s: passed whole (%d bytes)", what, len(got))
						}
						if hit, ok := h.det.Search(got); ok {
							t.Errorf("%s: the agent got the token (%s)", what, hit.Encoding)
						}
						if err == nil && resp.StatusCode == 200 && len(got) > len(pre) {
							t.Errorf("%s: the agent got %d bytes past the %d before the token", what, len(got), len(pre))
						}
					}
				}
			}
		}
	}
}

// sseUp is an upstream of server-sent events over HTTP/2 and HTTP/1.1
// that sends each event only once the test opens its gate.
func sseUp(t *testing.T, h *harness, events []string, gates []chan struct{}) (h2, h1 *httptest.Server) {
	serve := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i, ev := range events {
			if i > 0 {
				select {
				case <-gates[i-1]:
				case <-r.Context().Done():
					return
				}
			}
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
	start := func(two bool) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(serve))
		s.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return h.up.ca.Leaf(hi.ServerName) }}
		s.EnableHTTP2 = two
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	return start(true), start(false)
}

// TestAttackRespEventsNotHeld: server-sent events through the guard of a
// bottle that injects reach the agent each before the upstream sends the
// next, also when they end in escapes, over both HTTP versions.
func TestAttackRespEventsNotHeld(t *testing.T) {
	events := []string{
		"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
		"data: {\"delta\":{\"text\":\"line\\n\"}}\n\n",
		"data: {\"delta\":{\"text\":\"caf\\u00e9 \\\"q\\\"\"}}\n\n",
		"data: a &amp; b&#10;\n\n",
		"data: {\"t\":\"100%25 done\"}\n\n",
		"data: [DONE]\n\n",
	}
	h := newHarness(t, defaultRoutes, roomyLog)
	var servers [2]*httptest.Server
	var gates [2][]chan struct{}
	for k := range 2 {
		gates[k] = make([]chan struct{}, len(events))
		for i := range gates[k] {
			gates[k][i] = make(chan struct{})
		}
		s2, s1 := sseUp(t, h, events, gates[k])
		servers[k] = []*httptest.Server{s2, s1}[k]
	}
	h.writeRoutes(fmt.Sprintf(`
- host: sse.test
  ports: [%d, %d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`, tlsPort(servers[0]), tlsPort(servers[1])))
	h.waitRoutes("sse.test")
	for k, h2 := range []bool{true, false} {
		req := mustReq("GET", fmt.Sprintf("https://sse.test:%d/v1/messages", tlsPort(servers[k])), nil)
		resp, err := h.agent(h2).Do(req)
		if err != nil {
			t.Fatal(err, h.dump())
		}
		for i, ev := range events {
			buf := make([]byte, len(ev))
			done := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, buf); done <- err }()
			select {
			case err := <-done:
				if err != nil || string(buf) != ev {
					t.Fatalf("h2 %v event %d: %q %v", h2, i, buf, err)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("h2 %v: event %d %q not received before the next was sent", h2, i, ev)
			}
			close(gates[k][i])
		}
		resp.Body.Close()
	}
}

// TestAttackRespRangeOfToken: the agent asks a host the token goes to for
// a piece of what it stored (Range, Request-Range, If-Range, or a server
// that answers 206 to a query); no piece reaches it.
func TestAttackRespRangeOfToken(t *testing.T) {
	h := newHarness(t, defaultRoutes, roomyLog)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if r.Header.Get("Range") == "" && r.Header.Get("Request-Range") == "" && r.URL.Query().Get("part") == "" {
			io.WriteString(w, "stored")
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 5-12/%d", len(tok)))
		w.WriteHeader(http.StatusPartialContent)
		io.WriteString(w, tok[5:13])
	}))
	srv.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return h.up.ca.Leaf(hi.ServerName) }}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h.writeRoutes(fmt.Sprintf(`
- host: store.test
  ports: [%d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`, tlsPort(srv)))
	h.waitRoutes("store.test")
	for _, h2 := range []bool{true, false} {
		for _, hdr := range []string{"Range", "Request-Range", "If-Range", ""} {
			q := ""
			if hdr == "" {
				q = "?part=5-12"
			}
			req := mustReq("GET", fmt.Sprintf("https://store.test:%d/file%s", tlsPort(srv), q), nil)
			if hdr != "" {
				req.Header.Set(hdr, "bytes=5-12")
			}
			_, body, _ := h.do(h.agent(h2), req)
			if strings.Contains(body, apiToken[5:13]) {
				t.Errorf("h2 %v %q: the agent got bytes 5-12 of the token: %q", h2, hdr, body)
			}
		}
	}
}

// TestAttackRespHeadersEscaped: the token escaped in a response header's
// value (a redirect's Location, a cookie, a Link) or name, for GET and
// HEAD, over both HTTP versions, and in a redirect the agent follows.
func TestAttackRespHeadersEscaped(t *testing.T) {
	h, u := newEchoHarness(t)
	n := 0
	for name := range escapeForms(apiToken) {
		for _, hdr := range []string{"Location", "Set-Cookie", "Link", "X-Debug", "name"} {
			path := fmt.Sprintf("/hdr%d", n)
			n++
			u.add(path, func(auth string) reply {
				v := "https://elsewhere.test/?k=" + escapeForms(strings.TrimPrefix(auth, "Bearer "))[name]
				if hdr == "name" { // a header name may hold % and &, not \\ nor ;
					return reply{status: 302, header: http.Header{"X-" + escapeForms(strings.TrimPrefix(auth, "Bearer "))["pct all"]: {"1"}}, body: []byte("moved")}
				}
				return reply{status: 302, header: http.Header{hdr: {v}}, body: []byte("moved")}
			})
			for _, method := range []string{"GET", "HEAD"} {
				for _, h2 := range []bool{true, false} {
					resp, got, err := h.fetch(h.agent(h2), method, u.url("echo.test", path))
					if err != nil {
						t.Fatalf("%s %s: %v", name, hdr, err)
					}
					for k, vs := range resp.Header {
						if hit, ok := h.det.Search([]byte(k + ": " + strings.Join(vs, ", "))); ok {
							t.Errorf("%s in %s, %s h2 %v: the agent got the token (%s) in %s", name, hdr, method, h2, hit.Encoding, k)
						}
					}
					if hit, ok := h.det.Search(got); ok {
						t.Errorf("%s in %s, %s h2 %v: the token in the body (%s)", name, hdr, method, h2, hit.Encoding)
					}
				}
			}
		}
	}
}

// TestAttackRespCutMidToken: an upstream that goes away in the middle of
// the echoed token (raw or escaped), in a small answer and past the first
// 32 KiB, gives the agent no byte of the token's start.
func TestAttackRespCutMidToken(t *testing.T) {
	h, u := newEchoHarness(t)
	n := 0
	for _, name := range []string{"raw", "html all", "json one", "wrapped"} {
		for _, size := range []int{100, 40 << 10} {
			for _, chunked := range []bool{false, true} {
				path := fmt.Sprintf("/cut%d", n)
				n++
				pre := filler(size, uint64(n))
				u.add(path, func(auth string) reply {
					tok := strings.TrimPrefix(auth, "Bearer ")
					form := tok
					if name != "raw" {
						form = escapeForms(tok)[name]
					}
					// The upstream cuts after half the body: in the token's middle.
					body := append(bytes.Clone(pre), form...)
					body = append(body, bytes.Repeat([]byte("z"), len(body)-2*len(pre)-len(form)/2+len(form))...)
					return reply{body: body, chunked: chunked, cut: true}
				})
				for _, h2 := range []bool{true, false} {
					host := "echo.test"
					if !h2 {
						host = "echo1.test"
					}
					_, got, _ := h.fetch(h.agent(h2), "GET", u.url(host, path))
					if len(got) > len(pre) && bytes.HasPrefix(got, pre) {
						t.Errorf("%s size %d chunked %v h2 %v: the agent got %q after the filler", name, size, chunked, h2, got[len(pre):])
					}
				}
			}
		}
	}
}

// TestAttackRespEndsInTokenStart: an answer that ends, cleanly, in the
// first half of the token (an API that cuts what it echoes at a length
// the agent chose) hands the agent that half.
func TestAttackRespEndsInTokenStart(t *testing.T) {
	t.Skip("open: an answer that ends in (or holds, before other bytes) a piece of a token is passed: the guard finds whole tokens only")
}

// TestAttackRespShutdownMidStream: the sidecar stopped while guarded
// event streams that never end are open (over both HTTP versions): it
// stops by its drain time, and each stream has its line in the log,
// saying it was cut.
func TestAttackRespShutdownMidStream(t *testing.T) {
	events := []string{"data: {\"a\":1}\n\n", "data: never\n\n"}
	h := newHarness(t, defaultRoutes, roomyLog, func(c *Config) { c.DrainTimeout = 2 * time.Second })
	var gates [2][]chan struct{}
	var servers [2]*httptest.Server
	for k := range 2 {
		gates[k] = []chan struct{}{make(chan struct{}), make(chan struct{})}
		s2, s1 := sseUp(t, h, events, gates[k])
		servers[k] = []*httptest.Server{s2, s1}[k]
	}
	h.writeRoutes(fmt.Sprintf(`
- host: sse.test
  ports: [%d, %d]
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`, tlsPort(servers[0]), tlsPort(servers[1])))
	h.waitRoutes("sse.test")
	var bodies []io.ReadCloser
	for k, h2 := range []bool{true, false} {
		resp, err := h.agent(h2).Do(mustReq("GET", fmt.Sprintf("https://sse.test:%d/stream%d", tlsPort(servers[k]), k), nil))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(events[0]))
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stopping took %v with streams open", d)
	}
	for _, b := range bodies {
		b.Close()
	}
	for k := range 2 {
		var line *audit.Entry
		for _, e := range h.entries() {
			if e.Method == "GET" && e.Path == fmt.Sprintf("/stream%d", k) {
				line = &e
			}
		}
		if line == nil {
			t.Errorf("stream %d has no line after shutdown:\n%s", k, h.dump())
		} else {
			t.Logf("stream %d: %s %s", k, line.Decision, line.Reason)
		}
	}
	h.done <- nil // for cleanup
}

// TestAttackRespTokenAcrossEmptyLine: a token the upstream splits with an
// empty line, in a stream that waits between the two: the guard releases
// what comes before an empty line (an event's end is not held for the
// next event), so the start goes; the end never does, the stream is cut
// and the block logged, over both HTTP versions.
func TestAttackRespTokenAcrossEmptyLine(t *testing.T) {
	h, u := newEchoHarness(t)
	for k, host := range []string{"echo.test", "echo1.test"} {
		gate := make(chan struct{})
		path := fmt.Sprintf("/blank%d", k)
		u.add(path, func(auth string) reply {
			tok := strings.TrimPrefix(auth, "Bearer ")
			return reply{header: http.Header{"Content-Type": {"text/event-stream"}}, chunked: true,
				pieces: [][]byte{[]byte("data: " + tok[:12] + "\n\n"), []byte(tok[12:] + "\n\n")}, gate: gate}
		})
		resp, err := h.agent(k == 0).Do(mustReq("GET", u.url(host, path), nil))
		if err != nil {
			t.Fatal(err)
		}
		first := make([]byte, len("data: ")+12+2)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatalf("%s: the first event: %v", host, err)
		}
		close(gate)
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || bytes.Contains(rest, []byte(apiToken[12:])) {
			t.Errorf("%s: after the empty line the agent got %q (%v)", host, rest, err)
		}
		h.waitEntry("blank", func(e audit.Entry) bool {
			return e.Path == path && e.Decision == "block" && e.Secret == "API"
		})
	}
}

// TestAttackRespTokenAcrossEvents: a token the upstream splits across two
// server-sent events ("data: " between the pieces) or git pkt-lines (a
// length between them) is in no view: the agent, which reads the events'
// data joined, gets it whole.
func TestAttackRespTokenAcrossEvents(t *testing.T) {
	t.Skip("open: a token split by the upstream across framed pieces of one answer (server-sent events' data: lines, git side-band pkt-lines) passes; no view strips the framing")
}
