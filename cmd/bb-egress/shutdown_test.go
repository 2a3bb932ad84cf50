package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// seen is an upstream's record of the requests that reached it.
type seen struct {
	mu    sync.Mutex
	paths map[string]bool
}

func (s *seen) add(p string) {
	s.mu.Lock()
	s.paths[p] = true
	s.mu.Unlock()
}

func (s *seen) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.paths {
		out = append(out, p)
	}
	return out
}

// TestShutdownLogsEveryRequest: a real bb-egress serve, SIGTERMed with
// uploads, slow answers and WebSockets in flight through it, logs a line
// for every request its upstream saw, and its log verifies.
func TestShutdownLogsEveryRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bb-egress")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bb-egress")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	up := &seen{paths: map[string]bool{}}
	release := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.add(r.URL.Path)
		switch {
		case strings.HasPrefix(r.URL.Path, "/ws/"):
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: x\r\n\r\n")
			brw.Flush()
			io.Copy(io.Discard, brw) // until the sidecar closes it
		case strings.HasPrefix(r.URL.Path, "/upload/"):
			io.Copy(io.Discard, r.Body) // slowly, as the client sends it
		default:
			select { // an answer that does not come in time
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()
	tsrv := httptest.NewUnstartedServer(handler) // HTTP/2 over TLS, at 127.0.0.1
	tsrv.EnableHTTP2 = true
	tsrv.StartTLS()
	defer tsrv.Close()
	defer close(release)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	tport := tsrv.Listener.Addr().(*net.TCPAddr).Port
	upCA := filepath.Join(dir, "upstream.pem")
	os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tsrv.Certificate().Raw}), 0o600)

	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(fmt.Sprintf("- host: localhost\n  ports: [%d]\n  websocket: true\n- host: 127.0.0.1\n  ports: [%d]\n", port, tport)), 0o600)
	logPath := filepath.Join(dir, "audit.jsonl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--routes", routes, "--ca-dir", dir, "--log", logPath,
		"--allow-loopback", "--drain", "500ms", "--upstream-ca", upCA)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "EGRESS_TOKEN_CANARY=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("the sidecar did not listen: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	base := fmt.Sprintf("http://localhost:%d", port)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	h2 := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer h2.CloseIdleConnections()
	tbase := fmt.Sprintf("https://127.0.0.1:%d", tport)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(3)
		go func() { // an upload past the scan limit, so it streams, that never ends
			defer wg.Done()
			c, base := client, base
			if i%2 == 1 { // half of them on HTTP/2, through an intercepted tunnel
				c, base = &http.Client{Transport: h2}, tbase
			}
			pr, pw := io.Pipe()
			go func() {
				pw.Write(bytes.Repeat([]byte("u"), 1<<20+1))
				for range 200 {
					time.Sleep(50 * time.Millisecond)
					if _, err := pw.Write([]byte("more")); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/upload/%d", base, i), pr)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
			pr.Close()
		}()
		go func() { // a request whose answer is slow
			defer wg.Done()
			c, base := client, base
			if i%2 == 1 {
				c, base = &http.Client{Transport: h2}, tbase
			}
			if resp, err := c.Get(fmt.Sprintf("%s/slow/%d", base, i)); err == nil {
				resp.Body.Close()
			}
		}()
		go func() { // a WebSocket, open
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "GET %s/ws/%d HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", base, i, port)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 101 {
				return
			}
			// A masked text frame "hi", then wait for the sidecar to go.
			c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
			io.Copy(io.Discard, c)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(up.list()) < 3*n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := len(up.list()); got < 3*n {
		t.Logf("only %d of %d requests reached the upstream before SIGTERM", got, 3*n)
	}
	term := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the sidecar did not stop on SIGTERM: %s", stderr.String())
	}
	// --drain bounds the whole stop, lines included: a runtime's stop
	// timeout longer than it lets the sidecar finish its log.
	if took := time.Since(term); took > 500*time.Millisecond+time.Second {
		t.Errorf("SIGTERM to exit took %v with --drain 500ms", took)
	} else {
		t.Logf("SIGTERM to exit: %v, %d requests had reached the upstream", took, len(up.list()))
	}
	wg.Wait()

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		var e audit.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if (e.Host == "localhost" || e.Host == "127.0.0.1") && e.Method != "CONNECT" {
			logged[e.Path] = true
		}
	}
	for _, p := range up.list() {
		if !logged[p] {
			t.Errorf("the upstream saw %s, which has no line in the audit log", p)
		}
	}
	rep, err := audit.VerifyFile(logPath)
	if err != nil || !rep.OK || rep.Head == nil || rep.Head.Seq != rep.LastSeq {
		t.Errorf("verify after shutdown: %+v, %v", rep, err)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s\nlog:\n%s", stderr.String(), data)
	}
}
