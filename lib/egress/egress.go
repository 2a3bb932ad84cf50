// Package egress holds a bottle's egress sidecar: a forward proxy that lets
// out only what the bottle's routes allow, intercepts TLS with the bottle's
// CA, scans every outbound request for known secrets (and the canary) before
// any byte of it leaves, injects the credentials the agent never holds, and
// writes one audit line per decision.
//
// A route whose token has no value on the sidecar answers 502 and sends
// nothing: a request is never sent without the credential its route
// promises. Decisions are logged as audit.Entry lines: allow (status as the
// upstream answered, or 502/504 when it failed), deny (no route, a refused
// destination, a bad path or upgrade) and block (a known secret; Canary set
// when it is the canary). Nothing that reaches the log or a refusal body
// carries a secret: such strings are redacted to the secret's NAME.
//
// What the scanner catches, and what it does not. Every request is
// searched for every known secret and placeholder, in any mix of case, in
// the forms ordinary code writes (URL and percent escapes, base64, base32,
// hex, JSON), and through a decoded view (one escaped character among
// plain ones, JSON \u, HTML references, quoted-printable) and a flattened
// one (base64 wrapped or spaced out). That catches careless and encoded
// leaks. It cannot catch a determined agent: a secret reversed, XORed,
// split across requests or headers, or sent a few bits at a time (a
// timing, a choice among allowed paths) leaves unseen. The hard guarantee
// is the routes: what a bottle can reach at all. Keep them narrow — a host
// with paths and methods rather than a wildcard — and treat a route to a
// place that stores what it receives (a paste site, a bucket, an issue
// tracker) as a way out for anything the agent can read.
//
// DNS is a way out too. A denied name is never resolved, but a wildcard
// route (*.example.com) lets the agent choose names under it, and the
// sidecar resolves every name it forwards to: the agent can spell data in
// the labels (base32 of a secret, say, in pieces short enough to miss the
// scanner) and whoever runs example.com's name servers reads it from
// their query log. Name hosts exactly where the data matters.
//
// The CONNECT handshake goes through goproxy; the intercepted traffic and
// plain proxy requests are served by this package's own handler, because
// goproxy's MITM loop can neither answer a block found mid-body with a 403,
// nor scan WebSocket frames, nor bound header reads and idle connections.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// Hostname is the name under which the agent reaches the sidecar itself
// (http://bb.egress/_bb/...).
const Hostname = "bb.egress"

