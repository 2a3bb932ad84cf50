package egress

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// oneEscaped is v with its middle byte written in each escape a view
// undoes.
func oneEscaped(v string) map[string]string {
	k := len(v) / 2
	c := v[k]
	out := map[string]string{}
	for name, esc := range map[string]string{
		"percent": fmt.Sprintf("%%%02X", c), "html": fmt.Sprintf("&#%d;", c),
		"json": fmt.Sprintf(`\u%04x`, c), "quoted-printable": fmt.Sprintf("=%02X", c),
	} {
		out[name] = v[:k] + esc + v[k+1:]
	}
	return out
}

// wrapEscaped is the base64 of data wrapped at cols with br between lines.
func wrapEscaped(data string, cols int, br string) string {
	s := base64.StdEncoding.EncodeToString([]byte(data))
	var b strings.Builder
	for i := 0; i < len(s); i += cols {
		b.WriteString(s[i:min(i+cols, len(s))])
		b.WriteString(br)
	}
	return b.String()
}

// sentSince returns what the upstream received since before, once it is
// done with every request.
func (h *harness) sentSince(before int) []byte {
	h.upIdle()
	return h.up.got()[before:]
}

// upIdle waits until the upstream is in no request: it records what it
// reads as it reads.
func (h *harness) upIdle() int {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h.up.mu.Lock()
		n := h.up.inflight
		h.up.mu.Unlock()
		if n == 0 {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return len(h.up.got())
}

// padTo returns pad bytes of filler then tail, size bytes in all.
func padTo(size int, tail string) []byte {
	b := bytes.Repeat([]byte("a"), size-len(tail))
	for i := 100; i < len(b); i += 100 {
		b[i] = '\n'
	}
	return append(b, tail...)
}

// TestViewsPastMaxScanBody: a secret with one byte escaped, or wrapped
// base64 with escaped line breaks, is blocked in a body of every size
// around MaxScanBody and ten times it, over both HTTP versions, and no
// byte of the secret reaches the upstream.
func TestViewsPastMaxScanBody(t *testing.T) {
	h := newHarness(t, "")
	const limit = 1 << 20
	forms := oneEscaped(h.canary)
	file := "#!/bin/sh\nexport TOKEN=" + h.canary + "\n"
	for _, cols := range []int{60, 76} {
		for _, br := range []string{"%0A", "%0D%0A", `\n`, `\r\n`, "&#10;", "&#13;&#10;"} {
			forms[fmt.Sprintf("base64 at %d, breaks %s", cols, br)] = wrapEscaped(file, cols, br)
		}
	}
	u := h.tlsURL("other.test", "/up")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, enc := range forms {
			tail := `{"content":"` + enc + `"}`
			for _, size := range []int{limit - 1, limit, limit + 1, 10 * limit} {
				if size == 10*limit && !strings.HasPrefix(name, "percent") && !strings.Contains(name, `76, breaks \n`) {
					continue // ten times, for two forms: the rest is the same path
				}
				before := h.upIdle()
				st, _ := h.post(t, c, u, "application/json", padTo(size, tail))
				if st != 403 {
					t.Errorf("h2 %v, %s in %d bytes: status %d", h2, name, size, st)
				}
				if got := h.sentSince(before); bytes.Contains(got, []byte(h.canary[:6])) || bytes.Contains(got, []byte(enc[:6])) {
					t.Errorf("h2 %v, %s in %d bytes: the upstream received the start of it", h2, name, size)
				}
			}
		}
	}
	// And the clean body of each size goes through whole.
	for _, size := range []int{limit - 1, limit, limit + 1, 10 * limit} {
		body := padTo(size, `{"content":"`+wrapEscaped("nothing to see", 76, `\n`)+`"}`)
		if st, got := h.post(t, h.client(true), u, "application/json", body); st != 200 || !bytes.Equal(got, body) {
			t.Errorf("clean body of %d bytes: %d, %d bytes arrived", size, st, len(got))
		}
	}
}

