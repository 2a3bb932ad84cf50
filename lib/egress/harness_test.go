package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/state"
)

// The secrets every test sidecar knows.
const (
	apiToken    = "real-api-token-0123456789abcdef"
	placeholder = "bb-placeholder-api-00000000"
)

// upstream is a real TLS server (and a plain one) that records everything
// it received, so tests can prove what did not reach it.
type upstream struct {
	tls   *httptest.Server
	plain *httptest.Server
	ca    *CA
	port  int // of tls
	pport int // of plain

	quiet atomic.Bool // benchmarks: record nothing

	mu       sync.Mutex
	requests int
	received bytes.Buffer
	last     *http.Request
	lastBody []byte
	inflight int
	peak     int
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir(), 64)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ca: ca}
	u.tls = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.tls.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := hi.ServerName
		if name == "" {
			name = "127.0.0.1"
		}
		return ca.Leaf(name)
	}}
	u.tls.EnableHTTP2 = true
	u.tls.StartTLS()
	u.plain = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.tls.Close)
	t.Cleanup(u.plain.Close)
	u.port = portOf(t, u.tls.Listener.Addr())
	u.pport = portOf(t, u.plain.Listener.Addr())
	return u
}

func portOf(t testing.TB, a net.Addr) int {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.requests++
	u.inflight++
	u.peak = max(u.peak, u.inflight)
	fmt.Fprintf(&u.received, "%s %s %s\n", r.Method, r.RequestURI, r.Host)
	r.Header.Write(&u.received)
	u.last = r
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.inflight--
		u.mu.Unlock()
	}()

	if r.URL.Path == "/ws" {
		u.serveWS(w, r)
		return
	}
	// Read the body in pieces, recording each as it arrives: a test of a
	// block mid-body counts what got here.
	if u.quiet.Load() {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s %d", r.URL.Path, n)
		return
	}
	var body bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		u.mu.Lock()
		u.received.Write(buf[:n])
		u.mu.Unlock()
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	u.mu.Lock()
	u.lastBody = body.Bytes()
	u.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/slow"):
		time.Sleep(time.Second)
	case strings.HasPrefix(r.URL.Path, "/sleep"):
		time.Sleep(5 * time.Millisecond)
	case r.URL.Path == "/hangup":
		panic(http.ErrAbortHandler) // the connection (or stream) is cut
	case r.URL.Path == "/echo-body": // a debugging endpoint: the request back
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "you sent:\n")
		r.Header.Write(w)
		return
	case r.URL.Path == "/echo-stream": // the same, as events, the token late
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		fmt.Fprintf(w, "data: %s\n\n", r.Header.Get("Authorization"))
		return
	}
	w.Header().Set("X-Upstream-Auth", r.Header.Get("Authorization"))
	w.Header().Set("X-Upstream-Proto", r.Proto)
	fmt.Fprintf(w, "ok %s %d", r.URL.Path, body.Len())
}

// lastAuth is the Authorization header of the last request the upstream
// received.
func (u *upstream) lastAuth() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last == nil {
		return ""
	}
	return u.last.Header.Get("Authorization")
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests
}

func (u *upstream) got() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Clone(u.received.Bytes())
}

// harness is a sidecar serving on loopback, with a resolver that maps the
// test names to 127.0.0.1 and records every lookup.
type harness struct {
	t       testing.TB
	dir     string
	srv     *Server
	addr    string
	up      *upstream
	canary  string
	secrets []detect.Secret
	det     *detect.Detector
	logPath string
	cancel  context.CancelFunc
	done    chan error

	mu      sync.Mutex
	lookups []string
	dials   []string
	bodies  []string // every refusal body the tests saw
}

type recorder struct{ h *harness }

