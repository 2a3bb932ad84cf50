package routes

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateGit(t *testing.T) {
	git := func(repos []string, push ...string) Route {
		return Route{Host: "github.com", Git: &Git{Repos: repos, Push: push}}
	}
	for _, tc := range []struct {
		name  string
		route Route
		want  string
	}{
		{"read-only", git([]string{"acme/widgets"}), ""},
		{"push", git([]string{"acme/widgets.git", "group/sub/name"}, "refs/heads/agent/*", "refs/tags/v*"), ""},
		{"no repos", git(nil), "git.repos: is required: list the repositories the agent may reach, like owner/name"},
		{"one segment", git([]string{"widgets"}), `git.repos[0]: "widgets" is not a repository path like owner/name (no leading or trailing /)`},
		{"leading slash", git([]string{"/acme/widgets"}), `git.repos[0]: "/acme/widgets" is not a repository path like owner/name (no leading, trailing or double /)`},
		{"double slash", git([]string{"acme//widgets"}), `git.repos[0]: "acme//widgets" is not a repository path like owner/name (no leading, trailing or double /)`},
		{"dot dot", git([]string{"acme/../widgets"}), `git.repos[0]: "acme/../widgets" has a . or .. segment`},
		{"gitlab dash", git([]string{"acme/-/widgets"}), `git.repos[0]: "acme/-/widgets" may hold only letters, digits, '.', '_' and '-' between its slashes, and no segment may start with '-'`},
		{"percent", git([]string{"acme/wid%2fgets"}), `git.repos[0]: "acme/wid%2fgets" may hold only letters, digits, '.', '_' and '-' between its slashes, and no segment may start with '-'`},
		{"inner .git", git([]string{"acme.git/widgets"}), `git.repos[0]: "acme.git/widgets" has .git before its last segment`},
		{"push outside refs", git([]string{"a/b"}, "heads/agent/*"), `git.push[0]: "heads/agent/*" must start with refs/, like refs/heads/agent/*`},
		{"push ends with slash", git([]string{"a/b"}, "refs/heads/agent/"), `git.push[0]: "refs/heads/agent/" must not end with /: write refs/heads/agent/* for every branch under agent/`},
		{"push bad name", git([]string{"a/b"}, "refs/heads/a..b"), `git.push[0]: "refs/heads/a..b" is not a valid ref name pattern (see git check-ref-format)`},
		{"wildcard host", Route{Host: "*.github.com", Git: &Git{Repos: []string{"a/b"}}}, "git: a wildcard route cannot be a git route: name the host exactly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := tc.route.Validate(); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTwoGitRoutesForOneHost(t *testing.T) {
	err := ValidateAll([]Route{
		{Host: "github.com", Git: &Git{Repos: []string{"a/b"}}},
		{Host: "api.github.com"},
		{Host: "github.com", Git: &Git{Repos: []string{"a/c"}}},
	})
	want := "[2].git: host github.com already has a git route ([0]): list all its repositories in one"
	if err == nil || err.Error() != want {
		t.Errorf("ValidateAll = %v, want %q", err, want)
	}
}

func TestValidRefName(t *testing.T) {
	for name, want := range map[string]bool{
		"refs/heads/agent/x":                true,
		"refs/heads/agent/a-b_c":            true,
		"refs/tags/v1.0":                    true,
		"refs/heads/a..b":                   false,
		"refs/heads/.hidden":                false,
		"refs/heads/x.lock":                 false,
		"refs/heads/x/":                     false,
		"refs/heads/x.":                     false,
		"refs/heads//x":                     false,
		"refs/heads/a b":                    false,
		"refs/heads/a\x00b":                 false,
		"refs/heads/a\x7fb":                 false,
		"refs/heads/a~1":                    false,
		"refs/heads/a^":                     false,
		"refs/heads/a:b":                    false,
		"refs/heads/a?":                     false,
		"refs/heads/a*":                     false,
		"refs/heads/a[":                     false,
		"refs/heads/a\\b":                   false,
		"refs/heads/a@{1}":                  false,
		"heads/x":                           false,
		"HEAD":                              false,
		"@":                                 false,
		"refs/" + strings.Repeat("x", 1100): false,
	} {
		if got := ValidRefName(name); got != want {
			t.Errorf("ValidRefName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestPushAllowed(t *testing.T) {
	g := &Git{Repos: []string{"a/b"}, Push: []string{"refs/heads/agent/*", "refs/*/exact", "refs/tags/v*"}}
	for ref, want := range map[string]string{
		"refs/heads/agent/x":       "refs/heads/agent/*",
		"refs/heads/agent/x/y":     "refs/heads/agent/*", // * crosses slashes, as in refspecs
		"refs/heads/agent/":        "refs/heads/agent/*",
		"refs/heads/agentx":        "",
		"refs/heads/main":          "",
		"refs/heads/exact":         "refs/*/exact",
		"refs/tags/exact":          "", // a tag needs a glob under refs/tags/
		"refs/tags/v1.2":           "refs/tags/v*",
		"refs/tags/x":              "",
		"refs/heads/agent/../x":    "refs/heads/agent/*", // ValidRefName refuses it separately
		"refs/notes/commits":       "",
		"refs/heads/AGENT/x":       "",
		"refs/heads/agent/x/exact": "refs/heads/agent/*",
	} {
		if got := g.PushAllowed(ref); got != want {
			t.Errorf("PushAllowed(%q) = %q, want %q", ref, got, want)
		}
	}
	if (&Git{Repos: []string{"a/b"}}).PushAllowed("refs/heads/x") != "" {
		t.Error("a read-only route allowed a push")
	}
	tagsAll := &Git{Push: []string{"refs/*"}}
	if tagsAll.PushAllowed("refs/tags/v1") != "" || tagsAll.PushAllowed("refs/heads/x") != "refs/*" {
		t.Error("refs/* must allow branches and never tags")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"a**", "a", true},
		{"*a", "bbbb", false},
		{strings.Repeat("*a", 30), strings.Repeat("a", 100) + "b", false}, // no blow-up
	} {
		if got := globMatch(tc.pat, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

func TestIsGitPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/acme/widgets.git/info/refs":       true,
		"/acme/widgets/info/refs":           true,
		"/acme/widgets/git-upload-pack":     true,
		"/acme/widgets/GIT-RECEIVE-PACK":    true,
		"/acme/widgets/INFO/REFS":           true,
		"/acme/widgets.git":                 true,
		"/acme/widgets.GIT/":                true,
		"/acme/widgets/HEAD":                true,
		"/acme/widgets/objects/info/packs":  true,
		"/acme/widgets/info/lfs/objects":    true,
		"/acme/widgets/refs/heads/main":     true, // a WebDAV push's ref
		"/acme/widgets":                     false,
		"/login":                            false,
		"/acme/widgets/pulls":               false,
		"/acme/widgets/blob/main/README.md": false,
	} {
		if got := IsGitPath(p); got != want {
			t.Errorf("IsGitPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestMatchGitRoute(t *testing.T) {
	table, err := NewTable([]Route{
		{Host: "gitlab.example", Methods: []string{"GET"}}, // listed first: still not a way past the gate
		{Host: "github.com", Git: &Git{Repos: []string{"acme/widgets"}}},
		{Host: "gitlab.example", Ports: []int{443}, Git: &Git{Repos: []string{"g/s/p"}}, Paths: []string{"/api/"}, Methods: []string{"GET"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, host string
		port         int
		path         string
		want         string
	}{
		{"POST", "github.com", 443, "/acme/widgets/git-receive-pack", "github.com git"},
		{"POST", "github.com", 443, "/acme/other/git-receive-pack", "github.com git"}, // the gate refuses it
		{"GET", "github.com", 443, "/acme/widgets", "GET /acme/widgets on host github.com is not allowed by the bottle's routes"},
		{"GET", "github.com", 443, "/login", "GET /login on host github.com is not allowed by the bottle's routes"},
		{"GET", "gitlab.example", 443, "/g/s/p.git/info/refs", "gitlab.example/api/ git"},
		{"GET", "gitlab.example", 80, "/g/s/x.git/info/refs", "port 80 of host gitlab.example is not its git route's"},
		{"GET", "gitlab.example", 443, "/api/v4/projects", "gitlab.example"},
		{"POST", "gitlab.example", 443, "/api/v4/projects", "POST /api/v4/projects on host gitlab.example is not allowed by the bottle's routes"},
	} {
		r, reason := table.Match(tc.method, tc.host, tc.port, tc.path)
		got := reason
		if r != nil {
			got = r.String()
			if r.Git != nil {
				got += " git"
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Match(%s %s:%d %s) (-want +got):\n%s", tc.method, tc.host, tc.port, tc.path, diff)
		}
	}
}

func TestInjectBasic(t *testing.T) {
	in := &Inject{Header: "Authorization", Token: "GITHUB", Format: "Basic {basic:x-access-token}"}
	if err := (&Route{Host: "github.com", Inject: in}).Validate(); err != nil {
		t.Fatal(err)
	}
	got := in.Value("ghp_secret")
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:ghp_secret"))
	if got != want {
		t.Errorf("Value = %q, want %q", got, want)
	}
	for _, f := range []string{"Basic {basic:}", "Basic {basic:a:b}", "Basic {basic:a b}", "Basic {basic:a}b}"} {
		err := (&Route{Host: "github.com", Inject: &Inject{Header: "Authorization", Token: "T", Format: f}}).Validate()
		if f == "Basic {basic:a}b}" {
			// {basic:a} is a good user; the rest is literal text.
			if err != nil {
				t.Errorf("%q: %v", f, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), "inject.format: ") {
			t.Errorf("%q: Validate() = %v, want an inject.format error", f, err)
		}
	}
}
