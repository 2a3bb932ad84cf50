package egress

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/routes"
)

// rule is one admission check of a request: nil lets it on, a refusal
// answers it (through the flow, which scans what it refuses).
type rule struct {
	name  string
	check func(*flow) *refusal
}

// admission is what a request must pass, in order, before its body is read
// and it goes upstream (the git gate comes after, then the body's scan).
var admission = []rule{
	{"the audit log works", auditWorks},
	{"Host is the tunnel's", hostIsTunnels},
	{"the tunnel's host is allowed", tunnelAllowed},
	{"no CONNECT inside", noNestedConnect},
	{"no TRACE or TRACK", noTrace},
	{"a route allows it", routeAllows},
	{"no secret in URL or headers", cleanHead},
	{"the method as the route spells it", exactMethod},
	{"no method override in the query", noQueryOverride},
	{"no token over plain http", tokenOverTLS},
	{"no path trick on a route with paths", noPathTrick},
	{"upgrades only to WebSocket, where the route says so", upgrades},
}

func auditWorks(f *flow) *refusal {
	if f.s.auditFailing() {
		return deny(http.StatusServiceUnavailable, auditDownReason)
	}
	return nil
}

// hostIsTunnels: a tunnel to an allowed host cannot carry requests for
// another (domain fronting).
func hostIsTunnels(f *flow) *refusal {
	tn, r := f.tn, f.r
	if tn == nil || r.Host == "" {
		return nil
	}
	hh, hp, err := routes.SplitHostPort(r.Host, "https")
	_, _, perr := net.SplitHostPort(r.Host)
	if err != nil || hh != tn.host || (perr == nil && hp != tn.port) {
		return deny(http.StatusForbidden, fmt.Sprintf("Host %q does not match the tunnel's target %s (domain fronting is refused)", r.Host, tn.host))
	}
	return nil
}

// tunnelAllowed: a tunnel to a denied host was intercepted only to say so
// in a 403 the agent can read; whatever the routes say by now, nothing in
// it is ever sent.
func tunnelAllowed(f *flow) *refusal {
	if f.tn == nil || !f.tn.denied {
		return nil
	}
	return &refusal{status: http.StatusForbidden, decision: audit.Deny,
		reason: fmt.Sprintf("host %s port %d is not in the bottle's routes", f.tn.host, f.tn.port),
		body:   f.s.denyHostBody(f.tn.host, f.tn.port)}
}

// noNestedConnect: a CONNECT inside an intercepted tunnel (or HTTP/2's
// extended CONNECT) would open a second, unscanned tunnel.
func noNestedConnect(f *flow) *refusal {
	if f.r.Method == http.MethodConnect {
		return deny(http.StatusMethodNotAllowed, "CONNECT inside a tunnel is refused")
	}
	return nil
}

// noTrace: the upstream answers with the request as it received it, with
// the token the sidecar injected. In any case: an upstream may upper-case
// a method.
func noTrace(f *flow) *refusal {
	if strings.EqualFold(f.r.Method, "TRACE") || strings.EqualFold(f.r.Method, "TRACK") {
		return deny(http.StatusMethodNotAllowed, f.r.Method+" is refused: its answer echoes the request, injected credentials included")
	}
	return nil
}

func routeAllows(f *flow) *refusal {
	if f.rt != nil {
		f.e.Route = f.rt.String()
		return nil
	}
	t := f.t
	ref := deny(http.StatusForbidden, f.why)
	if f.snap.table.HostAllowed(t.host, t.port) == nil {
		ref.body = f.s.denyHostBody(t.host, t.port)
	} else {
		ref.body = "bb-egress: " + f.why + "\n" + fmt.Sprintf("ask for it: POST http://%s/_bb/requests {\"host\":%q,\"methods\":[%q],\"paths\":[...],\"why\":\"...\"}\n", Hostname, t.host, f.r.Method)
	}
	return ref
}

