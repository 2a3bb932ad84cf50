package egress

import (
	"io"
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