// zipOf is a zip archive of the files, each stored or deflated.
func zipArchive(method uint16, files map[string][]byte) []byte {
	var out bytes.Buffer
	w := zip.NewWriter(&out)
	for name, data := range files {
		f, _ := w.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		f.Write(data)
	}
	w.Close()
	return out.Bytes()
}

// multipartOf is a form upload of one file, and its content type.
func multipartOf(name string, data []byte) ([]byte, string) {
	var out bytes.Buffer
	w := multipart.NewWriter(&out)
	w.WriteField("message", "upload")
	hd := textproto.MIMEHeader{}
	hd.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
	hd.Set("Content-Type", "application/octet-stream")
	p, _ := w.CreatePart(hd)
	p.Write(data)
	w.Close()
	return out.Bytes(), w.FormDataContentType()
}

// TestViewsCompressed: every escape form of the canary is blocked inside
// gzip (declared or not), zlib, raw DEFLATE, zip entries and a .gz part
// of a form upload; nested up to three layers it is found, past that the
// body is refused; what cannot be opened is refused.
func TestViewsCompressed(t *testing.T) {
	h := newHarness(t, "")
	u := h.tlsURL("other.test", "/up")
	secret := func(form string) []byte { return []byte("config:\n  token: " + form + "\n") }
	type body struct {
		data  []byte
		ctype string
		enc   string // Content-Encoding
	}
	wrap := map[string]func([]byte) body{
		"gzip declared": func(b []byte) body { return body{gz(b), "text/plain", "gzip"} },
		"deflate decl.": func(b []byte) body { return body{zl(b), "text/plain", "deflate"} },
		"gzip":          func(b []byte) body { return body{gz(b), "application/octet-stream", ""} },
		"zlib":          func(b []byte) body { return body{zl(b), "application/octet-stream", ""} },
		"raw deflate":   func(b []byte) body { return body{rawDeflate(b), "application/octet-stream", ""} },
		"gzip after junk": func(b []byte) body {
			return body{append([]byte("junk\x00\x01"), gz(b)...), "application/octet-stream", ""}
		},
		"zip deflate": func(b []byte) body {
			return body{zipArchive(zip.Deflate, map[string][]byte{"a.txt": []byte("x"), "b.txt": b}), "application/zip", ""}
		},
		"zip stored": func(b []byte) body {
			return body{zipArchive(zip.Store, map[string][]byte{"b.txt": b}), "application/zip", ""}
		},
		"zip of zlib": func(b []byte) body {
			return body{zipArchive(zip.Store, map[string][]byte{"b.z": zl(b)}), "application/zip", ""}
		},
		"multipart .gz": func(b []byte) body {
			d, ct := multipartOf("b.gz", gz(b))
			return body{d, ct, ""}
		},
		"multipart raw deflate": func(b []byte) body {
			d, ct := multipartOf("b.deflate", rawDeflate(b))
			return body{d, ct, ""}
		},
		"gzip in zip in multipart": func(b []byte) body {
			d, ct := multipartOf("b.zip", zipArchive(zip.Deflate, map[string][]byte{"b.gz": gz(b)}))
			return body{d, ct, ""}
		},
		"zlib in gzip in zip": func(b []byte) body {
			return body{zipArchive(zip.Deflate, map[string][]byte{"b.gz": gz(zl(b))}), "application/zip", ""}
		},
	}
	forms := oneEscaped(h.canary)
	forms["raw"] = h.canary
	// The canary's base64 runs from column 44 to 101: a break at 60 and
	// at 76 splits it.
	file := "# env of the bottle\nexport TOKEN=" + h.canary + "\n"
	forms["json wrapped base64"] = wrapEscaped(file, 60, `\n`)
	forms["form wrapped base64"] = url.QueryEscape(wrapEscaped(file, 76, "\r\n"))
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for wname, wf := range wrap {
			for fname, form := range forms {
				b := wf(secret(form))
				before := h.up.count()
				req := mustReq("POST", u, bytes.NewReader(b.data))
				req.Header.Set("Content-Type", b.ctype)
				if b.enc != "" {
					req.Header.Set("Content-Encoding", b.enc)
				}
				if st, _, _ := h.do(c, req); st != 403 {
					t.Errorf("h2 %v: %s of the canary %s: status %d", h2, fname, wname, st)
				}
				if h.up.count() != before {
					t.Errorf("h2 %v: %s of the canary %s reached the upstream", h2, fname, wname)
				}
			}
			// The same without a secret passes.
			b := wf(secret("nothing-secret-here"))
			req := mustReq("POST", u, bytes.NewReader(b.data))
			req.Header.Set("Content-Type", b.ctype)
			if b.enc != "" {
				req.Header.Set("Content-Encoding", b.enc)
			}
			if st, body, _ := h.do(c, req); st != 200 {
				t.Errorf("h2 %v: clean %s: status %d %q", h2, wname, st, body)
			}
		}
	}
}

