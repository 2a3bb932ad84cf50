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
	"net/url"
	"slices"
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
	// denied: the CONNECT's host is not in the routes, and the tunnel was
	// intercepted only to answer each of its requests 403 with the reason,
	// which a client shows for a 403 inside TLS and not for a refused
	// CONNECT. Nothing in it is resolved or sent.
	denied bool
}

type tunnelKey struct{}

// serveProxy is the proxy port's handler: CONNECT goes to goproxy (whose
// only CONNECT handler decides: reject, or hijack into interception),
// absolute-form requests are forwarded, origin-form ones are for the agent
// channel or refused.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		s.proxy.ServeHTTP(w, r)
		return
	}
	f := s.newFlow(w, r, nil)
	r = f.r
	if ref := auditWorks(f); ref != nil {
		f.refuse(*ref)
		return
	}
	if !r.URL.IsAbs() {
		if strings.HasPrefix(r.URL.Path, "/_bb/") {
			s.serveAgent(w, r)
			return
		}
		f.refuse(refusal{status: http.StatusBadRequest, decision: audit.Deny, reason: "not a proxy request",
			body: "bb-egress: this is the bottle's egress proxy; send requests through it (absolute URLs or CONNECT), or use http://" + Hostname + "/_bb/\n"})
		return
	}
	scheme := strings.ToLower(r.URL.Scheme)
	if scheme != "http" && scheme != "https" {
		f.refuse(refusal{status: http.StatusBadRequest, decision: audit.Deny, reason: "scheme " + scheme + " is not proxied",
			body: "bb-egress: only http and https URLs are proxied\n"})
		return
	}
	host, port, err := routes.SplitHostPort(r.URL.Host, scheme)
	if err != nil || host == "" {
		f.refuse(refusal{status: http.StatusBadRequest, decision: audit.Deny, reason: "bad host in URL",
			body: "bb-egress: the request's URL has no valid host\n"})
		return
	}
	if s.isSelf(host, port) {
		s.serveAgent(w, r)
		return
	}
	f.aim(target{host: host, port: port, scheme: scheme})
	s.forward(f)
}

// onConnect decides a CONNECT before anything is resolved or dialled.
// It answers every CONNECT: goproxy would tunnel an unanswered one blindly.
// A refusal goes through the CONNECT's flow, as any other; a host that is
// merely not in the routes is intercepted instead when the port is one
// that speaks TLS here, so that its 403 can be read (see tunnel.denied).
func (s *Server) onConnect(hostport string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	cw := &connectWriter{}
	f := s.newFlow(cw, ctx.Req, nil)
	f.bodyTaken = true // a CONNECT has none
	reject := func(ref *refusal) (*goproxy.ConnectAction, string) {
		f.refuse(*ref)
		ctx.Resp = cw.response(ctx.Req)
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, hostport
	}
	if ref := auditWorks(f); ref != nil {
		return reject(ref)
	}
	host, port, err := routes.SplitHostPort(hostport, "https")
	if err != nil || host == "" {
		return reject(&refusal{status: http.StatusBadRequest, decision: audit.Deny, reason: "bad CONNECT target",
			body: "bb-egress: bad CONNECT target\n"})
	}
	f.e.Host = host
	if s.isSelf(host, port) {
		return reject(&refusal{status: http.StatusForbidden, decision: audit.Deny, reason: "CONNECT to the sidecar itself",
			body: "bb-egress: the sidecar is not reachable through CONNECT; use http://" + Hostname + "/_bb/\n"})
	}
	if ref := cleanHead(f); ref != nil {
		return reject(ref)
	}
	denied := false
	rt := f.snap.table.HostAllowed(host, port)
	if rt == nil {
		reason := fmt.Sprintf("host %s port %d is not in the bottle's routes", host, port)
		if !s.speaksTLS(f.snap, port) || !routes.ValidHost(host) || strings.Contains(host, "*") {
			return reject(&refusal{status: http.StatusForbidden, decision: audit.Deny, reason: reason, body: s.denyHostBody(host, port)})
		}
		denied = true
		f.e.Decision, f.e.Reason = audit.Deny, reason+": tunnel intercepted only to answer its requests 403 (nothing in it is sent)"
	} else {
		f.e.Route, f.e.Decision, f.e.Reason = rt.String(), audit.Allow, "tunnel intercepted"
	}
	f.e.Status = http.StatusOK
	f.e.DurationMS = ms(time.Since(f.e.Time))
	s.audit(f.e)
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack,
		Hijack: func(req *http.Request, c net.Conn, _ *goproxy.ProxyCtx) {
			s.intercept(req, c, &tunnel{host: host, port: port, client: req.RemoteAddr, denied: denied})
		}}, hostport
}

