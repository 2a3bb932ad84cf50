package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func benchGet(b *testing.B, c *http.Client, u string) {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
}

// BenchmarkProxyHTTPS times small HTTPS requests on a keep-alive
// connection through the proxy (interception, routing, scanning, the
// audit line), and reports the same requests sent directly to the
// upstream, and the ratio of the two.
func BenchmarkProxyHTTPS(b *testing.B) {
	h := newHarness(b, "")
	h.up.quiet.Store(true)
	proxied := h.client(false)
	u := h.tlsURL("other.test", "/bench")
	benchGet(b, proxied, u) // the tunnel and the leaf are set up once

	roots := x509.NewCertPool()
	roots.AddCert(h.up.ca.Certificate())
	addr := fmt.Sprintf("127.0.0.1:%d", h.up.port)
	dtr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: false,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	defer dtr.CloseIdleConnections()
	direct := &http.Client{Transport: dtr}
	du := h.tlsURL("other.test", "/bench")
	benchGet(b, direct, du)

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchGet(b, proxied, u)
	}
	b.StopTimer()
	proxyNS := float64(b.Elapsed().Nanoseconds()) / float64(b.N)

	start := time.Now()
	for i := 0; i < b.N; i++ {
		benchGet(b, direct, du)
	}
	directNS := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(directNS, "direct-ns/op")
	b.ReportMetric(proxyNS/directNS, "x-direct")
}

// BenchmarkUploadScan times an 8 MiB upload through the proxy: the first
// MiB read and scanned whole, the rest through the guard.
func BenchmarkUploadScan(b *testing.B) {
	h := newHarness(b, "")
	h.up.quiet.Store(true)
	c := h.client(false)
	body := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. 0123456789\n"), (8<<20)/56)
	u := h.tlsURL("other.test", "/upload")
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Post(u, "text/plain", bytes.NewReader(body))
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