func cleanHead(f *flow) *refusal {
	if f.det == nil || f.headScanned {
		return nil
	}
	f.headScanned = true
	if hit, ok := scanHead(f.det, f.r); ok {
		return &refusal{status: http.StatusForbidden, decision: audit.Block, hit: &hit, where: "the request's URL or headers"}
	}
	return nil
}

// exactMethod: methods are case-sensitive (RFC 9110 section 9.1), and
// upstreams differ on a lower-case one: some take "get" for GET, some for
// another method their framework routes elsewhere (a catch-all handler).
// The table matches methods folding case; on a route that lists methods,
// only the spelling it lists goes out. A later route of the host that
// allows the method as written still may.
func exactMethod(f *flow) *refusal {
	if len(f.rt.Methods) == 0 || slices.Contains(f.rt.Methods, f.r.Method) {
		return nil
	}
	for _, rt := range f.snap.table.Routes() {
		if rt.Git == nil && rt.MatchHost(f.t.host) && rt.MatchPort(f.t.port) && rt.MatchPath(f.r.URL.Path) &&
			(len(rt.Methods) == 0 || slices.Contains(rt.Methods, f.r.Method)) {
			f.rt, f.det = &rt, f.snap.detectorFor(&rt)
			f.e.Route = rt.String()
			f.headScanned = false // another route, another placeholder of its own
			return cleanHead(f)
		}
	}
	return deny(http.StatusForbidden, fmt.Sprintf("method %q is not allowed by route %s: methods are case-sensitive, send one of %s as written",
		f.r.Method, f.rt, strings.Join(f.rt.Methods, ", ")))
}

// noQueryOverride: a query key _method (Express's method-override reads it
// from the query; Rails, Laravel and Symfony from a form body, which is not
// looked into) or named like an override header makes some frameworks take
// another method. On a route that lists methods the request is refused: a
// query cannot be dropped from as a header can without changing it.
func noQueryOverride(f *flow) *refusal {
	if len(f.rt.Methods) == 0 || f.r.URL.RawQuery == "" {
		return nil
	}
	for _, kv := range strings.FieldsFunc(f.r.URL.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		k, _, _ := strings.Cut(kv, "=")
		if u, err := url.QueryUnescape(k); err == nil {
			k = u
		}
		if strings.EqualFold(k, "_method") || overrideKind(k) == overridesMethod {
			return deny(http.StatusForbidden, fmt.Sprintf("the query's %q asks for another method than %s, which route %s judged", k, f.r.Method, f.rt))
		}
	}
	return nil
}

// tokenOverTLS: the credential would cross the network in clear text.
func tokenOverTLS(f *flow) *refusal {
	if in := f.rt.Inject; in != nil && f.t.scheme != "https" {
		return deny(http.StatusForbidden, fmt.Sprintf("route %s injects the token %s, which is never sent over plain http: use https://", f.rt, in.Token))
	}
	return nil
}

func noPathTrick(f *flow) *refusal {
	if len(f.rt.Paths) == 0 {
		return nil
	}
	if trick := pathTrick(f.r.URL.EscapedPath(), f.r.URL.Path); trick != "" {
		return deny(http.StatusForbidden, "the path has "+trick+", which the route's path rules cannot judge")
	}
	return nil
}

func upgrades(f *flow) *refusal {
	h := f.r.Header
	f.ws = isWebSocket(h)
	if f.ws && !f.rt.Websocket {
		return deny(http.StatusForbidden, "WebSocket upgrade refused: the route does not say websocket: true")
	}
	if !f.ws && h.Get("Upgrade") != "" {
		return deny(http.StatusForbidden, "protocol upgrade to "+h.Get("Upgrade")+" refused")
	}
	return nil
}