// TestOpenBounds: depth, size, and what cannot be opened.
func TestOpenBounds(t *testing.T) {
	const maxDec = 1 << 20
	h := newHarness(t, "", func(c *Config) { c.MaxDecompressed = maxDec })
	u := h.tlsURL("other.test", "/up")
	c := h.client(false)
	clean := []byte("nothing secret\n")
	nest := func(n int, b []byte) []byte {
		for range n {
			b = gz(b)
		}
		return b
	}
	encrypted := zipArchive(zip.Deflate, map[string][]byte{"a": clean})
	encrypted[6] |= 1 // the local header's flags: encrypted
	bzip := zipArchive(zip.Store, map[string][]byte{"a": clean})
	bzip[8] = 12 // method: bzip2
	// A body of random bytes compressed once: its size after is exact.
	rnd := make([]byte, maxDec)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i>>8*31)
	}
	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"three layers, the canary", nest(3, []byte(h.canary)), 403},
		{"three layers, clean", nest(3, clean), 200},
		{"four layers, clean", nest(4, clean), 413},
		{"four layers, canary", nest(4, []byte(h.canary)), 413},
		{"encrypted zip entry", encrypted, 413},
		{"bzip2 zip entry", bzip, 413},
		{"decompresses to the cap", gz(rnd), 200},
		{"decompresses to the cap-1", gz(rnd[:maxDec-1]), 200},
		{"decompresses past the cap", gz(append(rnd, 'x')), 413},
		{"zip bomb", gz(make([]byte, 64<<20)), 413},
		{"text that starts like zlib", []byte("x^ not zlib at all, just text"), 200},
	}
	for _, tt := range tests {
		before := h.up.count()
		st, _ := h.post(t, c, u, "application/octet-stream", tt.body)
		if st != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, st, tt.want)
		}
		if tt.want != 200 && h.up.count() != before {
			t.Errorf("%s: reached the upstream", tt.name)
		}
	}
}

// TestOpenLargeBody: past MaxScanBody, compressed data that starts the
// body or one of its parts in the first MaxScanBody bytes is opened if it
// ends there and refused if it goes on; one past that is refused.
func TestOpenLargeBody(t *testing.T) {
	h := newHarness(t, "")
	u := h.tlsURL("other.test", "/up")
	const limit = 1 << 20
	big := bytes.Repeat([]byte("incompressible? no, but long enough\n"), 3*limit/36)
	// Random-ish data that deflate cannot shrink much, so its stream runs
	// past the first MiB.
	noise := make([]byte, 2*limit)
	x := uint32(1)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, tc := range map[string]struct {
			body []byte
			want int
		}{
			"zlib over the limit":         {zl(noise), 413},
			"raw deflate over the limit":  {rawDeflate(noise), 413},
			"zip over the limit":          {zipArchive(zip.Store, map[string][]byte{"a": noise}), 413},
			"small zlib then text":        {append(zl([]byte(h.canary)), big...), 403},
			"small raw deflate then text": {append(rawDeflate([]byte("k="+h.canary)), big...), 403},
			"plain text":                  {big, 200},
		} {
			if st, _ := h.post(t, c, u, "application/octet-stream", tc.body); st != tc.want {
				t.Errorf("h2 %v, %s: status %d, want %d", h2, name, st, tc.want)
			}
		}
		d, ct := multipartOf("a.gz", gz(noise))
		if st, _ := h.post(t, c, u, ct, append(big, d...)[len(big)-limit/2:]); st != 413 {
			t.Errorf("h2 %v: a .gz part in the first MiB of a large upload: %d", h2, st)
		}
	}
}

