package egress

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkUpload256 times a 256 MiB upload of text through the proxy:
// the first MiB read and scanned whole, the rest through the views guard.
func BenchmarkUpload256(b *testing.B) {
	h := newHarness(b, "")
	h.up.quiet.Store(true)
	c := h.client(false)
	const size = 256 << 20
	u := h.tlsURL("other.test", "/upload")
	b.SetBytes(size)
	for b.Loop() {
		body := io.LimitReader(repeat("The quick brown fox jumps over the lazy dog. 0123456789 a=b&c=%41\n"), size)
		resp, err := c.Post(u, "text/plain", body)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("upload: %d", resp.StatusCode)
		}
	}
}

// BenchmarkSmallPost times small JSON uploads on a keep-alive connection:
// each body read whole, searched in every view, and tried for compressed
// data.
func BenchmarkSmallPost(b *testing.B) {
	h := newHarness(b, "")
	h.up.quiet.Store(true)
	c := h.client(false)
	u := h.tlsURL("other.test", "/post")
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat(`a line of a prompt with \"quotes\" and \n breaks `, 40) + `"}]}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		resp, err := c.Post(u, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("post: %d", resp.StatusCode)
		}
	}
}