// Resolver resolves host names; *net.Resolver is one. Tests pass a recorder
// to prove that a denied name is never looked up.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Server. Zero limits take the defaults below.
type Config struct {
	// RoutesFile is the YAML list of routes; it is re-read on Reload and
	// whenever it changes (also when it is replaced by a rename).
	RoutesFile string
	// CADir holds ca.pem and ca-key.pem; they are created when absent.
	CADir string
	// Audit receives one entry per decision; nil discards them.
	Audit *audit.Writer
	// RequestsFile is where POST /_bb/requests appends the agent's
	// requests for routes; empty refuses them with 503.
	RequestsFile string
	// Secrets are the values that must never leave: every EGRESS_TOKEN_*
	// (the canary among them). Inject draws its tokens from here too.
	Secrets []detect.Secret
	// UpstreamRoots verifies upstream servers; nil means the system roots.
	UpstreamRoots *x509.CertPool
	// AllowLoopback lets routes reach loopback, link-local, unspecified
	// and multicast addresses (tests, local development).
	AllowLoopback bool
	// AllowPrivate lets routes reach private addresses: RFC 1918, unique
	// local, carrier-grade NAT, benchmarking, and IPv6 addresses embedding
	// one (upstreams that are containers on a private network, as in the
	// offline demo). Without it, and without a route naming the IP, a name
	// that resolves there is refused.
	AllowPrivate bool
	// Resolver resolves upstream names; nil is net.DefaultResolver.
	Resolver Resolver
	// Dial connects to an already checked IP:port; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logf receives diagnostics for people (reloads, handshake failures);
	// nil discards them.
	Logf func(format string, args ...any)
	// Git configures the git gate of the routes that have git.
	Git GitConfig
	// Slug names the bottle in what a denial tells the agent to ask on
	// the host (bb-egress allow SLUG HOST); empty says so in words.
	Slug string
	// LogBudget bounds how fast one client can grow the audit log with
	// lines of requests that sent nothing upstream; zero fields take its
	// defaults.
	LogBudget LogBudget

	MaxConns              int           // concurrent client connections (1024)
	ConnWait              time.Duration // how long a connection beyond MaxConns waits for a slot (500ms)
	HandshakeTimeout      time.Duration // client TLS handshake (10s)
	ReadHeaderTimeout     time.Duration // reading a request's head (10s)
	IdleTimeout           time.Duration // keep-alive between requests (90s)
	DialTimeout           time.Duration // connecting upstream (10s)
	ResponseHeaderTimeout time.Duration // upstream's response head (60s)
	DrainTimeout          time.Duration // Serve's drain on ctx cancel (10s)
	MaxScanBody           int64         // bodies up to this are read whole before sending (1 MiB)
	MaxBufferedBodies     int           // bodies being read whole at once, server-wide (64): bounds their memory
	BodySlotWait          time.Duration // how long a request waits for one of those slots before a 503 (5s)
	BodyReadTimeout       time.Duration // reading a body up to MaxScanBody; and the most a larger one may pause (30s)
	MaxStreams            int           // concurrent HTTP/2 streams per intercepted connection (32)
	MaxDecompressed       int64         // cap on a decompressed body (16 MiB)
	MaxHeaderBytes        int           // request head (64 KiB)
	MaxWSMessage          int64         // a WebSocket message from the client (1 MiB)
	MaxWSBuffered         int64         // WebSocket memory server-wide: messages held for their scan, their frames, open WebSockets' buffers (64 MiB)
	PollInterval          time.Duration // routes file change check (250ms)
	LeafCacheSize         int           // intercepted hosts' certificates kept (1024)
	MaxRequestsFile       int64         // size cap of RequestsFile (1 MiB)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConnWait, 500*time.Millisecond)
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 90*time.Second)
	def(&c.DialTimeout, 10*time.Second)
	def(&c.ResponseHeaderTimeout, 60*time.Second)
	def(&c.DrainTimeout, 10*time.Second)
	def(&c.BodySlotWait, 5*time.Second)
	def(&c.BodyReadTimeout, 30*time.Second)
	def(&c.PollInterval, 250*time.Millisecond)
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.MaxScanBody <= 0 {
		c.MaxScanBody = 1 << 20
	}
	if c.MaxBufferedBodies <= 0 {
		c.MaxBufferedBodies = 64
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 32
	}
	if c.MaxDecompressed <= 0 {
		c.MaxDecompressed = 16 << 20
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxWSBuffered <= 0 {
		c.MaxWSBuffered = 64 << 20
	}
	if c.MaxWSMessage <= 0 {
		c.MaxWSMessage = 1 << 20
	}
	if c.LeafCacheSize <= 0 {
		c.LeafCacheSize = 1024
	}
	if c.MaxRequestsFile <= 0 {
		c.MaxRequestsFile = 1 << 20
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: c.DialTimeout}
		c.Dial = d.DialContext
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.LogBudget.setDefaults()
}

// Server is a running sidecar. Its routes can be swapped while it serves.
type Server struct {
	cfg    Config
	ca     *CA
	tokens map[string]string

	state    atomic.Pointer[snapshot]
	reloadMu sync.Mutex
	seen     fileStat // the routes file as last read, good or bad

	transport *sentTransport // upstream requests
	// h1Transport speaks HTTP/1.1 only: for WebSocket upgrades, and for
	// an agent that speaks HTTP/1.1 (its request goes out as it came;
	// putting it on HTTP/2 cost the sidecar a fifth more CPU per upload,
	// and the upstream half again).
	h1Transport *sentTransport
	sent        sentLedger // requests sent upstream and not yet ended
	canaryOnce  sync.Once
	canaryDet   *detect.Detector // the canary alone: see canaryDetector
	handlers    inflight         // requests being handled, hijacked ones too

	proxy   *goproxy.ProxyHttpServer
	outer   *http.Server // the proxy port
	inner   *http.Server // intercepted TLS connections
	innerLn *chanListener
	tunnels sync.Map // *tls.Conn → *tunnel, until the inner server takes it

	selfMu sync.RWMutex
	self   []netip.AddrPort // where the proxy listens, resolved to concrete IPs

	denials   *logLimiter
	bodySlots chan struct{} // MaxBufferedBodies
	wsBytes   atomic.Int64  // WebSocket bytes charged (see websocket.go), against MaxWSBuffered

	git gitState // the git gate's folders, mirrors and turns

	reqFileMu sync.Mutex
	conns     sync.WaitGroup // hijacked work (handshakes, WebSockets)
	hijMu     sync.Mutex
	hijacked  map[net.Conn]struct{} // open WebSockets, closed when a drain times out
	closing   atomic.Bool
	startOnce sync.Once
}