// TestViewsMemory: a 64 MiB upload of escapes, of one long line, or a
// bomb does not grow the sidecar's heap past a bound.
func TestViewsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB uploads")
	}
	h := newHarness(t, "")
	h.up.quiet.Store(true)
	u := h.tlsURL("other.test", "/up")
	c := h.client(false)
	bomb := gz(make([]byte, 64<<20))
	bodies := map[string]func() io.Reader{
		"all %":      func() io.Reader { return io.LimitReader(repeat("%41%2F&#65;"), 64<<20) },
		"no newline": func() io.Reader { return io.LimitReader(repeat("abcdefgh"), 64<<20) },
		"spaces":     func() io.Reader { return io.LimitReader(repeat(" "), 64<<20) },
		"bomb":       func() io.Reader { return bytes.NewReader(bomb) },
	}
	for name, mk := range bodies {
		var peak uint64
		var wg sync.WaitGroup
		done := make(chan struct{})
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapAlloc)
			}
		}()
		req := mustReq("POST", u, mk())
		req.Header.Set("Content-Type", "application/octet-stream")
		st, _, _ := h.do(c, req)
		close(done)
		wg.Wait()
		if name != "bomb" && st != 200 || name == "bomb" && st != 413 {
			t.Errorf("%s: status %d", name, st)
		}
		if grown := peak - min(peak, base); grown > 48<<20 {
			t.Errorf("%s: the heap grew by %d MiB", name, grown>>20)
		}
		t.Logf("%s: heap grew by at most %.1f MiB", name, float64(peak-min(peak, base))/(1<<20))
	}
}

type repeatReader struct {
	unit []byte
	off  int
}

func repeat(s string) *repeatReader {
	return &repeatReader{unit: bytes.Repeat([]byte(s), 4096/len(s)+1)}
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.unit[r.off:])
		n += k
		r.off = (r.off + k) % len(r.unit)
	}
	return n, nil
}

var _ = http.StatusOK

// multipartParts is a form upload of the files in order, and its content
// type.
func multipartParts(files ...[]byte) ([]byte, string) {
	var out bytes.Buffer
	w := multipart.NewWriter(&out)
	for i, data := range files {
		hd := textproto.MIMEHeader{}
		hd.Set("Content-Disposition", fmt.Sprintf(`form-data; name="f%d"; filename="f%d"`, i, i))
		hd.Set("Content-Type", "application/octet-stream")
		p, _ := w.CreatePart(hd)
		p.Write(data)
	}
	w.Close()
	return out.Bytes(), w.FormDataContentType()
}

