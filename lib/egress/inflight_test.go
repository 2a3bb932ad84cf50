package egress

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestUploadOutlivesHandler: an upstream that answers a large upload
// before reading it ends the handler while the transport still streams
// the body; the transport's next read of the agent's body must not touch
// the finished request (over HTTP/2 that was a nil dereference that killed
// the sidecar). Both HTTP versions, the sidecar serving on afterwards.
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
		for i := range 5 {
			pr, pw := io.Pipe()
			go func() {
				pw.Write(bytes.Repeat([]byte("x"), 1<<20+1)) // past the scan limit: streamed
				for range 20 {
					time.Sleep(20 * time.Millisecond)
					if _, err := pw.Write(bytes.Repeat([]byte("y"), 32<<10)); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", fmt.Sprintf("https://early.test:%d/up/%d", port, i), pr)
			if resp, err := c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			pr.Close()
		}
		time.Sleep(300 * time.Millisecond) // the transport's reads after the handlers ended
		if st, _ := h.get(c, h.tlsURL("other.test", "/after")); st != 200 {
			t.Errorf("h2 %v: after the early answers: %d", h2, st)
		}
	}
}