// Override headers tell a framework or a proxy in front of the upstream to
// take another method, path, URL, prefix or host than the request line's
// and Host. The sidecar judged those; an override would undo the judgement.
// Names are compared case-blind with '_' as '-' (CGI, PHP and some proxies
// read X_ORIGINAL_URL as X-Original-URL). Where they come from:
//
//   - X-HTTP-Method-Override: Google APIs, Express method-override, Rack,
//     Slim, Plack, WAI; X-HTTP-Method: OData, Plack's option; X-Method-Override:
//     several REST stacks; X-Original-Method: nginx auth_request setups and
//     ingress-nginx; X-Forwarded-Method: Traefik ForwardAuth.
//   - X-Original-URL, X-Rewrite-URL: IIS URL Rewrite (Symfony read them until
//     CVE-2018-14773); X-Original-URI: nginx auth_request; X-Forwarded-Uri:
//     Traefik ForwardAuth; X-Envoy-Original-Path, X-Envoy-Original-URL: Envoy
//     after a prefix rewrite; X-Forwarded-Prefix: Spring, ASP.NET Core,
//     Werkzeug ProxyFix, Traefik; X-Forwarded-Path, X-Script-Name: WSGI
//     reverse-proxy recipes (SCRIPT_NAME).
//   - X-Forwarded-Host, X-Forwarded-Server, X-Host, X-Original-Host,
//     X-HTTP-Host-Override: Spring, Symfony, Werkzeug, gorilla/handlers,
//     Django (USE_X_FORWARDED_HOST); Forwarded (RFC 7239 host= and proto=);
//     X-Envoy-Original-Dst-Host: Envoy's original-destination cluster routes
//     to the address it names.
//
// Whole families go, not only these names: every X-Original-* and
// X-Envoy-Original-* header, and every X-HTTP-Method* one.
var (
	methodOverrides = []string{"x-http-method", "x-method-override", "x-forwarded-method"}
	pathOverrides   = []string{"x-rewrite-url", "x-forwarded-uri", "x-forwarded-prefix", "x-forwarded-path", "x-script-name"}
	hostOverrides   = []string{"x-forwarded-host", "x-forwarded-server", "x-host", "x-http-host-override", "forwarded"}
)

// What an override header overrides.
const (
	overridesNone = iota
	overridesMethod
	overridesPath
	overridesHost
)

// overrideKind says what header name k overrides, if anything. It runs on
// every header of every request: it folds the name into a buffer on the
// stack, not a new string.
func overrideKind(k string) int {
	if len(k) < 5 || len(k) > 128 || !(k[0] == 'X' || k[0] == 'x' || k[0] == 'F' || k[0] == 'f') {
		if len(k) > 128 && (k[0] == 'X' || k[0] == 'x') {
			return overridesPath // no override has a name this long: whatever it is, it does not go
		}
		return overridesNone
	}
	var buf [128]byte
	n := buf[:len(k)]
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		n[i] = c
	}
	has := func(names []string) bool {
		for _, name := range names {
			if string(n) == name {
				return true
			}
		}
		return false
	}
	pre := func(p string) bool { return len(n) >= len(p) && string(n[:len(p)]) == p }
	switch {
	case pre("x-http-method"), has(methodOverrides), string(n) == "x-original-method":
		return overridesMethod
	case pre("x-original-host"), pre("x-envoy-original-dst"), has(hostOverrides):
		return overridesHost
	case pre("x-original-"), pre("x-envoy-original-"), has(pathOverrides):
		return overridesPath
	}
	return overridesNone
}

// dropOverrides deletes from h the override headers that would undo what
// rt restricts, and returns their names. Every route restricts the host, so
// host overrides always go; method and path overrides go where the route
// lists methods or paths (elsewhere any method and path are allowed anyway,
// and Google's client libraries send X-HTTP-Method-Override: GET on a POST
// of a long query).
func dropOverrides(h http.Header, rt *routes.Route) []string {
	restricted := len(rt.Methods) > 0 || len(rt.Paths) > 0
	var dropped []string
	for k := range h {
		switch overrideKind(k) {
		case overridesNone:
			continue
		case overridesMethod, overridesPath:
			if !restricted {
				continue
			}
		}
		delete(h, k)
		dropped = append(dropped, k)
	}
	slices.Sort(dropped)
	return dropped
}
