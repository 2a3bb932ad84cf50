// Package routes holds the egress allow-list: the route schema shared by the
// manifest, the plan and the sidecar's routes file, its validation, and the
// matching of a request against it.
package routes

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Route allows requests to one host (or a *. wildcard of subdomains),
// optionally narrowed to ports, path prefixes and methods, and optionally
// injecting a credential.
type Route struct {
	Host      string   `yaml:"host" json:"host"`
	Ports     []int    `yaml:"ports,omitempty" json:"ports,omitempty"`
	Paths     []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	Methods   []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	Inject    *Inject  `yaml:"inject,omitempty" json:"inject,omitempty"`
	Websocket bool     `yaml:"websocket,omitempty" json:"websocket,omitempty"`
	// Git puts the host behind the git gate (see Git): its git paths are
	// the gate's, and its other paths need Paths (none when absent).
	Git *Git `yaml:"git,omitempty" json:"git,omitempty"`
}

// Clone returns a deep copy of r.
func (r Route) Clone() Route {
	r.Ports = append([]int(nil), r.Ports...)
	r.Paths = append([]string(nil), r.Paths...)
	r.Methods = append([]string(nil), r.Methods...)
	if r.Inject != nil {
		in := *r.Inject
		r.Inject = &in
	}
	if r.Git != nil {
		g := Git{Repos: append([]string(nil), r.Git.Repos...), Push: append([]string(nil), r.Git.Push...)}
		r.Git = &g
	}
	return r
}

// Inject sets Header on the route's requests to Format with {token}
// replaced by the sidecar's EGRESS_TOKEN_<Token>, and {basic:USER} by the
// base64 of USER:<token>: "Basic {basic:x-access-token}" is HTTP Basic with
// the token as password, as git over HTTPS on GitHub and GitLab takes it.
// Placeholder, when set, is the token-shaped stand-in the agent holds
// instead: it may be sent on this route only, and is blocked anywhere else.
type Inject struct {
	Header      string `yaml:"header" json:"header"`
	Token       string `yaml:"token" json:"token"`
	Format      string `yaml:"format,omitempty" json:"format,omitempty"`
	Placeholder string `yaml:"placeholder,omitempty" json:"placeholder,omitempty"`
}

// DefaultFormat is the injected value when a route names no format.
const DefaultFormat = "{token}"

// Value returns the header value for the token value v.
func (in *Inject) Value(v string) string {
	f := in.Format
	if f == "" {
		f = DefaultFormat
	}
	f = basicRE.ReplaceAllStringFunc(f, func(m string) string {
		user := m[len("{basic:") : len(m)-1]
		return base64.StdEncoding.EncodeToString([]byte(user + ":" + v))
	})
	return strings.ReplaceAll(f, "{token}", v)
}

// basicRE finds {basic:USER} in a format: USER is what HTTP Basic allows
// in a user-id (RFC 7617: no ":"), printable ASCII without "{" or "}".
var basicRE = regexp.MustCompile(`\{basic:[!-9;-z|~]+\}`)

// String names the route in logs and messages: its host and, if any, its
// path prefixes.
func (r *Route) String() string {
	if len(r.Paths) == 0 {
		return r.Host
	}
	return r.Host + strings.Join(r.Paths, ",")
}

var (
	labelRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	tokenNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	methodRE    = regexp.MustCompile(`^[A-Z]+$`)
	headerRE    = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
)

// ValidTokenName reports whether name can be a token's NAME (it becomes part
// of the variable EGRESS_TOKEN_<NAME>).
func ValidTokenName(name string) bool { return tokenNameRE.MatchString(name) }