func (r recorder) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.h.mu.Lock()
	r.h.lookups = append(r.h.lookups, host)
	r.h.mu.Unlock()
	switch {
	case host == "metadata.test":
		return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
	case strings.HasSuffix(host, ".test") || host == "example.com":
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// routesFor expands {{TLS}} and {{PLAIN}} to the upstream's ports.
func (h *harness) routesFor(yaml string) string {
	yaml = strings.ReplaceAll(yaml, "{{TLS}}", strconv.Itoa(h.up.port))
	return strings.ReplaceAll(yaml, "{{PLAIN}}", strconv.Itoa(h.up.pport))
}

const defaultRoutes = `
- host: api.test
  ports: [{{TLS}}, {{PLAIN}}]
  inject: {header: Authorization, token: API, format: "Bearer {token}", placeholder: ` + placeholder + `}
- host: other.test
  ports: [{{TLS}}, {{PLAIN}}]
- host: paths.test
  ports: [{{TLS}}, {{PLAIN}}]
  paths: [/v1/]
  methods: [GET, POST]
- host: ws.test
  ports: [{{TLS}}, {{PLAIN}}]
  websocket: true
- host: local.test
  ports: [{{TLS}}, {{PLAIN}}]
- host: metadata.test
  ports: [80]
- host: "*.wild.test"
  ports: [{{TLS}}, {{PLAIN}}]
- host: missing.test
  ports: [{{TLS}}]
  inject: {header: X-Key, token: MISSING}
`

func newHarness(t testing.TB, routesYAML string, cfgs ...func(*Config)) *harness {
	t.Helper()
	c, err := canary.New()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: t.TempDir(), up: newUpstream(t), canary: c}
	h.secrets = []detect.Secret{{Name: canary.Name, Value: c}, {Name: "API", Value: apiToken}}
	h.det, err = detect.New(append(h.secrets, detect.Secret{Name: "PLACEHOLDER", Value: placeholder}))
	if err != nil {
		t.Fatal(err)
	}
	if routesYAML == "" {
		routesYAML = defaultRoutes
	}
	h.writeRoutes(routesYAML)
	h.logPath = filepath.Join(h.dir, state.AuditLogFile)
	aw, err := audit.NewWriter(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.up.ca.Certificate())
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	cfg := Config{
		RoutesFile:    filepath.Join(h.dir, state.RoutesFile),
		CADir:         filepath.Join(h.dir, "ca"),
		Audit:         aw,
		RequestsFile:  filepath.Join(h.dir, state.RequestsFile),
		Secrets:       h.secrets,
		UpstreamRoots: roots,
		AllowLoopback: true,
		Resolver:      recorder{h},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h.mu.Lock()
			h.dials = append(h.dials, addr)
			h.mu.Unlock()
			return dialer.DialContext(ctx, network, addr)
		},
		PollInterval: 50 * time.Millisecond,
	}
	for _, f := range cfgs {
		f(&cfg)
	}
	h.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		h.stop()
		aw.Close()
		h.checkLeaks()
	})
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		h.t.Error("the server did not stop")
	}
}

func (h *harness) writeRoutes(yaml string) {
	h.t.Helper()
	if err := state.WriteFileAtomic(filepath.Join(h.dir, state.RoutesFile), []byte(h.routesFor(yaml)), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// client returns an HTTP client that goes through the proxy and trusts
// the bottle's CA, as the agent does.
func (h *harness) client(h2 bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(h.srv.CA())
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: h.addr}),
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: false,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (h *harness) tlsURL(host, path string) string {
	return fmt.Sprintf("https://%s:%d%s", host, h.up.port, path)
}

func (h *harness) plainURL(host, path string) string {
	return fmt.Sprintf("http://%s:%d%s", host, h.up.pport, path)
}

// do sends req and returns the status and body, recording refusal bodies
// for the leak check.
func (h *harness) do(c *http.Client, req *http.Request) (int, string, http.Header) {
	h.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, string(b))
	h.mu.Unlock()
	return resp.StatusCode, string(b), resp.Header
}

func (h *harness) get(c *http.Client, u string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	st, b, _ := h.do(c, req)
	return st, b
}

// entries reads the audit log.
func (h *harness) entries() []audit.Entry {
	h.t.Helper()
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	// A line being written is not read half: only whole lines count.
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []audit.Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			h.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// waitEntry waits for a log entry that satisfies ok: an allowed request is
// logged once its response is sent, so just after the client has it.
func (h *harness) waitEntry(what string, ok func(audit.Entry) bool) audit.Entry {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range h.entries() {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no audit entry %s in:\n%s", what, h.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) dump() string {
	data, _ := os.ReadFile(h.logPath)
	return string(data)
}

func (h *harness) lookedUp(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lookups {
		if strings.EqualFold(strings.TrimSuffix(l, "."), host) {
			return true
		}
	}
	return false
}

// checkLeaks is run after every test: the audit log's chain is intact,
// and neither the log nor any refusal body carries a secret in any form.
func (h *harness) checkLeaks() {
	rep, err := audit.VerifyFile(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	if !rep.OK {
		h.t.Errorf("audit log chain broken: %+v", rep.Broken)
	}
	if hit, ok := h.det.Find([]byte(h.dump())); ok {
		h.t.Errorf("the audit log carries secret %s (%s)", hit.Secret, hit.Encoding)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bodies {
		if hit, ok := h.det.FindString(b); ok {
			h.t.Errorf("a response to the agent carries secret %s (%s): %q", hit.Secret, hit.Encoding, b)
		}
	}
}