// speaksTLS reports whether a CONNECT to port of a denied host is taken
// for HTTPS, and so intercepted to show its denial (when the host is a
// name or an address a certificate can carry): 443, or a port a route
// lists other than 80. Elsewhere (80 for ws://, 22, 25, 5432...) the
// client may speak anything, and a TLS server would only confuse it: the
// CONNECT itself is refused.
func (s *Server) speaksTLS(snap *snapshot, port int) bool {
	switch port {
	case 443:
		return true
	case 80:
		return false
	}
	for _, rt := range snap.table.Routes() {
		if slices.Contains(rt.Ports, port) {
			return true
		}
	}
	return false
}

// intercept terminates the agent's TLS with a leaf for the CONNECT target
// and hands the connection to the inner server, which bounds header reads
// and idle time and speaks HTTP/2 when the agent offers it.
func (s *Server) intercept(r *http.Request, c net.Conn, tn *tunnel) {
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
			return s.ca.Leaf(tn.host)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.cfg.Logf("TLS handshake with %s for %s failed (does the agent trust the bottle's CA?): %v", r.RemoteAddr, tn.host, err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	s.tunnels.Store(net.Conn(tc), tn)
	if !s.innerLn.push(tc) {
		s.tunnels.Delete(net.Conn(tc))
		tc.Close()
	}
}

// serveTunnel handles one request inside an intercepted tunnel.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request) {
	tn, ok := r.Context().Value(tunnelKey{}).(*tunnel)
	if !ok {
		http.Error(w, "bb-egress: no tunnel", http.StatusInternalServerError)
		return
	}
	r.RemoteAddr = tn.client
	f := s.newFlow(w, r, tn)
	f.aim(target{host: tn.host, port: tn.port, scheme: "https"})
	s.forward(f)
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

// slug names the bottle in what the agent is told to ask on the host.
func (s *Server) slug() string {
	if s.cfg.Slug == "" {
		return "<the bottle's slug>"
	}
	return s.cfg.Slug
}

// denyHostBody is the 403 of a host the routes do not have: what was
// denied, and how to ask for it.
func (s *Server) denyHostBody(host string, port int) string {
	hp := host
	if port != 443 && port != 80 {
		hp = net.JoinHostPort(host, strconv.Itoa(port))
	}
	slug := s.slug()
	return fmt.Sprintf("bb-egress: host %s is not in this bottle's routes\n"+
		"ask for it: POST http://%s/_bb/requests {\"host\":%q,\"why\":\"...\"}, or on the host: bb-egress allow %s %s\n",
		hp, Hostname, host, slug, host)
}

// refuse answers a request that is not forwarded, and logs it, through
// the request's flow: see flow.refuse.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, status int, decision, reason, body string) {
	s.flowFor(w, r, snap, e).refuse(refusal{status: status, decision: decision, reason: reason, body: body})
}

// redact replaces a string that carries a secret (in any encoding the
// detector knows) with a note naming the secret.
func (s *Server) redact(snap *snapshot, str string) string {
	if snap == nil || str == "" {
		return str
	}
	// As deep as scanHead looks: a path or query whose secret the scan
	// found escaped three times over must not keep it in the log.
	for i, v := 0, str; i < 4; i++ {
		if hit, ok := snap.find(v); ok {
			return "[redacted: carries " + hit.Secret + "]"
		}
		if !strings.ContainsAny(v, "%+") {
			break
		}
		q, err := url.QueryUnescape(v)
		if err != nil {
			if q, err = url.PathUnescape(v); err != nil {
				break
			}
		}
		if q == v {
			break
		}
		v = q
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