// FieldError is a validation error about one field of one route; Field is
// the path below the route ("host", "inject.token", "paths[1]").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidHost reports whether h is a lower-case host name, a *. wildcard of
// one, or an IP literal.
func ValidHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	name := strings.TrimPrefix(h, "*.")
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	// No top-level domain is all digits. A name like 127.1 or *.0.0.1 is an
	// IP address in disguise (inet_aton reads 127.1 as 127.0.0.1): refused,
	// so only a literal IP can name an address.
	if allDigits(labels[len(labels)-1]) {
		return false
	}
	// A wildcard of a top-level name (*.com) would allow half the internet.
	return !strings.HasPrefix(h, "*.") || len(labels) >= 2
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Validate checks one route. It returns a *FieldError.
func (r *Route) Validate() error {
	if r.Host == "" {
		return &FieldError{"host", "is required"}
	}
	if r.Host != strings.ToLower(r.Host) {
		return &FieldError{"host", fmt.Sprintf("%q must be lower case", r.Host)}
	}
	if !ValidHost(r.Host) {
		return &FieldError{"host", fmt.Sprintf("%q is not a host name, a *. wildcard or an IP address", r.Host)}
	}
	for i, p := range r.Ports {
		if p < 1 || p > 65535 {
			return &FieldError{fmt.Sprintf("ports[%d]", i), fmt.Sprintf("%d is not a port", p)}
		}
	}
	for i, p := range r.Paths {
		if !strings.HasPrefix(p, "/") {
			return &FieldError{fmt.Sprintf("paths[%d]", i), fmt.Sprintf("%q must start with /", p)}
		}
		if cleanPath(p) != p {
			return &FieldError{fmt.Sprintf("paths[%d]", i), fmt.Sprintf("%q is not a clean path (no //, . or .. segments)", p)}
		}
	}
	for i, m := range r.Methods {
		if !methodRE.MatchString(m) {
			return &FieldError{fmt.Sprintf("methods[%d]", i), fmt.Sprintf("%q is not an upper-case HTTP method", m)}
		}
	}
	if in := r.Inject; in != nil {
		if !headerRE.MatchString(in.Header) {
			return &FieldError{"inject.header", fmt.Sprintf("%q is not a header name", in.Header)}
		}
		if !ValidTokenName(in.Token) {
			return &FieldError{"inject.token", fmt.Sprintf("%q is not a token NAME (upper case, digits, _)", in.Token)}
		}
		// A wildcard would hand the credential to any subdomain the agent
		// names, user-content hosts among them (*.github.io, buckets).
		if strings.HasPrefix(r.Host, "*.") {
			return &FieldError{"inject.token", "a wildcard route cannot inject a token: name the host exactly"}
		}
		if in.Format != "" && !strings.Contains(in.Format, "{token}") && !basicRE.MatchString(in.Format) {
			if strings.Contains(in.Format, "{basic:") {
				return &FieldError{"inject.format", fmt.Sprintf("%q: {basic:USER} needs a USER of printable characters without ':', '{' or '}'", in.Format)}
			}
			return &FieldError{"inject.format", fmt.Sprintf("%q does not contain {token} or {basic:USER}", in.Format)}
		}
		if strings.ContainsAny(in.Format, "\r\n") {
			return &FieldError{"inject.format", "must not contain a line break"}
		}
		if in.Placeholder != "" && len(in.Placeholder) < 8 {
			return &FieldError{"inject.placeholder", "must be at least 8 characters"}
		}
	}
	if r.Git != nil {
		return r.validateGit()
	}
	return nil
}

// ValidateAll checks every route and returns the first error, naming the
// route's index as "routes[i].field".
func ValidateAll(rs []Route) error {
	for i := range rs {
		if err := rs[i].Validate(); err != nil {
			fe := err.(*FieldError)
			return &FieldError{Field: fmt.Sprintf("[%d].%s", i, fe.Field), Msg: fe.Msg}
		}
	}
	return CheckGitHosts(rs)
}