// New loads the CA (creating it if absent) and the routes file, and returns
// a server ready to Serve. An invalid routes file is an error here: there
// are no old routes to keep.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.RoutesFile == "" {
		return nil, errors.New("creating the egress server: no routes file")
	}
	ca, err := LoadOrCreateCA(cfg.CADir, cfg.LeafCacheSize)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ca: ca, tokens: map[string]string{}, hijacked: map[net.Conn]struct{}{},
		bodySlots: make(chan struct{}, cfg.MaxBufferedBodies)}
	s.denials = newLogLimiter(cfg.LogBudget, s.writeAudit)
	for _, sec := range cfg.Secrets {
		s.tokens[sec.Name] = sec.Value
	}
	snap, st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.state.Store(snap)
	s.seen = st

	s.transport = s.newTransport(true)
	s.h1Transport = s.newTransport(false)

	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(io.Discard, "", 0)
	p.ConnectDial = nil // goproxy reads HTTPS_PROXY from the environment
	p.Tr = s.transport.Transport
	p.OnRequest().HandleConnectFunc(s.onConnect)
	s.proxy = p

	errLog := log.New(io.Discard, "", 0)
	s.outer = &http.Server{
		Handler:           s.counted(s.serveProxy),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	s.innerLn = newChanListener()
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.inner = &http.Server{
		Handler:           s.counted(s.serveTunnel),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
		Protocols:         protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: cfg.MaxStreams},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if t, ok := s.tunnels.LoadAndDelete(c); ok {
				return context.WithValue(ctx, tunnelKey{}, t)
			}
			return ctx
		},
	}
	return s, nil
}

// CA returns the bottle's CA certificate, which the agent must trust.
func (s *Server) CA() *x509.Certificate { return s.ca.cert }

func (s *Server) newTransport(h2 bool) *sentTransport {
	t := &http.Transport{
		Proxy:                  nil, // never an upstream proxy from the environment
		DialContext:            s.dialUpstream,
		TLSClientConfig:        &tls.Config{RootCAs: s.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    s.cfg.HandshakeTimeout,
		ResponseHeaderTimeout:  s.cfg.ResponseHeaderTimeout,
		IdleConnTimeout:        s.cfg.IdleTimeout,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32,
		DisableCompression:     true, // the agent's Accept-Encoding goes through as sent
		MaxResponseHeaderBytes: 1 << 20,
		ForceAttemptHTTP2:      h2,
	}
	if !h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &sentTransport{Transport: t, ledger: &s.sent}
}

// Serve accepts proxy connections on ln until ctx is cancelled, then stops
// accepting and drains requests in flight for up to DrainTimeout. It also
// watches the routes file.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.addSelf(ln.Addr())
	s.startOnce.Do(func() {
		go s.inner.Serve(s.innerLn) //nolint:errcheck // ends with Shutdown
	})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watch(wctx)

	errc := make(chan error, 1)
	go func() { errc <- s.outer.Serve(newLimitListener(ln, s.cfg.MaxConns, s.cfg.ConnWait)) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		defer cancel()
		return s.Shutdown(dctx)
	}
}

// Shutdown stops accepting connections and waits for requests in flight
// to finish, for three quarters of the time to ctx's deadline; then it
// closes what is left, and waits out the last quarter for the requests it
// cut to write their lines. A request sent upstream whose handler still
// has not ended then gets a line of its own: when Shutdown returns (by
// ctx's deadline), everything that reached an upstream is in the log, and
// the caller can close it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	finishBy := time.Now().Add(finishMin)
	if d, ok := ctx.Deadline(); ok {
		rest := time.Until(d)
		finishBy = d
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rest-rest/4)
		defer cancel()
	}
	errOuter := s.outer.Shutdown(ctx)
	s.innerLn.Close()
	errInner := s.inner.Shutdown(ctx)
	drained := errOuter == nil && errInner == nil
	select {
	case <-s.idle():
	case <-ctx.Done():
		drained = false
	}
	if !drained {
		s.closeAll()
	}
	s.finish(max(time.Until(finishBy), finishMin))
	if !drained {
		return fmt.Errorf("draining requests in flight: %w", context.DeadlineExceeded)
	}
	s.transport.CloseIdleConnections()
	s.h1Transport.CloseIdleConnections()
	return nil
}

