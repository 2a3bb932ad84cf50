package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/routes"
)

// target is where a request goes: the CONNECT target for an intercepted
// request, the request's URL for a plain proxy request.
type target struct {
	host   string // canonical
	port   int
	scheme string
}

func (t target) hostport() string {
	h := t.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if (t.scheme == "https" && t.port == 443) || (t.scheme == "http" && t.port == 80) {
		return h
	}
	return h + ":" + strconv.Itoa(t.port)
}

// tunnel is an intercepted CONNECT, handed to the inner server with its
// TLS connection.
type tunnel struct {
	host   string
	port   int
	client string
}

type tunnelKey struct{}

// serveProxy is the proxy port's handler: CONNECT goes to goproxy (whose
// only CONNECT handler decides: reject, or hijack into interception),
// absolute-form requests are forwarded, origin-form ones are for the agent
// channel or refused.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	if s.auditFailing() && r.Method != http.MethodConnect {
		s.refuse(w, r, s.state.Load(), newEntry(r, "", time.Now()), http.StatusServiceUnavailable, audit.Deny,
			auditDownReason, "bb-egress: "+auditDownReason+"\n")
		return
	}
	if r.Method == http.MethodConnect {
		s.proxy.ServeHTTP(w, r)
		return
	}
	if !r.URL.IsAbs() {
		if strings.HasPrefix(r.URL.Path, "/_bb/") {
			s.serveAgent(w, r)
			return
		}
		s.refuse(w, r, s.state.Load(), newEntry(r, "", time.Now()), http.StatusBadRequest, audit.Deny,
			"not a proxy request", "bb-egress: this is the bottle's egress proxy; send requests through it (absolute URLs or CONNECT), or use http://"+Hostname+"/_bb/\n")
		return
	}
	scheme := strings.ToLower(r.URL.Scheme)
	if scheme != "http" && scheme != "https" {
		s.refuse(w, r, s.state.Load(), newEntry(r, "", time.Now()), http.StatusBadRequest, audit.Deny,
			"scheme "+scheme+" is not proxied", "bb-egress: only http and https URLs are proxied\n")
		return
	}
	host, port, err := routes.SplitHostPort(r.URL.Host, scheme)
	if err != nil || host == "" {
		s.refuse(w, r, s.state.Load(), newEntry(r, "", time.Now()), http.StatusBadRequest, audit.Deny,
			"bad host in URL", "bb-egress: the request's URL has no valid host\n")
		return
	}
	if s.isSelf(host, port) {
		s.serveAgent(w, r)
		return
	}
	s.forward(w, r, target{host: host, port: port, scheme: scheme})
}

// onConnect decides a CONNECT before anything is resolved or dialled.
// It answers every CONNECT: goproxy would tunnel an unanswered one blindly.
func (s *Server) onConnect(hostport string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	r := ctx.Req
	start := time.Now()
	snap := s.state.Load()
	e := newEntry(r, "", start)
	if s.auditFailing() {
		return s.rejectConnect(ctx, snap, e, http.StatusServiceUnavailable, audit.Deny, auditDownReason,
			"bb-egress: "+auditDownReason+"\n"), hostport
	}
	host, port, err := routes.SplitHostPort(hostport, "https")
	if err != nil || host == "" {
		return s.rejectConnect(ctx, snap, e, http.StatusBadRequest, audit.Deny, "bad CONNECT target",
			"bb-egress: bad CONNECT target\n"), hostport
	}
	e.Host = host
	if s.isSelf(host, port) {
		return s.rejectConnect(ctx, snap, e, http.StatusForbidden, audit.Deny, "CONNECT to the sidecar itself",
			"bb-egress: the sidecar is not reachable through CONNECT; use http://"+Hostname+"/_bb/\n"), hostport
	}
	if hit, ok := snap.find(hostport); ok {
		return s.rejectConnect(ctx, snap, blockEntry(e, hit), http.StatusForbidden, audit.Block,
			"secret "+hit.Secret+" in the CONNECT target", blockBody("the CONNECT target", hit)), hostport
	}
	rt := snap.table.HostAllowed(host, port)
	if rt == nil {
		reason := fmt.Sprintf("host %s port %d is not in the bottle's routes", host, port)
		return s.rejectConnect(ctx, snap, e, http.StatusForbidden, audit.Deny, reason, denyHostBody(host, port)), hostport
	}
	e.Route, e.Decision, e.Status, e.Reason = rt.String(), audit.Allow, http.StatusOK, "tunnel intercepted"
	e.DurationMS = ms(time.Since(start))
	s.audit(e)
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack,
		Hijack: func(req *http.Request, c net.Conn, _ *goproxy.ProxyCtx) { s.intercept(req, c, host, port) }}, hostport
}