// CanonicalHost lower-cases h and strips a trailing dot and brackets, so
// that API.Example.COM. and api.example.com are one host.
func CanonicalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// MatchHost reports whether the route's host pattern covers host (already
// canonical).
func (r *Route) MatchHost(host string) bool {
	if strings.HasPrefix(r.Host, "*.") {
		// A wildcard names subdomains, never addresses: *.0.0.1 must not
		// cover 127.0.0.1.
		if _, err := netip.ParseAddr(host); err == nil {
			return false
		}
		suffix := r.Host[1:] // ".example.com"
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	if a, err := netip.ParseAddr(r.Host); err == nil {
		b, err := netip.ParseAddr(host)
		return err == nil && a.Unmap() == b.Unmap()
	}
	return r.Host == host
}

// MatchPort reports whether port is allowed: the route's ports, or 443 and
// 80 when it lists none.
func (r *Route) MatchPort(port int) bool {
	if len(r.Ports) == 0 {
		return port == 443 || port == 80
	}
	for _, p := range r.Ports {
		if p == port {
			return true
		}
	}
	return false
}

// MatchMethod reports whether method is allowed (any, when none are listed).
func (r *Route) MatchMethod(method string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, m := range r.Methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// MatchPath reports whether the decoded request path p falls under one of
// the route's prefixes (any, when none are listed). p is cleaned first, so
// /v1/../admin does not pass as /v1/. A prefix without a trailing slash
// matches itself and what lies below it, never /v1x for /v1.
func (r *Route) MatchPath(p string) bool {
	if len(r.Paths) == 0 {
		return true
	}
	c := cleanPath(p)
	for _, pre := range r.Paths {
		if strings.HasSuffix(pre, "/") {
			if strings.HasPrefix(c, pre) || c == strings.TrimSuffix(pre, "/") {
				return true
			}
			continue
		}
		if c == pre || strings.HasPrefix(c, pre+"/") {
			return true
		}
	}
	return false
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// Table is an immutable, validated list of routes.
type Table struct {
	routes []Route
}

// NewTable validates rs and returns a table of them.
func NewTable(rs []Route) (*Table, error) {
	if err := ValidateAll(rs); err != nil {
		return nil, err
	}
	cp := append([]Route(nil), rs...)
	return &Table{routes: cp}, nil
}

// Routes returns a copy of the table's routes.
func (t *Table) Routes() []Route { return append([]Route(nil), t.routes...) }

// HostAllowed returns the first route whose host and port cover host:port,
// or nil: the CONNECT-time decision, made before any DNS lookup.
func (t *Table) HostAllowed(host string, port int) *Route {
	host = CanonicalHost(host)
	for i := range t.routes {
		r := &t.routes[i]
		if r.MatchHost(host) && r.MatchPort(port) {
			return r
		}
	}
	return nil
}

// Match returns the first route that allows the request, or nil and the
// reason none did (for the 403 and the log). A git path on a host with a
// git route is that route's, whatever comes before it (the gate judges it
// further); other paths of a git route need its Paths.
func (t *Table) Match(method, host string, port int, p string) (*Route, string) {
	host = CanonicalHost(host)
	if IsGitPath(p) {
		for i := range t.routes {
			r := &t.routes[i]
			if r.Git == nil || !r.MatchHost(host) {
				continue
			}
			if !r.MatchPort(port) {
				// Another route of the host on this port must not be a
				// way around the gate.
				return nil, fmt.Sprintf("port %d of host %s is not its git route's", port, host)
			}
			return r, ""
		}
	}
	hostSeen, portSeen := false, false
	for i := range t.routes {
		r := &t.routes[i]
		if !r.MatchHost(host) {
			continue
		}
		hostSeen = true
		if !r.MatchPort(port) {
			continue
		}
		portSeen = true
		if r.Git != nil && len(r.Paths) == 0 {
			continue // a git route opens no other path unless it lists it
		}
		if r.MatchMethod(method) && r.MatchPath(p) {
			return r, ""
		}
	}
	switch {
	case !hostSeen:
		return nil, fmt.Sprintf("host %s is not in the bottle's routes", host)
	case !portSeen:
		return nil, fmt.Sprintf("port %d of host %s is not in the bottle's routes", port, host)
	default:
		return nil, fmt.Sprintf("%s %s on host %s is not allowed by the bottle's routes", method, cleanPath(p), host)
	}
}

// SplitHostPort splits "host:port" with a default port for a scheme
// ("https" → 443, anything else → 80).
func SplitHostPort(hostport, scheme string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			if scheme == "https" {
				return CanonicalHost(hostport), 443, nil
			}
			return CanonicalHost(hostport), 80, nil
		}
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return CanonicalHost(host), port, nil
}