// finishMin is the least time Shutdown gives the requests it cut to log
// how they ended (connections closed, they end in microseconds).
const finishMin = 100 * time.Millisecond

// closeAll closes every connection, hijacked ones (WebSockets) too: their
// handlers end, and log, as soon as their reads and writes fail.
func (s *Server) closeAll() {
	s.hijMu.Lock()
	for c := range s.hijacked {
		c.Close()
	}
	s.hijMu.Unlock()
	s.outer.Close()
	s.inner.Close()
}

// finish waits up to d for every handler to end (each writes its line),
// logs a line for each request still out upstream, then the summaries of
// thinned lines: the last lines of the log.
func (s *Server) finish(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.idle():
	case <-t.C:
	}
	snap := s.state.Load()
	for _, e := range s.sent.unfinished() {
		e.Path, e.Query = s.redact(snap, e.Path), s.redact(snap, e.Query)
		s.writeAudit(e)
	}
	s.flushDenials()
}

// idle is closed once no handler runs and no hijacked connection is
// open. Called when nothing new is accepted any more.
func (s *Server) idle() <-chan struct{} {
	c := make(chan struct{})
	go func() {
		s.conns.Wait()
		<-s.handlers.idle()
		close(c)
	}()
	return c
}

// flushDenials logs a summary of the lines the limiter thinned out.
func (s *Server) flushDenials() {
	if s.cfg.Audit == nil {
		return
	}
	for _, e := range s.denials.flush() {
		s.writeAudit(e)
	}
}

// track records an open hijacked connection (untrack with the returned
// func), so a drain that runs out of time can close it.
func (s *Server) track(c net.Conn) func() {
	s.hijMu.Lock()
	s.hijacked[c] = struct{}{}
	s.hijMu.Unlock()
	return func() {
		s.hijMu.Lock()
		delete(s.hijacked, c)
		s.hijMu.Unlock()
	}
}

func (s *Server) audit(e audit.Entry) {
	if s.cfg.Audit == nil {
		return
	}
	ok, summary := s.denials.admit(&e)
	if summary != nil {
		s.writeAudit(*summary)
	}
	if ok {
		s.writeAudit(e)
	}
}

func (s *Server) writeAudit(e audit.Entry) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.Write(e); err != nil {
		s.cfg.Logf("writing the audit log (nothing is forwarded until it works again): %v", err)
	}
}

// auditFailing reports whether the audit log cannot be written: then the
// sidecar forwards nothing, since it could not say what it forwarded.
// Each refusal's own line is the retry.
func (s *Server) auditFailing() bool {
	return s.cfg.Audit != nil && s.cfg.Audit.Failing()
}

// auditDownReason is what a request hears while the audit log fails.
const auditDownReason = "the audit log cannot be written; nothing is forwarded until it can"

// addSelf records the listener's address, expanding an unspecified IP to
// the machine's addresses, so that a request to the proxy's own port is
// recognised whichever address it names.
func (s *Server) addSelf(a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	list := []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	if ap.Addr().IsUnspecified() {
		list = append(list, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()),
			netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()))
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range addrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil {
					list = append(list, netip.AddrPortFrom(p.Addr().Unmap(), ap.Port()))
				}
			}
		}
	}
	s.selfMu.Lock()
	s.self = append(s.self, list...)
	s.selfMu.Unlock()
}

func (s *Server) isSelfAddr(ip netip.Addr, port int) bool {
	ip = ip.Unmap()
	s.selfMu.RLock()
	defer s.selfMu.RUnlock()
	for _, a := range s.self {
		if a.Addr() == ip && int(a.Port()) == port {
			return true
		}
	}
	return false
}

// isSelf reports whether host:port names the sidecar itself.
func (s *Server) isSelf(host string, port int) bool {
	if host == Hostname {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return s.isSelfAddr(ip, port)
	}
	return false
}