func (s *Server) rejectConnect(ctx *goproxy.ProxyCtx, snap *snapshot, e audit.Entry, status int, decision, reason, body string) *goproxy.ConnectAction {
	body = s.redact(snap, body)
	e.Status, e.Decision, e.Reason = status, decision, s.redact(snap, reason)
	e.Host = s.redact(snap, e.Host)
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
	ctx.Resp = &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Connection": {"close"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Close: true,
		Request: ctx.Req,
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectReject}
}

// intercept terminates the agent's TLS with a leaf for the CONNECT target
// and hands the connection to the inner server, which bounds header reads
// and idle time and speaks HTTP/2 when the agent offers it.
func (s *Server) intercept(r *http.Request, c net.Conn, host string, port int) {
	if s.closing.Load() {
		c.Close()
		return
	}
	s.conns.Add(1)
	defer s.conns.Done()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	tc := tls.Server(c, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The certificate is for the CONNECT target whatever the SNI
			// says: the upstream is dialled by that name only.
			return s.ca.Leaf(host)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.cfg.Logf("TLS handshake with %s for %s failed (does the agent trust the bottle's CA?): %v", r.RemoteAddr, host, err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	s.tunnels.Store(net.Conn(tc), &tunnel{host: host, port: port, client: r.RemoteAddr})
	if !s.innerLn.push(tc) {
		s.tunnels.Delete(net.Conn(tc))
		tc.Close()
	}
}

// serveTunnel handles one request inside an intercepted tunnel. Its Host
// must be the CONNECT target: a tunnel to an allowed host cannot carry
// requests for another (domain fronting).
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request) {
	tn, ok := r.Context().Value(tunnelKey{}).(*tunnel)
	if !ok {
		http.Error(w, "bb-egress: no tunnel", http.StatusInternalServerError)
		return
	}
	r.RemoteAddr = tn.client
	if s.auditFailing() {
		s.refuse(w, r, s.state.Load(), newEntry(r, tn.host, time.Now()), http.StatusServiceUnavailable, audit.Deny,
			auditDownReason, "bb-egress: "+auditDownReason+"\n")
		return
	}
	if r.Host != "" {
		hh, hp, err := routes.SplitHostPort(r.Host, "https")
		_, _, perr := net.SplitHostPort(r.Host)
		if err != nil || hh != tn.host || (perr == nil && hp != tn.port) {
			snap := s.state.Load()
			e := newEntry(r, tn.host, time.Now())
			reason := fmt.Sprintf("Host %q does not match the tunnel's target %s (domain fronting is refused)", r.Host, tn.host)
			s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
			return
		}
	}
	s.forward(w, r, target{host: tn.host, port: tn.port, scheme: "https"})
}

func newEntry(r *http.Request, host string, start time.Time) audit.Entry {
	p := ""
	if r.URL != nil {
		p = r.URL.Path
	}
	q := ""
	if r.URL != nil && r.Method != http.MethodConnect {
		q = r.URL.RawQuery
	}
	return audit.Entry{Time: start.UTC(), Method: r.Method, Host: host, Path: p, Query: q, Client: r.RemoteAddr}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func denyHostBody(host string, port int) string {
	hp := host
	if port != 443 && port != 80 {
		hp = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return fmt.Sprintf("bb-egress: host %s is not in this bottle's routes\n"+
		"ask for it: POST http://%s/_bb/requests {\"host\":%q,\"why\":\"...\"}, or on the host: bb-egress allow SLUG %s\n",
		hp, Hostname, host, host)
}

// refuse answers a request that is not forwarded, and logs it. Every
// string that reaches the log or the agent passes the detector first.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, status int, decision, reason, body string) {
	e.Host = s.redact(snap, e.Host)
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.Status, e.Decision, e.Reason = status, decision, s.redact(snap, reason)
	e.DurationMS = ms(time.Since(e.Time))
	body = s.redact(snap, body)
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
	s.audit(e)
}

// redact replaces a string that carries a secret (in any encoding the
// detector knows) with a note naming the secret.
func (s *Server) redact(snap *snapshot, str string) string {
	if snap == nil || str == "" {
		return str
	}
	if hit, ok := snap.find(str); ok {
		return "[redacted: carries " + hit.Secret + "]"
	}
	return str
}

// refusedDial is a dial the sidecar refused after resolving: the
// destination is loopback, link-local, the proxy itself...
type refusedDial struct {
	host, why string
}

func (e *refusedDial) Error() string { return e.host + " " + e.why }

// dialUpstream resolves host, refuses addresses the bottle must not
// reach, and dials the checked IP itself, so a second resolution cannot
// rebind the name to somewhere else.
func (s *Server) dialUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	literal := false
	if ip, err := netip.ParseAddr(host); err == nil {
		ips, literal = []netip.Addr{ip}, true
	} else {
		ips, err = s.cfg.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
	}
	snap := s.state.Load()
	var firstErr error
	for _, ip := range ips {
		ip = ip.Unmap()
		if s.isSelfAddr(ip, port) {
			firstErr = &refusedDial{host, "is the sidecar itself"}
			continue
		}
		if class, what := classify(ip); class != reachable && !(literal && snap.literalIPs[ip]) &&
			(class == loopbackClass && !s.cfg.AllowLoopback || class == privateClass && !s.cfg.AllowPrivate) {
			if firstErr == nil {
				firstErr = &refusedDial{host, fmt.Sprintf("resolves to %s, %s", ip, what)}
			}
			continue
		}
		c, err := s.cfg.Dial(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil || isRefused(firstErr) {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("resolving %s: no addresses", host)
	}
	return nil, firstErr
}

func isRefused(err error) bool {
	var rd *refusedDial
	return errors.As(err, &rd)
}

// Classes of destination addresses.
const (
	reachable     = iota
	loopbackClass // reached only with AllowLoopback, or a route naming the IP
	privateClass  // reached only with AllowPrivate, or a route naming the IP
)

var (
	cgnat      = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT; Alibaba's metadata is 100.100.100.200
	benchmark  = netip.MustParsePrefix("198.18.0.0/15")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	teredo     = netip.MustParsePrefix("2001::/32")
)

// classify says whether a bottle may reach ip (already unmapped) after a
// name resolved to it, and if not, what it is. Loopback and link-local
// (cloud metadata) come first; then private networks — the Docker host
// and its other containers, a VPC's neighbours, AWS's IPv6 metadata at
// fd00:ec2::254 — and IPv6 addresses that embed a refused IPv4 address
// (NAT64, 6to4, Teredo, IPv4-compatible), which a gateway or the kernel
// would take to that IPv4 address.
func classify(ip netip.Addr) (int, string) {
	if special(ip) {
		return loopbackClass, "a loopback, link-local, unspecified or multicast address"
	}
	if ip.Is6() {
		b := ip.As16()
		var v4 netip.Addr
		var via string
		switch {
		case nat64.Contains(ip):
			v4, via = netip.AddrFrom4([4]byte(b[12:16])), "NAT64"
		case nat64Local.Contains(ip):
			return privateClass, "a local-use NAT64 address"
		case sixToFour.Contains(ip):
			v4, via = netip.AddrFrom4([4]byte(b[2:6])), "6to4"
		case teredo.Contains(ip):
			v4, via = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo"
		case [12]byte(b[:12]) == [12]byte{}:
			v4, via = netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible"
		}
		if v4.IsValid() {
			if class, what := classify(v4); class != reachable {
				return class, via + " for " + v4.String() + ", " + what
			}
		}
	}
	if ip.IsPrivate() || cgnat.Contains(ip) || benchmark.Contains(ip) {
		return privateClass, "a private address (RFC 1918, unique local, carrier-grade NAT or benchmarking)"
	}
	return reachable, ""
}

// special reports addresses a bottle reaches only when a route names them
// literally: loopback, link-local (cloud metadata lives there),
// unspecified (0.0.0.0 is loopback on Linux), multicast, broadcast.
func special(ip netip.Addr) bool {
	if ip.Is4() && ip.As4()[0] == 0 {
		return true
	}
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
