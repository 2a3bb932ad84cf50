package routes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"api.example.com", true},
		{"*.example.com", true},
		{"localhost", true},
		{"169.254.169.254", true},
		{"::1", true},
		{"*.com", false},   // a wildcard of a TLD allows half the internet
		{"*.0.0.1", false}, // an address in disguise
		{"127.1", false},   // inet_aton reads this as 127.0.0.1
		{"1.2.3", false},   // not an IP, and no TLD is numeric
		{"a..b", false},
		{"-a.example", false},
		{"a_b.example", false},
		{"*", false},
		{"*.*.example.com", false},
		{"api.*.example.com", false},
		{"", false},
		{"exa mple.com", false},
	} {
		if got := ValidHost(tc.host); got != tc.want {
			t.Errorf("ValidHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route Route
		want  string // "" for valid
	}{
		{"minimal", Route{Host: "a.example"}, ""},
		{"full", Route{Host: "a.example", Ports: []int{8443}, Paths: []string{"/v1/"}, Methods: []string{"GET"},
			Inject: &Inject{Header: "Authorization", Token: "GH", Format: "Bearer {token}", Placeholder: "bb-placeholder"}}, ""},
		{"no host", Route{}, "host: is required"},
		{"upper host", Route{Host: "A.example"}, `host: "A.example" must be lower case`},
		{"bad port", Route{Host: "a.example", Ports: []int{0}}, "ports[0]: 0 is not a port"},
		{"relative path", Route{Host: "a.example", Paths: []string{"v1"}}, `paths[0]: "v1" must start with /`},
		{"unclean path", Route{Host: "a.example", Paths: []string{"/v1/../admin"}}, `paths[0]: "/v1/../admin" is not a clean path (no //, . or .. segments)`},
		{"lower method", Route{Host: "a.example", Methods: []string{"get"}}, `methods[0]: "get" is not an upper-case HTTP method`},
		{"bad header", Route{Host: "a.example", Inject: &Inject{Header: "X Y", Token: "T"}}, `inject.header: "X Y" is not a header name`},
		{"bad token", Route{Host: "a.example", Inject: &Inject{Header: "X", Token: "t"}}, `inject.token: "t" is not a token NAME (upper case, digits, _)`},
		{"format without token", Route{Host: "a.example", Inject: &Inject{Header: "X", Token: "T", Format: "Bearer"}}, `inject.format: "Bearer" does not contain {token} or {basic:USER}`},
		{"format with newline", Route{Host: "a.example", Inject: &Inject{Header: "X", Token: "T", Format: "{token}\r\nX-Evil: 1"}}, "inject.format: must not contain a line break"},
		{"inject on a wildcard", Route{Host: "*.example.com", Inject: &Inject{Header: "Authorization", Token: "GH"}},
			"inject.token: a wildcard route cannot inject a token: name the host exactly"},
		{"short placeholder", Route{Host: "a.example", Inject: &Inject{Header: "X", Token: "T", Placeholder: "short"}}, "inject.placeholder: must be at least 8 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.route.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	table, err := NewTable([]Route{
		{Host: "api.example.com", Paths: []string{"/v1/"}, Methods: []string{"POST"}},
		{Host: "*.cdn.example", Ports: []int{8443}},
		{Host: "git.example", Paths: []string{"/org"}},
		{Host: "169.254.169.254"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, host string
		port         int
		path         string
		want         string // matched route's String(), or the reason
	}{
		{"POST", "api.example.com", 443, "/v1/messages", "api.example.com/v1/"},
		{"POST", "API.Example.COM.", 443, "/v1/messages", "api.example.com/v1/"},
		{"POST", "api.example.com", 443, "/v1", "api.example.com/v1/"},
		{"GET", "api.example.com", 443, "/v1/messages", "GET /v1/messages on host api.example.com is not allowed by the bottle's routes"},
		{"POST", "api.example.com", 443, "/v1/../admin", "POST /admin on host api.example.com is not allowed by the bottle's routes"},
		{"POST", "api.example.com", 443, "/v2/", "POST /v2/ on host api.example.com is not allowed by the bottle's routes"},
		{"POST", "api.example.com", 8080, "/v1/", "port 8080 of host api.example.com is not in the bottle's routes"},
		{"GET", "evil.example", 443, "/", "host evil.example is not in the bottle's routes"},
		{"GET", "a.cdn.example", 8443, "/x", "*.cdn.example"},
		{"GET", "a.b.cdn.example", 8443, "/x", "*.cdn.example"},
		{"GET", "cdn.example", 8443, "/x", "host cdn.example is not in the bottle's routes"},
		{"GET", "a.cdn.example", 443, "/x", "port 443 of host a.cdn.example is not in the bottle's routes"},
		{"GET", "git.example", 443, "/org", "git.example/org"},
		{"GET", "git.example", 443, "/org/repo.git", "git.example/org"},
		{"GET", "git.example", 443, "/organisation", "GET /organisation on host git.example is not allowed by the bottle's routes"},
		{"GET", "169.254.169.254", 80, "/latest", "169.254.169.254"},
		{"GET", "[::ffff:169.254.169.254]", 80, "/latest", "169.254.169.254"},
	} {
		r, reason := table.Match(tc.method, tc.host, tc.port, tc.path)
		got := reason
		if r != nil {
			got = r.String()
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Match(%s %s:%d %s) (-want +got):\n%s", tc.method, tc.host, tc.port, tc.path, diff)
		}
	}
}

func TestWildcardNeverMatchesAnIP(t *testing.T) {
	// Validation refuses *.0.0.1, but a Route built in code must not match
	// an address either.
	r := Route{Host: "*.0.0.1"}
	for _, h := range []string{"127.0.0.1", "10.0.0.1"} {
		if r.MatchHost(h) {
			t.Errorf("%s matched %s", r.Host, h)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	table, _ := NewTable([]Route{{Host: "a.example"}, {Host: "b.example", Ports: []int{22}}})
	for _, tc := range []struct {
		host string
		port int
		want bool
	}{
		{"a.example", 443, true},
		{"a.example", 80, true},
		{"a.example", 22, false},
		{"b.example", 22, true},
		{"b.example", 443, false},
		{"c.example", 443, false},
	} {
		if got := table.HostAllowed(tc.host, tc.port) != nil; got != tc.want {
			t.Errorf("HostAllowed(%s, %d) = %v, want %v", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, tc := range []struct {
		in, scheme string
		host       string
		port       int
		err        bool
	}{
		{"a.example", "https", "a.example", 443, false},
		{"a.example", "http", "a.example", 80, false},
		{"A.Example:8080", "http", "a.example", 8080, false},
		{"[::1]:443", "https", "::1", 443, false},
		{"a.example:0", "http", "", 0, true},
		{"a.example:x", "http", "", 0, true},
	} {
		h, p, err := SplitHostPort(tc.in, tc.scheme)
		if (err != nil) != tc.err || h != tc.host || p != tc.port {
			t.Errorf("SplitHostPort(%q) = %q, %d, %v", tc.in, h, p, err)
		}
	}
}

func TestCheckEnvName(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"GITHUB_TOKEN", true},
		{"ANTHROPIC_API_KEY", true},
		{"my_token", true},
		{"", false},
		{"$API_KEY", false},
		{"sk-ant-api03-SECRETVALUE123", false},
		{"ghp_R8kT2mWq9Xv4LpN7sB3cY6dZ1fH5jG0aE2uK", false},
		{"github_pat_11ABCDEFG", false},
		{"R8kT2mWq9Xv4LpN7sB3cY6dZ", false},
	} {
		err := CheckEnvName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("CheckEnvName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && tc.in != "" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("CheckEnvName(%q) quotes its input: %v", tc.in, err)
		}
	}
}
