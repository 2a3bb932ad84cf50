package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestUploadOutlivesHandler: an upload cut by its client (or answered
// early by its upstream) ends the handler while the transport may still be
// reading the agent's body in a goroutine of its own; that read must not
// touch the finished request (over HTTP/2 it was a nil dereference that
// killed the sidecar). Both HTTP versions, the sidecar serving on after.
func TestUploadOutlivesHandler(t *testing.T) {
	h := newHarness(t, "")
	early := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // without reading the body
	}))
	early.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.up.ca.Leaf("early.test") }}
	early.EnableHTTP2 = true
	early.StartTLS()
	defer early.Close()
	port := portOf(t, early.Listener.Addr())
	h.writeRoutes(defaultRoutes + fmt.Sprintf("- host: early.test\n  ports: [%d]\n", port))
	time.Sleep(200 * time.Millisecond) // the routes reload

	for _, h2 := range []bool{true, false} {
		c := h.client(h2)
		for i := range 40 {
			pr, pw := io.Pipe()
			go func() {
				pw.Write(bytes.Repeat([]byte("x"), 1<<20+1)) // past the scan limit: streamed
				for range 50 {
					time.Sleep(2 * time.Millisecond)
					if _, err := pw.Write(bytes.Repeat([]byte("y"), 32<<10)); err != nil {
						return
					}
				}
				pw.Close()
			}()
			u := h.tlsURL("other.test", fmt.Sprintf("/up/%d", i))
			if i%2 == 1 {
				u = fmt.Sprintf("https://early.test:%d/up/%d", port, i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(10+i)*time.Millisecond)
			req, _ := http.NewRequestWithContext(ctx, "POST", u, pr)
			if resp, err := c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			cancel()
			pr.Close()
		}
		time.Sleep(100 * time.Millisecond) // the transport's reads after the handlers ended
		if st, _ := h.get(c, h.tlsURL("other.test", "/after")); st != 200 {
			t.Errorf("h2 %v: after the cut uploads: %d", h2, st)
		}
	}
}