// TestSniffLargeParts: in a form upload over MaxScanBody, a part past the
// first MiB that starts with compressed data going on is refused before
// any byte of it leaves; one that ends within what is sniffed is searched.
func TestSniffLargeParts(t *testing.T) {
	h := newHarness(t, "")
	u := h.tlsURL("other.test", "/up")
	const limit = 1 << 20
	text := bytes.Repeat([]byte("a line of an ordinary text file\n"), 2*limit/32)
	noise := make([]byte, 256<<10)
	x := uint32(7)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, tc := range map[string]struct {
			part []byte
			want int
		}{
			"gzip":                      {gz(noise), 413},
			"zlib":                      {zl(noise), 413},
			"raw deflate":               {rawDeflate(noise), 413},
			"zip":                       {zipArchive(zip.Deflate, map[string][]byte{"a": noise}), 413},
			"small raw deflate, canary": {rawDeflate([]byte("k=" + h.canary)), 403},
			"small zlib, canary":        {zl([]byte("k=" + h.canary)), 403},
			"small raw deflate, clean":  {rawDeflate([]byte("nothing")), 200},
			"random bytes":              {noise, 200},
			"text":                      {text[:5000], 200},
			"json":                      {[]byte(`{"a": 1, "b": [1, 2, 3], "c": "` + strings.Repeat("x", 600) + `"}`), 200},
		} {
			body, ct := multipartParts(text, tc.part, []byte("the end"))
			before := h.upIdle()
			st, _ := h.post(t, c, u, ct, body)
			if st != tc.want {
				t.Errorf("h2 %v: a %s part after 2 MiB: status %d, want %d", h2, name, st, tc.want)
			}
			if tc.want != 200 {
				got := h.sentSince(before)
				if at := bytes.Index(body, tc.part[:16]); len(got) > at+4096 || bytes.Contains(got, tc.part[:16]) {
					t.Errorf("h2 %v: a %s part: the upstream received %d bytes, the part starts at %d", h2, name, len(got), at)
				}
			}
		}
		// The part's delimiter split across reads, at every offset near a
		// read's end: the sniffer holds it.
		for shift := range 40 {
			body, ct := multipartParts(text[:len(text)-shift], gz(noise))
			if st, _ := h.post(t, c, u, ct, body); st != 413 {
				t.Errorf("h2 %v: a gzip part shifted by %d: status %d", h2, shift, st)
			}
		}
	}
	long := "multipart/form-data; boundary=" + strings.Repeat("b", 71)
	if st, _ := h.post(t, h.client(false), u, long, text); st != 400 {
		t.Errorf("a 71-character boundary: %d", st)
	}
}

// TestPartSnifferSplits: however the body is cut into reads, the sniffer
// passes on nothing of a compressed part, and all of a clean body.
func TestPartSnifferSplits(t *testing.T) {
	det, _ := detect.New([]detect.Secret{{Name: "T", Value: "secret-value-123456"}})
	text := bytes.Repeat([]byte("text\r\n--not a delimiter\r\n"), 400)
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(i * 2654435761 >> 13)
	}
	bad, ct := multipartParts(text, gz(noise), []byte("end"))
	good, ct2 := multipartParts(text, noise, rawDeflate([]byte("clean")), []byte("end"))
	at := bytes.Index(bad, gz(noise)[:10])
	for name, rd := range map[string]func(io.Reader) io.Reader{
		"one byte": iotest.OneByteReader, "half": iotest.HalfReader, "whole": func(r io.Reader) io.Reader { return r },
	} {
		r, f := sniffParts(det, rd(bytes.NewReader(bad)), ct, 100)
		if f != nil {
			t.Fatal(f.reason)
		}
		got, err := io.ReadAll(r)
		var se *sniffError
		if !errors.As(err, &se) || len(got) > at {
			t.Errorf("%s reads: passed %d bytes (the gzip starts at %d), %v", name, len(got), at, err)
		}
		r, _ = sniffParts(det, rd(bytes.NewReader(good)), ct2, 100)
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, good) {
			t.Errorf("%s reads of a clean body: %d of %d bytes, %v", name, len(got), len(good), err)
		}
	}
}

// TestSniffLargeAnywhere: past the first MiB of any large body, gzip or a
// zip entry that goes on is refused before any byte of it leaves, one
// that ends soon is searched, and random bytes pass.
func TestSniffLargeAnywhere(t *testing.T) {
	h := newHarness(t, "")
	u := h.tlsURL("other.test", "/up")
	text := bytes.Repeat([]byte("an ordinary line of text\n"), 3<<20/25)
	noise := make([]byte, 8<<20)
	x := uint64(99)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		noise[i] = byte(x)
	}
	bz := zipArchive(zip.Store, map[string][]byte{"a": noise[:1000]})
	bz[8] = 12 // bzip2
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, tc := range map[string]struct {
			tail []byte
			want int
		}{
			"gzip":               {gz(noise[:64<<10]), 413},
			"zip deflate":        {zipArchive(zip.Deflate, map[string][]byte{"a": noise[:64<<10]}), 413},
			"zip bzip2":          {bz, 413},
			"small gzip, canary": {gz([]byte("k=" + h.canary)), 403},
			"zip stored, canary": {zipArchive(zip.Store, map[string][]byte{"a": []byte("k=" + h.canary)}), 403},
			"small gzip, clean":  {gz([]byte("nothing")), 200},
			"zip stored, random": {zipArchive(zip.Store, map[string][]byte{"a": noise[:64<<10]}), 200},
		} {
			body := append(bytes.Clone(text), tc.tail...)
			body = append(body, text[:1000]...)
			before := h.upIdle()
			if st, _ := h.post(t, c, u, "application/octet-stream", body); st != tc.want {
				t.Errorf("h2 %v: %s after 3 MiB of text: status %d, want %d", h2, name, st, tc.want)
			}
			if got := h.sentSince(before); tc.want != 200 && len(got) > len(text)+1024 {
				t.Errorf("h2 %v: %s: the upstream received %d bytes, past the text's %d", h2, name, len(got), len(text))
			}
		}
		if st, got := h.post(t, c, u, "application/octet-stream", noise); st != 200 || !bytes.Equal(got, noise) {
			t.Errorf("h2 %v: 8 MiB of random bytes: %d, %d bytes arrived", h2, st, len(got))
		}
	}
	// The refusal's line: a block, 413, what was sent, why, no secret.
	e := h.waitEntry("a refused gzip", func(e audit.Entry) bool {
		return e.Status == 413 && strings.Contains(e.Reason, "gzip") && e.BytesUp > 2<<20
	})
	if e.Decision != audit.Block || e.Secret != "" || e.BytesUp > int64(len(text)) {
		t.Errorf("entry = %+v", e)
	}
}

// TestLargePartAtTheEdge: a part that starts just before, at or just past
// the end of the first MiB is judged like any other: text passes, gzip is
// refused.
func TestLargePartAtTheEdge(t *testing.T) {
	h := newHarness(t, "")
	u := h.tlsURL("other.test", "/up")
	const limit = 1 << 20
	line := []byte("plain text, { \"json\": true }, and more words\n")
	text := bytes.Repeat(line, 2*limit/len(line))
	noise := make([]byte, 64<<10)
	for i := range noise {
		noise[i] = byte(i*2654435761>>11) ^ byte(i>>3)
	}
	c := h.client(false)
	second := append([]byte("the second part\n"), text[:2*limit/3]...)
	for _, k := range []int{-600, -513, -512, -511, -100, -10, -1, 0, 1, 10, 511, 512, 513} {
		for name, part := range map[string][]byte{"text": second, "gzip": gz(noise)} {
			// Where the second part's content starts, for a first part of
			// one byte: then pad the first to put it at limit+k.
			probe, _ := multipartParts([]byte("x"), part)
			over := bytes.Index(probe, part[:8]) - 1
			body, ct := multipartParts(text[:limit+k-over], part)
			if at := bytes.Index(body, part[:8]); at != limit+k {
				t.Fatalf("k %d: the part starts at %d, not %d", k, at, limit+k)
			}
			want := 200
			if name == "gzip" {
				want = 413
			}
			if st, _ := h.post(t, c, u, ct, body); st != want {
				t.Errorf("a %s part at the first MiB %+d: status %d, want %d", name, k, st, want)
			}
		}
	}
}

// TestSniffManySignatures: a large body of nothing but signatures is
// refused, fast, and does not grow the heap.
func TestSniffManySignatures(t *testing.T) {
	h := newHarness(t, "")
	h.up.quiet.Store(true)
	u := h.tlsURL("other.test", "/up")
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}
	for name, unit := range map[string][]byte{"gzip headers": hdr, "zip signatures": []byte("PK\x03\x04"), "gzip magic": gzipMagic} {
		body := append(bytes.Repeat([]byte("x"), 2<<20), bytes.Repeat(unit, (8<<20)/len(unit))...)
		start := time.Now()
		st, _ := h.post(t, h.client(false), u, "application/octet-stream", body)
		if name == "zip signatures" || name == "gzip magic" {
			if st != 200 {
				t.Errorf("%s: %d", name, st) // no header behind them: binary data
			}
		} else if st != 413 {
			t.Errorf("%s: %d", name, st)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
}
